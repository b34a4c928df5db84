"""The fleet's topology as a picture: who may push to and pull from whom.

Every link drawn comes from the agent's own rules: ``edgesync.policy`` says
who may initiate and who accepts, and ``edgesync.topology`` says which links
run on the timers and which peers each host's config lists. Nothing here
repeats those rules, so the picture cannot drift from what the agents do.

Each farm's balancer (``edgesync.farms``: the HAProxy in front of the farm's
edges, on the host the inventory names) is drawn in the farm's box, below its
edges, with an arrow to each: the users' HTTP requests it sends them.

``render`` writes three files side by side. The SVG comes from a small layered
layout in pure Python and needs nothing installed. The DOT text is for
Graphviz, and the PNG is made from it only when the ``dot`` program is on the
PATH. A fleet is the list of host dicts that ``edgesync.topology`` takes:
``name``, ``role``, ``farm`` and ``trusted``, and ``provider`` and ``host``
(the inventory's host name, which the balancers name) when known.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from edgesync import topology
from edgesync.errors import one_line
from edgesync.farms import WILDCARDS, listen
from edgesync.policy import ACTIONS, may_accept, may_initiate

# Colours of the picture: one per action for what runs on the timers, grey
# for what the policy allows but no timer runs, one fill per role.
COLOURS = {"push": "#1f6fb4", "pull": "#d9731a", "allowed": "#9a9a9a", "http": "#7b3fa0"}
FILLS = {"master": "#fbe3c0", "node": "#d2e5f7", "edge": "#d9f0d3"}
# A farm's balancer, and the users' requests it sends the farm's edges (HTTP).
BALANCER_FILL = "#eadcf3"
HTTP_WORDS = "HTTP, a farm's balancer to its edges"
OTHER_FILL = "#eeeeee"
ROWS = ("master", "node", "edge")

# How long Graphviz may take over the PNG, in seconds.
DOT_TIMEOUT = 120

# Sizes of the SVG layout, in pixels.
MARGIN = 40
TITLE_H = 70
BOX_H = 42
MIN_BOX_W = 120
MAX_BOX_W = 260
GAP_X = 36
RANK_GAP = 120
FARM_PAD = 34
FARM_LABEL_H = 22
FARM_GAP = 44
CELL_GAP_X = 44
CELL_GAP_Y = 52
SPREAD = 12
NAME_CHAR_W = 8.2
SUB_CHAR_W = 6.4

# Characters that XML 1.0 does not allow even escaped (control characters are
# shown escaped by one_line before this applies).
_NOT_XML = re.compile("[\ud800-\udfff\ufffe\uffff]")


# -- the links, from the policy -----------------------------------------------


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


# -- words shared by both pictures ---------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _farms(fleet: list[dict]) -> list:
    """The farms of the fleet's edges, in the order their edges first appear."""
    farms: list = []
    for h in fleet:
        if h["role"] == "edge" and h.get("farm") not in farms:
            farms.append(h.get("farm"))
    return farms


def title(fleet: list[dict]) -> str:
    """A one-line summary, such as "edgesync fleet: 1 master, 2 nodes, 4 edges in 2 farms"."""
    count = {role: sum(h["role"] == role for h in fleet) for role in ROWS}
    others = len(fleet) - sum(count.values())
    parts = [_plural(count["master"], "master"), _plural(count["node"], "node")]
    parts.append(f"{_plural(count['edge'], 'edge')} in {_plural(len(_farms(fleet)), 'farm')}")
    if others:
        parts.append(_plural(others, "host") + " of another role")
    return "edgesync fleet: " + ", ".join(parts)


def _subtitle(host: dict) -> str:
    """The second line of a host's label: its role, and its provider when known."""
    provider = host.get("provider")
    return f"{host['role']} · {provider}" if provider else str(host["role"])


def _row(host: dict) -> str:
    """The row a host is drawn in: masters on top, edges at the bottom, the
    nodes (and any host of another role) between them."""
    return host["role"] if host["role"] in ROWS else "node"


def _farm_label(farm) -> str:
    return "no farm" if farm is None else f"farm {farm}"


def _printable(text) -> str:
    """``text`` as one printable line that XML and DOT can both carry."""
    return _NOT_XML.sub("\ufffd", one_line(str(text)))


# -- the balancers, from edgesync.farms -------------------------------------------


def balancer_label(balancer: dict, fleet: list[dict]) -> str:
    """A balancer's words in the picture: "HAProxy on NODE01 :80" (on every
    address of the host), else "HAProxy on NODE01 10.0.0.5:80"; its host by
    the host's name in the picture."""
    host = _names(fleet).get(balancer["host"], balancer["host"])
    where = f":{balancer['port']}" if balancer["address"] in WILDCARDS else listen(balancer)
    return f"HAProxy on {host} {where}"


def _names(fleet: list[dict]) -> dict:
    """Each host's name in the picture by its inventory host name."""
    return {h.get("host", h["name"]): h["name"] for h in fleet}


def balancer_links(fleet: list[dict], balancers: list[dict]) -> list[dict]:
    """The arrows of the balancers drawn: {farm, label, target}, one per edge of
    the farm, its name in the picture. A balancer of a farm with no edge in
    the fleet is not drawn (validation refuses it)."""
    names = _names(fleet)
    drawn = set(_farms(fleet))
    return [
        {"farm": b["farm"], "label": balancer_label(b, fleet), "target": names[edge]}
        for b in balancers
        if b["farm"] in drawn
        for edge in b["edges"]
        if edge in names
    ]


def _balancer_words(link: dict) -> str:
    return f"{link['label']} sends farm {link['farm']}'s users to {link['target']} (HTTP)"


# -- DOT ------------------------------------------------------------------------


def _dot_text(text) -> str:
    """``text`` for inside a DOT quoted string: a backslash stays a backslash
    in a label and a quote stays a quote."""
    return _printable(text).replace("\\", "\\\\").replace('"', '\\"')


def _dq(text) -> str:
    """``text`` as a DOT quoted string."""
    return f'"{_dot_text(text)}"'


def _dot_id(name) -> str:
    """A host's node ID, prefixed so that no host name meets the legend's IDs."""
    return _dq(f"host:{name}")


def _dot_node(host: dict) -> str:
    """A host's node statement: its name over its role and provider."""
    label = f'"{_dot_text(host["name"])}\\n{_dot_text(_subtitle(host))}"'
    fill = FILLS.get(host["role"], OTHER_FILL)
    return f'{_dot_id(host["name"])} [label={label}, fillcolor="{fill}"];'


def _dot_style(link: dict) -> str:
    colour = COLOURS[link["action"]] if link["scheduled"] else COLOURS["allowed"]
    style = "solid" if link["action"] == "push" else "dashed"
    width = 1.8 if link["scheduled"] else 0.8
    return f'color="{colour}", style={style}, penwidth={width}'


def to_dot(fleet: list[dict], links: list[dict], balancers: list[dict] = ()) -> str:
    """The topology as Graphviz DOT text.

    Masters sit on the top rank, nodes in the middle and edges at the bottom,
    each farm's edges in a cluster of their own. A push is a solid arrow and a
    pull a dashed one, in the action's colour when it runs on the timers and in
    thin grey when the policy merely allows it. A legend explains the arrows.

    Only the scheduled links that point down a row shape the layout. The others
    have ``constraint=false``, so an edge's pull from the master does not lift
    the edge. The links between two edges share one line per pair (see
    ``_dot_pair``). Every link's words, such as "EDGE01 push EDGE02 (runs on
    the timers)", are in the tooltip of the line that draws it.

    A farm's balancer sits in the farm's cluster below its edges, a purple
    dashed arrow marked HTTP to each of them.
    """
    http = balancer_links(fleet, balancers)
    lines = [
        "digraph edgesync {",
        f"  graph [label={_dq(title(fleet))}, labelloc=t, fontsize=18, fontname=Helvetica,"
        " nodesep=0.35, ranksep=1.1];",
        '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=11,'
        ' color="#555555"];',
        "  edge [arrowsize=0.7, fontname=Helvetica, fontsize=10];",
        '  "rank:0" [style=invis, shape=point, width=0];',
        '  "rank:1" [style=invis, shape=point, width=0];',
        '  "rank:0" -> "rank:1" [style=invis];',
    ]
    for i, row in enumerate(("master", "node")):
        hosts = [h for h in fleet if _row(h) == row]
        lines += ["  " + _dot_node(h) for h in hosts]
        names = " ".join(_dot_id(h["name"]) + ";" for h in hosts)
        lines.append(f'  {{ rank=same; "rank:{i}"; {names} }}')
    for i, farm in enumerate(_farms(fleet)):
        edges = [h for h in fleet if _row(h) == "edge" and h.get("farm") == farm]
        lines.append(f"  subgraph cluster_farm_{i} {{")
        lines.append(
            f'    label={_dq(_farm_label(farm))}; style="rounded,filled"; fillcolor="#f7f7f2";'
            ' color="#777777"; fontname=Helvetica; fontsize=12;'
        )
        lines += ["    " + _dot_node(h) for h in edges]
        lines.append(f"    {{ rank=same; {' '.join(_dot_id(h['name']) + ';' for h in edges)} }}")
        mine = [lk for lk in http if lk["farm"] == farm]
        if mine:
            label = f'"{_dot_text(mine[0]["label"])}\\n{_dot_text(_farm_label(farm))}"'
            lines.append(
                f'    {_dq(f"balancer:{farm}")} [label={label}, fillcolor="{BALANCER_FILL}"];'
            )
        # The arrow drawn from the balancer up to the edge: the edge ranks above it.
        lines += [f'    {_dot_id(lk["target"])} -> {_dq(f"balancer:{farm}")} [dir=back,'
                  f' {_dot_http_style()}, label="HTTP", tooltip={_dq(_balancer_words(lk))}];'
                  for lk in mine]  # fmt: skip
        lines.append("  }")
        # Each edge hangs below the nodes' row, even one that no node trusts.
        lines += [f'  "rank:1" -> {_dot_id(h["name"])} [style=invis];' for h in edges]
    tier_of = {h["name"]: ROWS.index(_row(h)) for h in fleet}
    between_edges: dict[tuple, list[dict]] = {}
    for lk in links:
        if tier_of[lk["initiator"]] == tier_of[lk["target"]] == ROWS.index("edge"):
            pair = tuple(sorted((lk["initiator"], lk["target"])))
            between_edges.setdefault(pair, []).append(lk)
            continue
        downward = tier_of[lk["initiator"]] < tier_of[lk["target"]]
        constraint = "" if lk["scheduled"] and downward else ", constraint=false"
        lines.append(
            f"  {_dot_id(lk['initiator'])} -> {_dot_id(lk['target'])}"
            f" [{_dot_style(lk)}{constraint}, tooltip={_dq(_link_words(lk))}];"
        )
    lines += [_dot_pair(pair, group) for pair, group in between_edges.items()]
    lines += [
        "  subgraph cluster_legend {",
        '    label="legend"; style="rounded,dashed"; color="#888888"; fontname=Helvetica;'
        " fontsize=11;",
        '    node [shape=point, width=0.05, style=filled, color="#888888", label=""];',
    ]
    for i, (words, lk) in enumerate(_LEGEND):
        lines.append(f'    "legend:{i}a" -> "legend:{i}b" [{_dot_style(lk)}, label={_dq(words)}];')
        lines.append(f'    {{ rank=same; "legend:{i}a"; "legend:{i}b"; }}')
        if i:
            # The legend's rows stand one under the other.
            lines.append(f'    "legend:{i - 1}a" -> "legend:{i}a" [style=invis];')
    if http:
        i = len(_LEGEND)
        lines.append(
            f'    "legend:{i}a" -> "legend:{i}b" [{_dot_http_style()}, label={_dq(HTTP_WORDS)}];'
        )
        lines.append(f'    {{ rank=same; "legend:{i}a"; "legend:{i}b"; }}')
        lines.append(f'    "legend:{i - 1}a" -> "legend:{i}a" [style=invis];')
    lines += ["  }", "}", ""]
    return "\n".join(lines)


def _dot_http_style() -> str:
    return f'color="{COLOURS["http"]}", style=dashed, penwidth=1.4, fontcolor="{COLOURS["http"]}"'


def _dot_pair(pair: tuple, group: list[dict]) -> str:
    """The links between two edges as one DOT edge, its lines side by side.

    On links between hosts of one rank held in clusters, Graphviz 2.43 loops
    forever when two farms' edges link both ways, and aborts on two links
    between one pair. So each pair of edges gets a single line, with an
    arrowhead at each end that is a target, one colour per link, dashes when
    every link is a pull, and every link in its tooltip."""
    first, second = pair
    ways = {lk["initiator"] for lk in group}
    direction = "both" if len(ways) == 2 else "forward" if first in ways else "back"
    group = sorted(group, key=lambda lk: (not lk["scheduled"], lk["initiator"], lk["action"]))
    colours = ":".join(COLOURS[lk["action"]] if lk["scheduled"] else COLOURS["allowed"]
                       for lk in group)  # fmt: skip
    style = "dashed" if all(lk["action"] == "pull" for lk in group) else "solid"
    width = 1.8 if any(lk["scheduled"] for lk in group) else 0.8
    words = "; ".join(_link_words(lk) for lk in group)
    return (
        f'  {_dot_id(first)} -> {_dot_id(second)} [color="{colours}", style={style},'
        f" penwidth={width}, dir={direction}, constraint=false, tooltip={_dq(words)}];"
    )


def _link_words(link: dict) -> str:
    how = "runs on the timers" if link["scheduled"] else "allowed, not scheduled"
    return f"{link['initiator']} {link['action']} {link['target']} ({how})"


# The legend's entries: its words, and a link of the style it shows.
_LEGEND = [
    ("push, runs on the timers", {"action": "push", "scheduled": True}),
    ("pull, runs on the timers", {"action": "pull", "scheduled": True}),
    ("push, allowed but not scheduled", {"action": "push", "scheduled": False}),
    ("pull, allowed but not scheduled", {"action": "pull", "scheduled": False}),
]


# -- SVG: the layout --------------------------------------------------------------


def _box_width(fleet: list[dict]) -> int:
    """One width for every host box: wide enough for the longest label, within bounds."""
    widest = max(
        [MIN_BOX_W]
        + [len(_printable(h["name"])) * NAME_CHAR_W + 24 for h in fleet]
        + [len(_printable(_subtitle(h))) * SUB_CHAR_W + 24 for h in fleet]
    )
    return int(min(MAX_BOX_W, math.ceil(widest)))


def _balancer_width(label: str) -> int:
    return int(min(MAX_BOX_W, max(MIN_BOX_W, math.ceil(len(_printable(label)) * NAME_CHAR_W + 24))))


def _columns(n: int) -> int:
    """How many edges a farm box puts side by side: up to three in one row,
    then a near-square grid, so a large farm grows down as well as across."""
    return n if n <= 3 else math.ceil(math.sqrt(n))


def _layout(fleet: list[dict], http: list[dict] = ()) -> dict:
    """Where everything goes: {"boxes": {name: (x, y, w, h)}, "farms": [(farm,
    x, y, w, h)], "balancers": {farm: (x, y, w, h)}, "farm_of": {edge name:
    farm}, "width": w, "bottom": y}.

    Farms stand side by side in the bottom row, each a box around a grid of its
    edges, in the order of the nodes that trust their edges. Each node sits
    above the farms it trusts edges of when there is room, and the masters are
    centred on top. A farm's balancer (``balancer_links``) gets a row of its
    own in the farm's box, below the edges, centred."""
    bw = _box_width(fleet)
    fronted = {lk["farm"]: lk["label"] for lk in http}
    by_row = {row: [h for h in fleet if _row(h) == row] for row in ROWS}
    first_truster = {}
    for i, h in enumerate(by_row["node"]):
        for t in h.get("trusted") or []:
            first_truster.setdefault(t, i)
    farms = _farms(fleet)
    members = {f: [h for h in by_row["edge"] if h.get("farm") == f] for f in farms}
    order = {f: min([first_truster.get(h["name"], len(fleet)) for h in members[f]]) for f in farms}
    farms.sort(key=lambda f: order[f])  # a stable sort keeps the inventory's order otherwise

    y_master = TITLE_H
    y_node = y_master + BOX_H + RANK_GAP
    y_farm = y_node + BOX_H + RANK_GAP
    boxes: dict[str, tuple] = {}
    farm_boxes = []
    x = MARGIN
    for f in farms:
        cols = _columns(len(members[f]))
        rows = math.ceil(len(members[f]) / cols)
        w = cols * bw + (cols - 1) * CELL_GAP_X + 2 * FARM_PAD
        h = FARM_LABEL_H + rows * BOX_H + (rows - 1) * CELL_GAP_Y + 2 * FARM_PAD
        if f in fronted:
            w = max(w, _balancer_width(fronted[f]) + 2 * FARM_PAD)
            h += CELL_GAP_Y + BOX_H
        farm_boxes.append([f, x, y_farm, w, h])
        x += w + FARM_GAP
    farms_width = x - FARM_GAP - MARGIN if farms else 0
    nodes_width = len(by_row["node"]) * (bw + GAP_X) - GAP_X
    masters_width = len(by_row["master"]) * (bw + GAP_X) - GAP_X
    content = max(farms_width, nodes_width, masters_width, 0)
    shift = (content - farms_width) / 2
    for fb in farm_boxes:
        fb[1] += shift
    for f, fx, fy, _w, _h in farm_boxes:
        cols = _columns(len(members[f]))
        for k, h in enumerate(members[f]):
            r, c = divmod(k, cols)
            boxes[h["name"]] = (
                fx + FARM_PAD + c * (bw + CELL_GAP_X),
                fy + FARM_LABEL_H + FARM_PAD + r * (BOX_H + CELL_GAP_Y),
                bw,
                BOX_H,
            )

    balancer_boxes = {}
    for f, fx, fy, fw, fh in farm_boxes:
        if f in fronted:
            w = _balancer_width(fronted[f])
            balancer_boxes[f] = (fx + (fw - w) / 2, fy + fh - FARM_PAD - BOX_H, w, BOX_H)

    # A node wants to be centred above the farms of the edges it trusts.
    centre_of_farm = {fb[0]: fb[1] + fb[3] / 2 for fb in farm_boxes}
    farm_of = {h["name"]: h.get("farm") for h in by_row["edge"]}
    wanted = []
    for i, h in enumerate(by_row["node"]):
        mine = {farm_of[t] for t in h.get("trusted") or [] if t in farm_of}
        centres = [centre_of_farm[f] for f in mine]
        wanted.append((sum(centres) / len(centres) if centres else math.inf, i, h))
    wanted.sort(key=lambda item: (item[0], item[1]))
    if all(c == math.inf for c, _i, _h in wanted) or nodes_width >= content:
        # No preference, or no room for one: an even row, centred.
        start = MARGIN + (content - nodes_width) / 2
        for k, (_c, _i, h) in enumerate(wanted):
            boxes[h["name"]] = (start + k * (bw + GAP_X), y_node, bw, BOX_H)
    else:
        # Left to right, each as near its farms as the one before it allows;
        # those without farms follow. Then the row is pulled back left if it
        # ran past the right margin.
        left = MARGIN
        placed = []
        for c, _i, h in wanted:
            want = c - bw / 2 if c != math.inf else left
            x0 = max(want, left)
            placed.append((h, x0))
            left = x0 + bw + GAP_X
        overrun = max(0, placed[-1][1] + bw - (MARGIN + content))
        for h, x0 in placed:
            boxes[h["name"]] = (x0 - overrun, y_node, bw, BOX_H)
    start = MARGIN + (content - masters_width) / 2
    for k, h in enumerate(by_row["master"]):
        boxes[h["name"]] = (start + k * (bw + GAP_X), y_master, bw, BOX_H)

    bottom = max([fb[2] + fb[4] for fb in farm_boxes] + [y_node + BOX_H])
    return {
        "boxes": boxes,
        "farms": [tuple(fb) for fb in farm_boxes],
        "balancers": balancer_boxes,
        "farm_of": farm_of,
        "width": content + 2 * MARGIN,
        "bottom": bottom,
    }


def _edge_point(box: tuple, toward: tuple, gap: float) -> tuple:
    """Where the line from the centre of ``box`` toward a point leaves the box,
    ``gap`` pixels out."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    dx, dy = toward[0] - cx, toward[1] - cy
    if dx == 0 and dy == 0:
        return cx, cy
    t = min(
        (w / 2 + gap) / abs(dx) if dx else math.inf,
        (h / 2 + gap) / abs(dy) if dy else math.inf,
    )
    return cx + t * dx, cy + t * dy


def _curves(links: list[dict], layout: dict) -> list[tuple]:
    """Each drawable link with its path: (link, "M … Q …").

    The links between one pair of hosts (up to four: a push and a pull each
    way) bend apart so that none hides another. A link between two edges of
    one farm always bends, so it stays a curve inside the farm's box."""
    boxes, farm_of = layout["boxes"], layout["farm_of"]
    pairs: dict[tuple, list[dict]] = {}
    for lk in links:
        if lk["initiator"] in boxes and lk["target"] in boxes:
            pair = tuple(sorted((lk["initiator"], lk["target"])))
            pairs.setdefault(pair, []).append(lk)
    out = []
    for (first, second), group in pairs.items():
        group.sort(key=lambda lk: (lk["initiator"] != first, lk["action"]))
        (ax, ay, aw, ah), (bx, by, bw, bh) = boxes[first], boxes[second]
        a, b = (ax + aw / 2, ay + ah / 2), (bx + bw / 2, by + bh / 2)
        length = math.hypot(b[0] - a[0], b[1] - a[1]) or 1.0
        # The normal of the pair's line, the same for both directions.
        nx, ny = (a[1] - b[1]) / length, (b[0] - a[0]) / length
        same_farm = first in farm_of and second in farm_of and farm_of[first] == farm_of[second]
        k = len(group)
        for i, lk in enumerate(group):
            bend = (i - (k - 1) / 2) * SPREAD
            if same_farm:
                # Away from the straight line, so a lone link between two edges curves too.
                bend += math.copysign(1.5 * SPREAD, bend or 1)
            # A quadratic curve's middle lies halfway to its control point.
            mid = ((a[0] + b[0]) / 2 + 2 * bend * nx, (a[1] + b[1]) / 2 + 2 * bend * ny)
            start_box, end_box = boxes[lk["initiator"]], boxes[lk["target"]]
            sx, sy = _edge_point(start_box, mid, 2)
            ex, ey = _edge_point(end_box, mid, 3)
            path = f"M {sx:.1f} {sy:.1f} Q {mid[0]:.1f} {mid[1]:.1f} {ex:.1f} {ey:.1f}"
            out.append((lk, path))
    return out


# -- SVG: the drawing -------------------------------------------------------------


def _attr(value) -> str:
    """``value`` as a quoted, escaped XML attribute value."""
    return quoteattr(_printable(value))


def _text(value) -> str:
    """``value`` as escaped XML character data."""
    return escape(_printable(value))


def _fit(text: str, width: float, char_w: float) -> str:
    """``text`` cut short with an ellipsis if it would overflow ``width`` pixels."""
    room = max(3, int((width - 16) / char_w))
    return text if len(text) <= room else text[: room - 1] + "…"


def _link_attrs(link: dict) -> str:
    """The stroke of a link: colour per action, dashed for a pull, thin grey
    when it is allowed but not scheduled; and its arrowhead."""
    kind = link["action"] if link["scheduled"] else "allowed"
    dash = ' stroke-dasharray="7 4"' if link["action"] == "pull" else ""
    width = 2 if link["scheduled"] else 1
    return (
        f'fill="none" stroke="{COLOURS[kind]}" stroke-width="{width}"{dash}'
        f' marker-end="url(#head-{kind})"'
    )


def _marker(kind: str) -> str:
    return (
        f'<marker id="head-{kind}" viewBox="0 0 10 8" refX="9" refY="4" markerWidth="10"'
        f' markerHeight="8" markerUnits="userSpaceOnUse" orient="auto">'
        f'<path d="M 0 0 L 10 4 L 0 8 z" fill="{COLOURS[kind]}"/></marker>'
    )


def to_svg(fleet: list[dict], links: list[dict], balancers: list[dict] = ()) -> str:
    """The topology as a standalone SVG document, laid out here in pure Python.

    Masters stand in the top row and nodes below them. Farms are labelled,
    rounded boxes side by side at the bottom, with their edges inside. Each
    link is one ``path`` element of class ``link`` with an arrowhead at its
    target. A push is solid and a pull dashed, in the action's colour when
    it runs on the timers, or thin and grey when the policy merely allows it.
    Links between edges of one farm curve inside the farm's box. A title
    sums up the fleet and a legend explains the arrows. Every name is
    escaped, so nothing an inventory holds can break the document.

    A farm's balancer is a box of class ``balancer`` in the farm's box, below
    its edges, and its arrow to each edge a dashed ``path`` of class
    ``balance``.
    """
    http = balancer_links(fleet, balancers)
    layout = _layout(fleet, http)
    boxes = layout["boxes"]
    legend_y = layout["bottom"] + 40
    height = legend_y + (122 if http else 100)
    width = max(layout["width"], 720)
    shift = (width - layout["width"]) / 2
    scheduled = sum(1 for lk in links if lk["scheduled"])
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}"'
        f' viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif">',
        f"<title>{_text(title(fleet))}</title>",
        "<defs>" + "".join(_marker(kind) for kind in COLOURS) + "</defs>",
        f'<rect class="background" x="0" y="0" width="{width:.0f}" height="{height:.0f}"'
        ' fill="#ffffff"/>',
        f'<g transform="translate({shift:.1f} 0)">',
        f'<text class="title" x="{layout["width"] / 2:.1f}" y="30" text-anchor="middle"'
        f' font-size="18" font-weight="bold">{_text(title(fleet))}</text>',
        f'<text class="subtitle" x="{layout["width"] / 2:.1f}" y="50" text-anchor="middle"'
        f' font-size="12" fill="#555555">who may push to and pull from whom, by the agents\''
        f" own policy: {scheduled} of {len(links)} links run on the timers</text>",
    ]
    for farm, x, y, w, h in layout["farms"]:
        out.append(
            f'<g class="farm"><rect class="farm" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}"'
            f' height="{h:.1f}" rx="14" fill="#f7f7f2" stroke="#888888"/>'
            f'<text x="{x + 14:.1f}" y="{y + 22:.1f}" font-size="13" font-weight="bold"'
            f' fill="#444444">{_text(_fit(_farm_label(farm), w, 7.5))}</text></g>'
        )
    curves = _curves(links, layout)
    for group, wanted in (("allowed", False), ("scheduled", True)):
        opacity = "" if wanted else ' opacity="0.6"'
        out.append(f'<g class="links {group}"{opacity}>')
        for lk, path in curves:
            if lk["scheduled"] == wanted:
                out.append(
                    f'<path class="link {lk["action"]}" d="{path}" {_link_attrs(lk)}'
                    f' data-initiator={_attr(lk["initiator"])} data-action="{lk["action"]}"'
                    f" data-target={_attr(lk['target'])}>"
                    f"<title>{_text(_link_words(lk))}</title></path>"
                )
        out.append("</g>")
    out.append('<g class="links http">')
    for lk in http:
        start = layout["balancers"][lk["farm"]]
        x, y, w, bh = boxes[lk["target"]]
        sx, sy = _edge_point(start, (x + w / 2, y + bh / 2), 2)
        ex, ey = _edge_point(boxes[lk["target"]], (sx, sy), 3)
        out.append(
            f'<path class="balance" d="M {sx:.1f} {sy:.1f} L {ex:.1f} {ey:.1f}" {_http_attrs()}'
            f" data-farm={_attr(lk['farm'])} data-target={_attr(lk['target'])}>"
            f"<title>{_text(_balancer_words(lk))}</title></path>"
        )
    out.append("</g>")
    for farm, (x, y, w, bh) in layout["balancers"].items():
        label = next(lk["label"] for lk in http if lk["farm"] == farm)
        out.append(
            f'<g class="balancer"><title>{_text(label)}</title>'
            f'<rect class="balancer" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bh:.1f}"'
            f' rx="6" fill="{BALANCER_FILL}" stroke="#555555" data-farm={_attr(farm)}/>'
            f'<text x="{x + w / 2:.1f}" y="{y + 18:.1f}" text-anchor="middle" font-size="13"'
            f' font-weight="bold">{_text(_fit(_printable(label), w, NAME_CHAR_W))}</text>'
            f'<text x="{x + w / 2:.1f}" y="{y + 33:.1f}" text-anchor="middle" font-size="11"'
            f' fill="#444444">{_text(_fit(f"balancer · {_farm_label(farm)}", w, SUB_CHAR_W))}'
            "</text></g>"
        )
    for h in fleet:
        if h["name"] not in boxes:
            continue
        x, y, w, bh = boxes[h["name"]]
        name, sub = _printable(h["name"]), _printable(_subtitle(h))
        out.append(
            f'<g class="host {_row(h)}"><title>{_text(name)}</title>'
            f'<rect class="host" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{bh:.1f}" rx="6"'
            f' fill="{FILLS.get(h["role"], OTHER_FILL)}" stroke="#555555"'
            f" data-name={_attr(name)}/>"
            f'<text x="{x + w / 2:.1f}" y="{y + 18:.1f}" text-anchor="middle" font-size="13"'
            f' font-weight="bold">{_text(_fit(name, w, NAME_CHAR_W))}</text>'
            f'<text x="{x + w / 2:.1f}" y="{y + 33:.1f}" text-anchor="middle" font-size="11"'
            f' fill="#444444">{_text(_fit(sub, w, SUB_CHAR_W))}</text></g>'
        )
    out.append(_svg_legend(legend_y, bool(http)))
    out += ["</g>", "</svg>", ""]
    return "\n".join(out)


def _http_attrs() -> str:
    return (f'fill="none" stroke="{COLOURS["http"]}" stroke-width="1.5" stroke-dasharray="3 3"'
            ' marker-end="url(#head-http)"')  # fmt: skip


def _svg_legend(y: float, balancers: bool = False) -> str:
    """The legend: a sample of each kind of arrow, two to a row (the balancers'
    HTTP on a row of its own), and the fills of the roles (and balancers)."""
    parts = [f'<g class="legend" transform="translate({MARGIN} {y:.1f})">']
    parts.append('<text x="0" y="0" font-size="12" font-weight="bold">legend</text>')
    for i, (words, lk) in enumerate(_LEGEND):
        x, row_y = (i % 2) * 300, 22 + (i // 2) * 22
        parts.append(
            f'<path d="M {x} {row_y - 4} L {x + 44} {row_y - 4}" {_link_attrs(lk)}/>'
            f'<text x="{x + 54}" y="{row_y}" font-size="12">{_text(words)}</text>'
        )
    fills = [(role, FILLS[role]) for role in ROWS]
    top = 62
    if balancers:
        parts.append(
            f'<path d="M 0 62 L 44 62" {_http_attrs()}/>'
            f'<text x="54" y="66" font-size="12">{_text(HTTP_WORDS)}</text>'
        )
        fills.append(("balancer", BALANCER_FILL))
        top += 22
    for i, (role, fill) in enumerate(fills):
        x = i * 120
        parts.append(
            f'<rect x="{x}" y="{top}" width="18" height="12" rx="3" fill="{fill}"'
            f' stroke="#555555"/><text x="{x + 24}" y="{top + 10}" font-size="12">{role}</text>'
        )
    parts.append("</g>")
    return "".join(parts)


# -- files ------------------------------------------------------------------------


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


def render(fleet: list[dict], out: Path, balancers: list[dict] = ()) -> list[Path]:
    """Draw the fleet into ``out``.svg and ``out``.dot, and into ``out``.png when
    Graphviz's ``dot`` is on the PATH; return the paths written. ``balancers``
    are the farms' (``edgesync.farms.balancers``).

    ``out`` names the files without their suffix; a trailing .svg, .dot or .png
    is dropped. Each file is written atomically. If ``dot`` fails or takes
    longer than DOT_TIMEOUT seconds, the SVG and DOT files stay and a
    RuntimeError says what went wrong.
    """
    out = Path(out)
    if out.suffix in (".svg", ".dot", ".png"):
        out = out.with_suffix("")
    links = allowed_links(fleet)
    svg, dot = out.with_name(out.name + ".svg"), out.with_name(out.name + ".dot")
    _write_atomic(svg, to_svg(fleet, links, balancers).encode())
    _write_atomic(dot, to_dot(fleet, links, balancers).encode())
    written = [svg, dot]
    program = shutil.which("dot")
    if program:
        png = out.with_name(out.name + ".png")
        tmp = png.with_name(f".{png.name}.{os.getpid()}.tmp")
        command = [program, "-Tpng", "-o", str(tmp), str(dot)]
        try:
            try:
                done = subprocess.run(command, capture_output=True, text=True,
                                      timeout=DOT_TIMEOUT, check=False)  # fmt: skip
            except subprocess.TimeoutExpired as exc:
                raise RuntimeError(
                    f"Graphviz dot did not draw {png} within {DOT_TIMEOUT} seconds"
                ) from exc
            if done.returncode != 0 or not tmp.exists():
                said = one_line(done.stderr.strip())[:500] or f"exit status {done.returncode}"
                raise RuntimeError(f"Graphviz dot could not draw {png}: {said}")
            os.replace(tmp, png)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(png)
    return written
