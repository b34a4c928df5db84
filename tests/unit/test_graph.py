"""edgectl graph: the picture of who may push to and pull from whom."""

import os
import shutil
import stat
import sys
import xml.etree.ElementTree as ET
from itertools import combinations
from pathlib import Path

import pytest

from edgectl import graph, project
from edgesync import farms, topology
from edgesync.policy import may_accept, may_initiate

SVG = "{http://www.w3.org/2000/svg}"

# inventory/local's shape: one master, two nodes, two farms of two edges.
LOCAL = [
    {"name": "MASTER01", "role": "master", "farm": None, "trusted": [], "provider": "lxd"},
    {"name": "NODE01", "role": "node", "farm": None, "provider": "docker",
     "trusted": ["MASTER01", "NODE02", "EDGE01", "EDGE02"]},
    {"name": "NODE02", "role": "node", "farm": None, "provider": "lxd",
     "trusted": ["MASTER01", "NODE01", "EDGE03", "EDGE04"]},
    {"name": "EDGE01", "role": "edge", "farm": "lon-a", "trusted": [], "provider": "lxd"},
    {"name": "EDGE02", "role": "edge", "farm": "lon-a", "trusted": [], "provider": "docker"},
    {"name": "EDGE03", "role": "edge", "farm": "lon-b", "trusted": [], "provider": "lxd"},
    {"name": "EDGE04", "role": "edge", "farm": "lon-b", "trusted": [], "provider": "docker"},
]  # fmt: skip


# The same with the inventory's host names, as edgectl reads an inventory.
LOCAL_HOSTS = [{**h, "host": h["name"].lower()} for h in LOCAL]


def big_fleet(farms: int = 4, per_farm: int = 4) -> list[dict]:
    """A master, a node per farm trusting the master and its farm's edges."""
    fleet = [{"name": "MASTER01", "role": "master", "farm": None, "trusted": []}]
    for f in range(farms):
        edges = [f"EDGE{f}{k}" for k in range(per_farm)]
        fleet.append({"name": f"NODE{f}", "role": "node", "farm": None,
                      "trusted": ["MASTER01", *edges]})  # fmt: skip
    for f in range(farms):
        fleet += [{"name": f"EDGE{f}{k}", "role": "edge", "farm": f"farm-{f}", "trusted": []}
                  for k in range(per_farm)]  # fmt: skip
    return fleet


def keys(links):
    return {(lk["initiator"], lk["action"], lk["target"]) for lk in links}


def by_host(fleet):
    return {h["name"]: h for h in fleet}


# -- allowed_links follows the policy ------------------------------------------


def test_every_allowed_link_passes_both_sides_of_the_policy():
    hosts = by_host(LOCAL)
    for lk in graph.allowed_links(LOCAL):
        a, b = topology.party(hosts[lk["initiator"]]), topology.party(hosts[lk["target"]])
        assert may_initiate(a, lk["action"], b) and may_accept(b, lk["action"], a), lk


def test_every_pair_the_policy_allows_is_listed():
    hosts = by_host(LOCAL)
    listed = keys(graph.allowed_links(LOCAL))
    for a in LOCAL:
        for b in LOCAL:
            for action in ("push", "pull"):
                pa, pb = topology.party(a), topology.party(b)
                both = may_initiate(pa, action, pb) and may_accept(pb, action, pa)
                if a is not b and both:
                    assert (a["name"], action, b["name"]) in listed
    assert len(hosts) == len(LOCAL)


def test_edges_never_push_to_the_master_nor_to_another_farms_edges():
    hosts = by_host(LOCAL)
    for a, action, b in keys(graph.allowed_links(LOCAL)):
        if hosts[a]["role"] == "edge" and action == "push":
            assert hosts[b]["role"] == "edge" and hosts[b]["farm"] == hosts[a]["farm"]
    assert ("EDGE01", "push", "EDGE02") in keys(graph.allowed_links(LOCAL))
    assert ("EDGE01", "pull", "MASTER01") in keys(graph.allowed_links(LOCAL))


def test_a_node_pushes_to_and_pulls_from_only_its_trusted_list():
    hosts = by_host(LOCAL)
    for a, _action, b in keys(graph.allowed_links(LOCAL)):
        if hosts[a]["role"] == "node":
            assert b in hosts[a]["trusted"]
    node01 = {(action, b) for a, action, b in keys(graph.allowed_links(LOCAL)) if a == "NODE01"}
    trusted = hosts["NODE01"]["trusted"]
    assert node01 == {(action, t) for t in trusted for action in ("push", "pull")}


def test_the_master_pushes_to_and_pulls_from_everyone():
    masters = {(action, b) for a, action, b in keys(graph.allowed_links(LOCAL)) if a == "MASTER01"}
    others = [h["name"] for h in LOCAL if h["name"] != "MASTER01"]
    assert masters == {(action, b) for b in others for action in ("push", "pull")}


def test_a_target_without_a_peer_entry_for_the_caller_refuses_it():
    # NODE02 does not trust EDGE01, so its config has no entry for it and it
    # refuses EDGE01's pulls, though an edge may pull from any peer it knows.
    assert ("EDGE01", "pull", "NODE02") not in keys(graph.allowed_links(LOCAL))
    assert ("EDGE01", "pull", "NODE01") in keys(graph.allowed_links(LOCAL))


def test_the_scheduled_links_are_the_ones_the_timers_run():
    links = graph.allowed_links(LOCAL)
    assert keys(lk for lk in links if lk["scheduled"]) == keys(topology.links(LOCAL))
    assert any(not lk["scheduled"] for lk in links)


# -- the SVG ---------------------------------------------------------------------


def parse_svg(fleet):
    links = graph.allowed_links(fleet)
    return ET.fromstring(graph.to_svg(fleet, links)), links


def test_the_svg_parses_names_every_host_and_draws_one_arrow_per_link():
    root, links = parse_svg(LOCAL)
    texts = {t.text for t in root.iter(f"{SVG}text")}
    for h in LOCAL:
        assert h["name"] in texts
    assert "edgesync fleet: 1 master, 2 nodes, 4 edges in 2 farms" in texts
    arrows = [p for p in root.iter(f"{SVG}path") if "link" in p.get("class", "").split()]
    assert len(arrows) == len(links)
    drawn = {(p.get("data-initiator"), p.get("data-action"), p.get("data-target")) for p in arrows}
    assert drawn == keys(links)
    assert all(p.get("marker-end", "").startswith("url(#head-") for p in arrows)
    for p in arrows:
        lk = next(lk for lk in links if keys([lk]) == {(p.get("data-initiator"),
                  p.get("data-action"), p.get("data-target"))})  # fmt: skip
        assert ("stroke-dasharray" in p.attrib) == (lk["action"] == "pull")
        if not lk["scheduled"]:
            assert p.get("stroke") == graph.COLOURS["allowed"]


def test_links_between_edges_of_one_farm_are_curves_inside_its_box():
    root, _links = parse_svg(LOCAL)
    farm = next(r for r in root.iter(f"{SVG}rect") if r.get("class") == "farm")
    x, y = float(farm.get("x")), float(farm.get("y"))
    w, h = float(farm.get("width")), float(farm.get("height"))
    pair = {"EDGE01", "EDGE02"}
    inside = [p for p in root.iter(f"{SVG}path")
              if {p.get("data-initiator"), p.get("data-target")} == pair]  # fmt: skip
    assert len(inside) == 4  # a push and a pull each way
    for p in inside:
        words = p.get("d").split()
        assert words[3] == "Q"
        points = [float(v) for v in words[1:3] + words[4:]]
        (sx, sy), (cx, cy), (ex, ey) = zip(points[::2], points[1::2], strict=True)
        # Points along the quadratic curve, ends included, lie in the box.
        for t in (i / 10 for i in range(11)):
            px = (1 - t) ** 2 * sx + 2 * (1 - t) * t * cx + t**2 * ex
            py = (1 - t) ** 2 * sy + 2 * (1 - t) * t * cy + t**2 * ey
            assert x <= px <= x + w and y <= py <= y + h
        # The control point lies off the line between the ends: a curve.
        assert abs((ex - sx) * (cy - sy) - (ey - sy) * (cx - sx)) > 1


def test_a_hostile_name_cannot_break_the_svg():
    fleet = [dict(h) for h in LOCAL]
    evil = "EDGE<01>&\"'x"
    fleet[3]["name"] = evil
    fleet[1]["trusted"] = ["MASTER01", "NODE02", evil, "EDGE02"]
    fleet[4]["provider"] = "<script>&"
    root, links = parse_svg(fleet)
    assert evil in {t.text for t in root.iter(f"{SVG}text")}
    assert any(lk["initiator"] == evil for lk in links)
    arrows = [p for p in root.iter(f"{SVG}path") if p.get("data-initiator") == evil]
    assert arrows and len(arrows) == sum(lk["initiator"] == evil for lk in links)
    dot = graph.to_dot(fleet, links)
    assert '"host:EDGE<01>&\\"\'x"' in dot


def boxes(root, cls):
    return [(float(r.get("x")), float(r.get("y")), float(r.get("width")), float(r.get("height")))
            for r in root.iter(f"{SVG}rect") if r.get("class") == cls]  # fmt: skip


def overlap(a, b):
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_sixteen_edges_in_four_farms_have_no_overlapping_boxes():
    fleet = big_fleet(4, 4)
    root, links = parse_svg(fleet)
    hosts, farms = boxes(root, "host"), boxes(root, "farm")
    assert len(hosts) == len(fleet) and len(farms) == 4
    for a, b in combinations(hosts, 2):
        assert not overlap(a, b), (a, b)
    for a, b in combinations(farms, 2):
        assert not overlap(a, b), (a, b)
    # Each edge sits inside exactly one farm box.
    edges = [b for b in hosts if b[1] >= min(f[1] for f in farms)]
    assert len(edges) == 16
    for e in edges:
        assert sum(f[0] <= e[0] and e[0] + e[2] <= f[0] + f[2] and f[1] <= e[1]
                   and e[1] + e[3] <= f[1] + f[3] for f in farms) == 1  # fmt: skip
    width = float(root.get("width"))
    assert all(x >= 0 and x + w <= width for x, _y, w, _h in hosts + farms)
    assert len([p for p in root.iter(f"{SVG}path") if p.get("data-action")]) == len(links)


def test_the_picture_widens_with_the_number_of_farms():
    two = float(parse_svg(big_fleet(2, 4))[0].get("width"))
    six = float(parse_svg(big_fleet(6, 4))[0].get("width"))
    assert six > two


# -- the DOT ---------------------------------------------------------------------


def test_the_dot_text_holds_every_link_in_layered_clusters():
    links = graph.allowed_links(LOCAL)
    dot = graph.to_dot(LOCAL, links)
    for lk in links:
        assert graph._link_words(lk) in dot
    assert dot.count("subgraph cluster_farm_") == 2
    assert '"farm lon-a"' in dot and '"farm lon-b"' in dot
    assert '{ rank=same; "rank:0"; "host:MASTER01"; }' in dot
    assert '"host:NODE01" [label="NODE01\\nnode · docker"' in dot
    assert "cluster_legend" in dot
    push = next(line for line in dot.splitlines() if "NODE01 push MASTER01" in line)
    assert "style=solid" in push and graph.COLOURS["push"] in push
    pull = next(line for line in dot.splitlines() if "MASTER01 pull NODE01" in line)
    assert "style=dashed" in pull and graph.COLOURS["allowed"] in pull


# -- the balancers ------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local():
    """inventory/local as edgectl graph reads it: its fleet and its balancers
    (ansible-inventory beside this Python, as edgectl finds it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
        listing = project.read_inventory(REPO, REPO / "inventory" / "local")
    fleet = project.fleet_of(listing)
    return fleet, project.balancers_of(listing, fleet)


def test_each_farms_balancer_stands_in_its_box_with_an_http_arrow_to_each_edge(local):
    fleet, balancers = local
    assert [(b["farm"], b["host"]) for b in balancers] == [("lon-a", "node01"), ("lon-b", "node02")]
    links = graph.allowed_links(fleet)
    root = ET.fromstring(graph.to_svg(fleet, links, balancers))
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert {"HAProxy on NODE01 :80", "HAProxy on NODE02 :80", graph.HTTP_WORDS} <= texts
    arrows = [p for p in root.iter(f"{SVG}path") if p.get("class") == "balance"]
    drawn = {(p.get("data-farm"), p.get("data-target")) for p in arrows}
    assert drawn == {("lon-a", "EDGE01"), ("lon-a", "EDGE02"), ("lon-b", "EDGE03"),
                     ("lon-b", "EDGE04")}  # fmt: skip
    for p in arrows:
        assert p.get("stroke") == graph.COLOURS["http"] and "stroke-dasharray" in p.attrib
        assert p.get("marker-end") == "url(#head-http)"
    # The policy's arrows are all still drawn, one each.
    assert len([p for p in root.iter(f"{SVG}path") if p.get("data-action")]) == len(links)
    farm_boxes = dict(zip(["lon-a", "lon-b"], boxes(root, "farm"), strict=True))
    hosts = boxes(root, "host")
    for rect in (r for r in root.iter(f"{SVG}rect") if r.get("class") == "balancer"):
        b = tuple(float(rect.get(k)) for k in ("x", "y", "width", "height"))
        f = farm_boxes[rect.get("data-farm")]
        assert (
            f[0] <= b[0]
            and b[0] + b[2] <= f[0] + f[2]
            and f[1] <= b[1] <= b[1] + b[3] <= f[1] + f[3]
        )
        assert not any(overlap(b, h) for h in hosts)
        edges = [h for h in hosts if f[0] <= h[0] <= f[0] + f[2] and f[1] <= h[1] <= f[1] + f[3]]
        assert len(edges) == 2 and all(h[1] + h[3] < b[1] for h in edges)  # below its edges


def test_the_dot_text_puts_each_balancer_in_its_farms_cluster(local):
    fleet, balancers = local
    dot = graph.to_dot(fleet, graph.allowed_links(fleet), balancers)
    cluster = dot.split("subgraph cluster_farm_0 {")[1].split("  }")[0]
    assert '"balancer:lon-a" [label="HAProxy on NODE01 :80\\nfarm lon-a"' in cluster
    for edge in ("EDGE01", "EDGE02"):
        arrow = next(line for line in cluster.splitlines()
                     if line.strip().startswith(f'"host:{edge}" -> "balancer:lon-a"'))  # fmt: skip
        assert "dir=back" in arrow and 'label="HTTP"' in arrow and "style=dashed" in arrow
    assert dot.count('-> "balancer:') == 4
    assert graph.HTTP_WORDS in dot
    assert graph.HTTP_WORDS not in graph.to_dot(fleet, graph.allowed_links(fleet))


def test_a_balancer_on_one_address_says_it():
    b = farms.balancers(LOCAL_HOSTS, {"lon-b": {"host": "node02", "port": 81,
                                                "address": "10.0.0.5"}})  # fmt: skip
    assert graph.balancer_label(b[0], LOCAL_HOSTS) == "HAProxy on NODE02 10.0.0.5:81"
    b = farms.balancers(LOCAL_HOSTS, {"lon-b": {"host": "node02", "address": "::"}})
    assert graph.balancer_label(b[0], LOCAL_HOSTS) == "HAProxy on NODE02 :80"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_render_with_balancers_and_the_real_graphviz(tmp_path, local):
    fleet, balancers = local
    written = graph.render(fleet, tmp_path / "fleet", balancers)
    assert written[-1].read_bytes().startswith(b"\x89PNG")


# -- render() --------------------------------------------------------------------


def test_render_without_graphviz_writes_svg_and_dot(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    written = graph.render(LOCAL, tmp_path / "fleet")
    assert written == [tmp_path / "fleet.svg", tmp_path / "fleet.dot"]
    ET.parse(written[0])
    assert written[1].read_text().startswith("digraph edgesync {")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.dot", "fleet.svg"]


def fake_dot(tmp_path, script):
    program = tmp_path / "bin" / "dot"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return str(program)


def test_render_with_graphviz_adds_a_png(tmp_path, monkeypatch):
    # A stand-in for dot that writes a PNG signature where -o says.
    program = fake_dot(tmp_path, 'printf "\\211PNG\\r\\n\\032\\n" > "$3"\n')
    monkeypatch.setattr(shutil, "which", lambda name: program if name == "dot" else None)
    out = tmp_path / "out"
    out.mkdir()
    written = graph.render(LOCAL, out / "fleet.svg")
    assert written == [out / "fleet.svg", out / "fleet.dot", out / "fleet.png"]
    assert (out / "fleet.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(os.listdir(out)) == ["fleet.dot", "fleet.png", "fleet.svg"]


def test_a_failing_dot_leaves_svg_and_dot_and_says_why(tmp_path, monkeypatch):
    program = fake_dot(tmp_path, 'echo "no layout for you" >&2\nexit 3\n')
    monkeypatch.setattr(shutil, "which", lambda name: program if name == "dot" else None)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="no layout for you"):
        graph.render(LOCAL, out / "fleet")
    assert sorted(os.listdir(out)) == ["fleet.dot", "fleet.svg"]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_render_with_the_real_graphviz(tmp_path):
    written = graph.render(big_fleet(4, 4), tmp_path / "fleet")
    assert written[-1].read_bytes().startswith(b"\x89PNG")
