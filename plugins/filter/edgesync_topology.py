"""Topology filters: the inventory seen through the agent's own policy.

The policy table lives once, in ``edgesync.policy``; these filters only apply
it to the hosts of an inventory, so validation, peer lists, authorized keys and
sync timers all follow the same rules the agents enforce.
"""

from __future__ import annotations

from edgesync.config import FARM_RE, ROLES
from edgesync.ids import LOCATION_RE, NODE_NAME_RE
from edgesync.policy import ACTIONS, Party, may_accept, may_initiate

PROVIDERS = ("lxd", "docker")
ROLE_GROUPS = {"master": "masters", "node": "nodes", "edge": "edges"}


def _party(host: dict) -> Party:
    return Party(host["name"], host["role"], host.get("farm"), tuple(host.get("trusted") or ()))


def edgesync_fleet(hostvars, hosts: list[str]) -> list[dict]:
    """The edgesync hosts of an inventory, one plain dict each, in inventory order."""
    fleet = []
    for inv in hosts:
        hv = hostvars[inv]
        if "edgesync_name" not in hv and "edgesync_role" not in hv:
            continue
        fleet.append(
            {
                "host": inv,
                "name": hv.get("edgesync_name"),
                "location": hv.get("edgesync_location"),
                "role": hv.get("edgesync_role"),
                "farm": hv.get("edgesync_farm"),
                "trusted": list(hv.get("edgesync_trusted") or []),
                "provider": hv.get("edgesync_provider"),
                "groups": list(hv.get("group_names") or []),
                "address": hv.get("edgesync_address"),
            }
        )
    return fleet


def edgesync_links(fleet: list[dict]) -> list[dict]:
    """The sync links the fleet runs on timers, in topology order: edges push to
    their farm peers, nodes pull from their edges, push to and pull from their
    masters, then push back down to their edges."""
    by_role = {r: [h for h in fleet if h["role"] == r] for r in ROLES}
    stages: list[list[dict]] = [[], [], [], [], []]
    for edge in by_role["edge"]:
        for other in by_role["edge"]:
            if other is not edge and other.get("farm") == edge.get("farm"):
                stages[0].append(_link(edge, "push", other))
    names = {h["name"]: h for h in fleet}
    for node in by_role["node"]:
        for trusted in node.get("trusted") or []:
            target = names.get(trusted)
            if target is None:
                continue
            if target["role"] == "edge":
                stages[1].append(_link(node, "pull", target))
                stages[4].append(_link(node, "push", target))
            elif target["role"] == "master":
                stages[2].append(_link(node, "push", target))
                stages[3].append(_link(node, "pull", target))
    return [dict(link, stage=k) for k, stage in enumerate(stages) for link in stage]


def _link(initiator: dict, action: str, target: dict) -> dict:
    return {
        "label": f"{initiator['name']} {action} {target['name']}",
        "unit": f"edgesync-{action}-{target['name'].lower()}",
        "initiator": initiator["name"],
        "initiator_host": initiator["host"],
        "action": action,
        "target": target["name"],
        "target_host": target["host"],
    }


def edgesync_callers(fleet: list[dict], name: str) -> list[str]:
    """Names the policy lets call ``name`` (for some action): its authorized keys."""
    hosts = {h["name"]: h for h in fleet}
    me = _party(hosts[name])
    return sorted(
        h["name"]
        for h in fleet
        if h["name"] != name and any(may_accept(me, a, _party(h)) for a in ACTIONS)
    )


def edgesync_peers(fleet: list[dict], name: str) -> list[dict]:
    """The peer entries of ``name``'s config: who it syncs with and who may call it."""
    wanted = set(edgesync_callers(fleet, name))
    wanted |= {lk["target"] for lk in edgesync_links(fleet) if lk["initiator"] == name}
    return [h for h in fleet if h["name"] in wanted]


def edgesync_topology_errors(fleet: list[dict], extra_links: list | None = None) -> list[str]:
    """Every violation in the fleet, each a sentence naming the host."""
    errors = []
    seen: dict[str, str] = {}
    for h in fleet:
        where = f"host {h['host']}"
        name = h.get("name")
        if not isinstance(name, str) or not NODE_NAME_RE.match(name):
            errors.append(f"{where}: edgesync_name {name!r} must match [A-Z0-9]{{1,16}}")
        elif name in seen:
            errors.append(f"{where}: edgesync_name {name} is also {seen[name]}'s")
        else:
            seen[name] = h["host"]
        loc = h.get("location")
        if not isinstance(loc, str) or not LOCATION_RE.match(loc):
            errors.append(f"{where}: edgesync_location {loc!r} must match [A-Z0-9]{{2,8}}")
        role = h.get("role")
        if role not in ROLES:
            errors.append(f"{where}: edgesync_role {role!r} must be master, node or edge")
        elif ROLE_GROUPS[role] not in h["groups"]:
            errors.append(f"{where}: role {role} but not in group {ROLE_GROUPS[role]}")
        for r, group in ROLE_GROUPS.items():
            if r != role and group in h["groups"]:
                errors.append(f"{where}: in group {group} but edgesync_role is {role!r}")
        farm = h.get("farm")
        if role == "edge" and (not isinstance(farm, str) or not FARM_RE.match(farm)):
            errors.append(f"{where}: an edge needs edgesync_farm (got {farm!r})")
        if role != "edge" and farm:
            errors.append(f"{where}: only edges belong to a farm (edgesync_farm {farm!r})")
        if h.get("provider") not in PROVIDERS:
            errors.append(f"{where}: edgesync_provider {h.get('provider')!r} must be lxd or docker")
        if h.get("trusted") and role != "node":
            errors.append(f"{where}: only nodes have edgesync_trusted")
    names = {h["name"] for h in fleet}
    for h in fleet:
        for t in h.get("trusted") or []:
            if t not in names:
                errors.append(f"host {h['host']}: trusted name {t} is not a host of the inventory")
            if t == h.get("name"):
                errors.append(f"host {h['host']}: a node does not trust itself")
    if errors:
        return errors
    hosts = {h["name"]: h for h in fleet}
    links = edgesync_links(fleet) + [
        {"initiator": lk.get("initiator"), "action": lk.get("action"), "target": lk.get("target")}
        for lk in extra_links or []
    ]
    for lk in links:
        a, b, action = hosts.get(lk["initiator"]), hosts.get(lk["target"]), lk["action"]
        label = f"link {lk['initiator']} {action} {lk['target']}"
        if a is None or b is None or action not in ACTIONS:
            errors.append(f"{label}: unknown host or action")
            continue
        for decision in (may_initiate(_party(a), action, _party(b)),
                         may_accept(_party(b), action, _party(a))):  # fmt: skip
            if not decision:
                errors.append(f"{label}: {decision.rule}")
    return errors


def edgesync_unit_names(links: list[dict]) -> list[str]:
    """The systemd unit names (without suffix) of sync links."""
    return [link["unit"] for link in links]


class FilterModule:
    def filters(self):
        return {
            "edgesync_fleet": edgesync_fleet,
            "edgesync_links": edgesync_links,
            "edgesync_callers": edgesync_callers,
            "edgesync_peers": edgesync_peers,
            "edgesync_topology_errors": edgesync_topology_errors,
            "edgesync_unit_names": edgesync_unit_names,
        }
