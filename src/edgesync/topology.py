"""The fleet's plan, drawn from the policy: which sync links run and in which
order, what their timer units are called, who may call whom, and what breaks
the topology. The Ansible filters, the inventory plugin, ``sync.yml`` and the
timers role all read it from here.

A fleet is a list of hosts, each a dict with at least ``name``, ``role``,
``farm`` and ``trusted`` (callers keep more, such as ``host`` and ``address``).
"""

from __future__ import annotations

from .policy import ACTIONS, Party, may_accept, may_initiate

# The inventory group each role's hosts belong to.
ROLE_GROUPS = {"master": "masters", "node": "nodes", "edge": "edges"}

# One sync round, in order: an edge's write reaches its farm, then its node,
# then the masters, which exchange it, and comes back down. Each stage is
# (name, who, action, whom).
STAGES = (
    ("edges-push-farm", "edge", "push", "edge"),
    ("nodes-pull-edges", "node", "pull", "edge"),
    ("nodes-push-masters", "node", "push", "master"),
    ("masters-pull-masters", "master", "pull", "master"),
    ("masters-push-masters", "master", "push", "master"),
    ("nodes-pull-masters", "node", "pull", "master"),
    ("nodes-push-edges", "node", "push", "edge"),
)


def party(host: dict) -> Party:
    return Party(host["name"], host["role"], host.get("farm"), tuple(host.get("trusted") or ()))


def unit_name(action: str, target: str) -> str:
    """The systemd unit (without suffix) that runs ``action`` with ``target``."""
    return f"edgesync-{action}-{target.lower()}"


def _link(stage: str, initiator: dict, action: str, target: dict) -> dict:
    return {
        "stage": stage,
        "label": f"{initiator['name']} {action} {target['name']}",
        "unit": unit_name(action, target["name"]),
        "initiator": initiator["name"],
        "initiator_host": initiator.get("host"),
        "action": action,
        "target": target["name"],
        "target_host": target.get("host"),
    }


def _partners(fleet: list[dict], host: dict, role: str) -> list[dict]:
    """The hosts of ``role`` that ``host`` runs links with: an edge its farm's
    other edges, a master every other master, a node the names on its trusted
    list."""
    if host["role"] == "edge":
        return [h for h in fleet if h["role"] == role and h is not host
                and h.get("farm") == host.get("farm")]  # fmt: skip
    if host["role"] == "master":
        return [h for h in fleet if h["role"] == role == "master" and h is not host]
    names = {h["name"]: h for h in fleet}
    found = [names.get(t) for t in host.get("trusted") or []]
    return [h for h in found if h is not None and h["role"] == role]


def links(fleet: list[dict]) -> list[dict]:
    """The sync links the fleet runs on timers, stage by stage (STAGES)."""
    out = []
    for stage, who, action, whom in STAGES:
        for host in fleet:
            if host["role"] == who:
                out += [_link(stage, host, action, t) for t in _partners(fleet, host, whom)]
    return out


def round_of(fleet: list[dict], name: str) -> list[dict]:
    """Host ``name``'s links as its timer runs them: one round, in stage order.
    Each link carries ``after``, the units of its earlier stages on this host, so
    what a host pulls is in before it pushes (a write on an edge reaches the
    master in one round); links of one stage run side by side."""
    mine = [lk for lk in links(fleet) if lk["initiator"] == name]
    order = [stage for stage, *_ in STAGES]
    return [
        {
            **lk,
            "after": [
                o["unit"] for o in mine if order.index(o["stage"]) < order.index(lk["stage"])
            ],
        }  # fmt: skip
        for lk in mine
    ]


def callers(fleet: list[dict], name: str) -> list[str]:
    """Names the policy lets call ``name`` (for some action): its authorized keys."""
    me = party(next(h for h in fleet if h["name"] == name))
    return sorted(
        h["name"]
        for h in fleet
        if h["name"] != name and any(may_accept(me, a, party(h)) for a in ACTIONS)
    )


def peers(fleet: list[dict], name: str) -> list[dict]:
    """The hosts ``name``'s config lists as peers: whom it syncs with and who may call it."""
    wanted = set(callers(fleet, name))
    wanted |= {lk["target"] for lk in links(fleet) if lk["initiator"] == name}
    return [h for h in fleet if h["name"] in wanted]


def name_errors(fleet: list[dict]) -> list[str]:
    """Names used twice, and trusted names that are no host (or the host itself)."""
    out = []
    seen: dict[str, str] = {}
    for h in fleet:
        if h["name"] in seen:
            first = seen[h["name"]]
            out.append(f"host {h.get('host')}: edgesync_name {h['name']} is also {first}'s")
        seen.setdefault(h["name"], h.get("host"))
    for h in fleet:
        for t in h.get("trusted") or []:
            if t not in seen:
                out.append(f"host {h.get('host')}: trusted name {t} is not a host of the inventory")
            if t == h["name"]:
                out.append(f"host {h.get('host')}: a node does not trust itself")
    return out


def master_errors(fleet: list[dict]) -> list[str]:
    """With more than one master, every node must sync with all of them (the
    masters sync with each other by themselves), so no write waits on one
    master's host: each must be on every node's trusted list."""
    masters = [h["name"] for h in fleet if h["role"] == "master"]
    if len(masters) < 2:
        return []
    out = []
    for h in fleet:
        missing = [m for m in masters if m not in (h.get("trusted") or ())]
        if h["role"] == "node" and missing:
            out.append(
                f"host {h.get('host')}: a node must sync with every master "
                f"({', '.join(masters)}); {h['name']}'s trusted list lacks {', '.join(missing)}"
            )
    return out


def link_errors(fleet: list[dict], extra_links: list | None = None) -> list[str]:
    """Every link (planned, or extra as {initiator, action, target}) that either
    side of the policy refuses, each a sentence; for a fleet without name errors."""
    out = []
    hosts = {h["name"]: h for h in fleet}
    planned = links(fleet) + [
        {"initiator": lk.get("initiator"), "action": lk.get("action"), "target": lk.get("target")}
        for lk in extra_links or []
    ]
    for lk in planned:
        a, b, action = hosts.get(lk["initiator"]), hosts.get(lk["target"]), lk["action"]
        label = f"link {lk['initiator']} {action} {lk['target']}"
        if a is None or b is None or action not in ACTIONS:
            out.append(f"{label}: unknown host or action")
            continue
        for decision in (may_initiate(party(a), action, party(b)),
                         may_accept(party(b), action, party(a))):  # fmt: skip
            if not decision:
                out.append(f"{label}: {decision.rule}")
    return out


def upstream(fleet: list[dict], name: str) -> dict | None:
    """The link that carries host ``name``'s changes towards the master: its
    node's pull from an edge, a node's push to its master; for a master, a node's
    push to it. A rolling update drains a host through it and checks it after
    (a session with its neighbour). None when the host has none."""
    host = next(h for h in fleet if h["name"] == name)
    stage, side = {"edge": ("nodes-pull-edges", "target"),
                   "node": ("nodes-push-masters", "initiator"),
                   "master": ("nodes-push-masters", "target")}[host["role"]]  # fmt: skip
    return next((lk for lk in links(fleet) if lk["stage"] == stage and lk[side] == name), None)


def update_plan(fleet: list[dict], per_farm: int = 1) -> dict:
    """The order and batches in which a rolling update takes the edges: farm by
    farm within a batch, at most ``per_farm`` edges of one farm at a time and
    never every edge of a farm that has more than one, so each such farm keeps
    an edge serving throughout. ``lone`` names the farms of one edge, which
    cannot (their edge is down while it updates).

    Returns {"order": [host, ...], "batches": [size, ...], "lone": [{farm, host}]}."""
    if per_farm < 1:
        raise ValueError(f"edges updated at once per farm must be at least 1, not {per_farm}")
    farms: dict[str, list[dict]] = {}
    for h in fleet:
        if h["role"] == "edge":
            farms.setdefault(h.get("farm"), []).append(h)
    waves: list[list[dict]] = []
    for edges in farms.values():
        take = max(1, min(per_farm, len(edges) - 1))
        for k, start in enumerate(range(0, len(edges), take)):
            if len(waves) <= k:
                waves.append([])
            waves[k] += edges[start : start + take]
    key = "host" if all(h.get("host") for h in fleet) else "name"
    return {
        "order": [h[key] for wave in waves for h in wave],
        "batches": [len(wave) for wave in waves],
        "lone": [{"farm": f, "host": e[0][key]} for f, e in farms.items() if len(e) == 1],
    }
