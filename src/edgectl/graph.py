"""The fleet's topology as a picture: who pushes to and pulls from whom, and
the farms' balancers, laid out by Graphviz.

Every link drawn comes from the agent's own rules: ``edgesync.policy`` says
who may initiate and who accepts, and ``edgesync.topology`` says which links
run on the timers (the scheduled ones) and which peers each host's config
lists. Nothing here repeats those rules, so the picture cannot drift from
what the agents do.

``render`` writes the DOT text, then has Graphviz's ``dot`` lay it out and
draw it as SVG and PNG. Masters are on the top rank, nodes below them, and
each farm is a cluster of its edges with its balancer (``edgesync.farms``)
under them. The scheduled links are strong lines in the action's colour; the
links the policy allows but no timer runs are drawn only when asked for, thin,
dashed and grey. A fleet is the list of host dicts ``edgesync.topology``
takes: ``name``, ``role``, ``farm`` and ``trusted``, and ``provider``,
``provider_host`` and ``host`` (the inventory's host name, which the
balancers name) when known.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from edgesync import topology
from edgesync.errors import one_line
from edgesync.farms import WILDCARDS, listen
from edgesync.policy import ACTIONS, may_accept, may_initiate

from .errors import UsageError

ROLES = ("master", "node", "edge")
COLOURS = {"push": "#1f6fb4", "pull": "#d9731a", "allowed": "#9a9a9a", "http": "#7b3fa0"}
FILLS = {"master": "#fbe3c0", "node": "#d2e5f7", "edge": "#d9f0d3", "balancer": "#eadcf3"}
# What Graphviz draws from the DOT file, and how long it may take, in seconds.
FORMATS = ("svg", "png")
DOT_TIMEOUT = 120

# Characters that XML 1.0 does not allow even escaped (control characters are
# shown escaped by one_line before this applies).
_NOT_XML = re.compile("[\ud800-\udfff\ufffe\uffff]")


def allowed_links(fleet: list[dict]) -> list[dict]:
    """Every link the policy allows, each as {initiator, action, target, scheduled}.

    A link is allowed when the initiator may open it (``may_initiate``) and the
    target accepts it (``may_accept``), both asked the way the agents ask. The
    initiator needs a peer entry for its target in its own config, and the
    target judges the caller by its own config's entry for it, or by None
    when it has none, as the agent does. Peer entries are what
    ``topology.peers`` gives each host's config. ``scheduled`` is true for the
    links that ``topology.links`` runs on the timers. A scheduled link that the
    policy refuses is not listed: ``topology.link_errors`` names it.
    """
    known = {h["name"]: {p["name"] for p in topology.peers(fleet, h["name"])} for h in fleet}
    runs = {(lk["initiator"], lk["action"], lk["target"]) for lk in topology.links(fleet)}
    out = []
    for a in fleet:
        for b in fleet:
            if b["name"] == a["name"] or b["name"] not in known[a["name"]]:
                continue
            caller = topology.party(a) if a["name"] in known[b["name"]] else None
            for action in ACTIONS:
                if may_initiate(topology.party(a), action, topology.party(b)) and may_accept(
                    topology.party(b), action, caller
                ):
                    key = (a["name"], action, b["name"])
                    out.append(
                        {
                            "initiator": a["name"],
                            "action": action,
                            "target": b["name"],
                            "scheduled": key in runs,
                        }
                    )
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def title(fleet: list[dict]) -> str:
    """A one-line summary, such as "edgesync fleet: 1 master, 2 nodes, 4 edges in 2 farms"."""
    count = {role: sum(h["role"] == role for h in fleet) for role in ROLES}
    farms = {h.get("farm") for h in fleet if h["role"] == "edge"}
    return (
        f"edgesync fleet: {_plural(count['master'], 'master')}, {_plural(count['node'], 'node')},"
        f" {_plural(count['edge'], 'edge')} in {_plural(len(farms), 'farm')}"
    )


def balancer_label(balancer: dict, fleet: list[dict]) -> str:
    """A balancer's words in the picture: "HAProxy on NODE01 :80" (on every
    address of the host), else "HAProxy on NODE01 10.0.0.5:80"; its host by
    the host's name in the picture."""
    names = {h.get("host", h["name"]): h["name"] for h in fleet}
    where = f":{balancer['port']}" if balancer["address"] in WILDCARDS else listen(balancer)
    return f"HAProxy on {names.get(balancer['host'], balancer['host'])} {where}"


def _q(text) -> str:
    """``text`` as a DOT quoted string, shown as written. One printable line;
    an ampersand becomes an entity, so that Graphviz's SVG cannot take a name
    such as "&x;" for one."""
    text = _NOT_XML.sub("\ufffd", one_line(str(text))).replace("&", "&amp;")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _host(h: dict) -> str:
    """A host's node: its name over its role, provider and machine."""
    machine = h.get("provider_host") if h.get("provider_host") != "localhost" else None
    where = " on ".join(str(w) for w in (h.get("provider"), machine) if w)
    sub = f"{h['role']} · {where}" if where else h["role"]
    label = _q(h["name"])[:-1] + "\\n" + _q(sub)[1:]
    return f'{_q("host:" + h["name"])} [label={label}, fillcolor="{FILLS[h["role"]]}"];'


def _lines(fleet: list[dict], links: list[dict]) -> list[str]:
    """The links as DOT edges, one per pair of hosts and kind (scheduled or not).

    Each is written from the upper host to the lower (masters, nodes, edges),
    its arrowheads at the targets, so the scheduled ones rank the hosts; the
    others do not move them. A scheduled line has a strand in the colour of
    each action it carries. Its words, such as "NODE01 push MASTER01 (runs on
    the timers)", are the line's tooltip."""
    tier = {h["name"]: ROLES.index(h["role"]) for h in fleet}
    order = {h["name"]: (tier[h["name"]], i) for i, h in enumerate(fleet)}
    groups: dict[tuple, list[dict]] = {}
    for lk in links:
        pair = tuple(sorted((lk["initiator"], lk["target"]), key=order.__getitem__))
        groups.setdefault((*pair, lk["scheduled"]), []).append(lk)
    out = []
    for (upper, lower, scheduled), group in groups.items():
        ways = {lk["initiator"] for lk in group}
        way = "both" if len(ways) == 2 else "forward" if upper in ways else "back"
        words = _q("; ".join(
            f"{lk['initiator']} {lk['action']} {lk['target']}"
            f" ({'runs on the timers' if scheduled else 'allowed, not scheduled'})"
            for lk in group
        ))  # fmt: skip
        if scheduled:
            colour = ":".join(COLOURS[a] for a in ACTIONS if any(lk["action"] == a for lk in group))
            style = f'color="{colour}", penwidth=2.2'
        else:
            style = f'color="{COLOURS["allowed"]}", style=dashed, penwidth=0.8'
        if not scheduled or tier[upper] == tier[lower]:
            style += ", constraint=false"
        out.append(
            f"  {_q('host:' + upper)} -> {_q('host:' + lower)} [{style}, dir={way},"
            f" tooltip={words}];"
        )
    return out


def _legend(links: list[dict], all_links: bool, balancers: bool) -> str:
    """The legend's node: what the colours mean, in a few lines."""

    def word(colour: str, text: str) -> str:
        return f'<FONT COLOR="{colour}"><B>{text}</B></FONT>'

    hidden = sum(not lk["scheduled"] for lk in links)
    rows = [f"{word(COLOURS['push'], 'push')}, {word(COLOURS['pull'], 'pull')}: run on the"
            " timers, the arrow from the host that opens it"]  # fmt: skip
    if all_links:
        rows.append(f"{word(COLOURS['allowed'], 'dashed grey')}: allowed by the policy, not run")
    elif hidden:
        rows.append(f"{hidden} more links the policy allows are not drawn (--all-links)")
    if balancers:
        rows.append(f"{word(COLOURS['http'], 'HTTP')}: a farm's balancer to its edges")
    cells = "".join(f'<TR><TD ALIGN="LEFT">{row}</TD></TR>' for row in rows)
    return (
        '  legend [shape=box, style=rounded, color="#bbbbbb", fontsize=10,'
        f' label=<<TABLE BORDER="0" CELLSPACING="1">{cells}</TABLE>>];'
    )


def to_dot(
    fleet: list[dict], links: list[dict], balancers: list[dict] = (), all_links: bool = False
) -> str:
    """The topology as Graphviz DOT text: the scheduled links of ``links``
    (``allowed_links``), and the others too when ``all_links``.

    The masters share the top rank with the legend, the nodes the one below
    and the edges the bottom one, whatever links they have. Each farm is a
    cluster of its edges and, below them, its balancer with a purple arrow to
    each of its edges that the fleet holds."""
    out = [
        "digraph edgesync {",
        f"  graph [label={_q(title(fleet))}, labelloc=t, fontsize=16, fontname=Helvetica,"
        " newrank=true, nodesep=0.4, ranksep=0.9];",
        '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=11,'
        ' color="#555555"];',
        "  edge [arrowsize=0.7];",
        *("  " + _host(h) for h in fleet if h["role"] != "edge"),
    ]
    names = {h.get("host", h["name"]): h["name"] for h in fleet}
    farms: dict = {}
    for h in fleet:
        if h["role"] == "edge":
            farms.setdefault(h.get("farm"), []).append(h)
    for i, (farm, edges) in enumerate(farms.items()):
        out += [
            f"  subgraph cluster_farm_{i} {{",
            f"    label={_q('no farm' if farm is None else f'farm {farm}')};"
            ' labelloc=b; style="rounded,filled"; fillcolor="#f7f7f2"; color="#888888";',
            *("    " + _host(h) for h in edges),
        ]
        for b in (b for b in balancers if b["farm"] == farm):
            node, label = _q(f"balancer:{farm}"), balancer_label(b, fleet)
            out.append(f'    {node} [label={_q(label)}, fillcolor="{FILLS["balancer"]}"];')
            # Written edge to balancer, drawn balancer to edge: the balancer ranks below.
            out += [f"    {_q('host:' + names[e])} -> {node} [dir=back,"
                    f' color="{COLOURS["http"]}", tooltip={_q(f"{label} to {names[e]} (HTTP)")}];'
                    for e in b["edges"] if e in names]  # fmt: skip
        out.append("  }")
    # One rank a role, held in order by invisible anchors.
    for tier, role in enumerate(ROLES):
        hosts = "".join(f" {_q('host:' + h['name'])};" for h in fleet if h["role"] == role)
        hosts += " legend;" if tier == 0 else ""
        out += [f'  "rank:{tier}" [style=invis, shape=point, width=0];',
                f'  {{ rank=same; "rank:{tier}";{hosts} }}']  # fmt: skip
    out.append('  "rank:0" -> "rank:1" -> "rank:2" [style=invis];')
    out += _lines(fleet, [lk for lk in links if lk["scheduled"] or all_links])
    out.append(_legend(links, all_links, any(b["farm"] in farms for b in balancers)))
    return "\n".join([*out, "}", ""])


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, then a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def render(
    fleet: list[dict], out: Path, balancers: list[dict] = (), all_links: bool = False
) -> list[Path]:
    """Write ``out``.dot, then have Graphviz draw it as ``out``.svg and
    ``out``.png; return the paths written. ``balancers`` are the farms'
    (``edgesync.farms.balancers``), ``all_links`` as for ``to_dot``.

    ``out`` names the files without their suffix; a trailing .dot, .svg or
    .png is dropped. Each file is written whole or not at all. Without a
    directory to write them in, a UsageError says so. Without
    ``dot`` on the PATH, or when it fails or takes longer than DOT_TIMEOUT
    seconds, the DOT file stays and a UsageError says what went wrong.
    """
    out = Path(out)
    if out.suffix in (".dot", *(f".{fmt}" for fmt in FORMATS)):
        out = out.with_suffix("")
    dot = out.with_name(out.name + ".dot")
    if not dot.parent.is_dir():
        raise UsageError(f"no directory {dot.parent} to write {dot.name} in")
    _write_atomic(dot, to_dot(fleet, allowed_links(fleet), balancers, all_links).encode())
    program = shutil.which("dot")
    if program is None:
        raise UsageError(f"wrote {dot} but no picture: Graphviz's dot is not on the PATH"
                         " (install the graphviz package)")  # fmt: skip
    drawn = [out.with_name(f"{out.name}.{fmt}") for fmt in FORMATS]
    tmps = [p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in drawn]
    command = [program]
    for fmt, tmp in zip(FORMATS, tmps, strict=True):
        command += [f"-T{fmt}", "-o", str(tmp)]
    command.append(str(dot))
    try:
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=DOT_TIMEOUT, check=False)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise UsageError(
                f"wrote {dot} but no picture: Graphviz's dot took over {DOT_TIMEOUT} s"
            ) from exc
        if done.returncode != 0 or not all(t.exists() for t in tmps):
            said = one_line(done.stderr.strip())[:500] or f"exit status {done.returncode}"
            raise UsageError(f"wrote {dot} but no picture: Graphviz's dot says {said}")
        for tmp, path in zip(tmps, drawn, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
    return [dot, *drawn]
