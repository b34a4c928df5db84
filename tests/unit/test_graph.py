"""edgectl graph: the picture of who may push to and pull from whom."""

import json
import os
import re
import stat
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgectl import cli, graph, project
from edgectl.errors import USAGE, UsageError
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


# -- the DOT ---------------------------------------------------------------------


def words(lk):
    how = "runs on the timers" if lk["scheduled"] else "allowed, not scheduled"
    return f"{lk['initiator']} {lk['action']} {lk['target']} ({how})"


def lines_with(dot, text):
    return [line for line in dot.splitlines() if text in line]


@pytest.mark.parametrize("all_links", [False, True])
def test_every_host_is_one_node_on_its_roles_rank(all_links):
    dot = graph.to_dot(LOCAL, graph.allowed_links(LOCAL), all_links=all_links)
    for h in LOCAL:
        assert len(lines_with(dot, f'"host:{h["name"]}" [label="{h["name"]}\\n')) == 1
    assert '{ rank=same; "rank:0"; "host:MASTER01"; legend; }' in dot
    assert '{ rank=same; "rank:1"; "host:NODE01"; "host:NODE02"; }' in dot
    edges = '"host:EDGE01"; "host:EDGE02"; "host:EDGE03"; "host:EDGE04";'
    assert f'{{ rank=same; "rank:2"; {edges} }}' in dot
    assert '"host:NODE01" [label="NODE01\\nnode · docker"' in dot
    assert "edgesync fleet: 1 master, 2 nodes, 4 edges in 2 farms" in dot


def test_each_farm_is_a_cluster_of_its_edges():
    dot = graph.to_dot(LOCAL, graph.allowed_links(LOCAL))
    assert dot.count("subgraph cluster_farm_") == 2
    lon_b = dot.split("subgraph cluster_farm_1 {")[1].split("\n  }")[0]
    assert '"farm lon-b"' in lon_b
    assert '"host:EDGE03" [' in lon_b and '"host:EDGE04" [' in lon_b
    assert '"host:EDGE01" [' not in lon_b


def test_the_scheduled_links_are_drawn_strong_and_the_others_not_by_default():
    links = graph.allowed_links(LOCAL)
    dot = graph.to_dot(LOCAL, links)
    for lk in links:
        assert (words(lk) in dot) == lk["scheduled"], lk
    assert "style=dashed" not in dot and graph.COLOURS["allowed"] not in dot
    hidden = sum(not lk["scheduled"] for lk in links)
    assert f"{hidden} more links the policy allows are not drawn (--all-links)" in dot
    push = lines_with(dot, "NODE01 push MASTER01 (runs on the timers)")
    assert len(push) == 1 and "penwidth=2.2" in push[0]
    # One line from MASTER01 down to NODE01, with a strand per action, arrowhead up.
    colours = f'color="{graph.COLOURS["push"]}:{graph.COLOURS["pull"]}"'
    assert push[0].strip().startswith('"host:MASTER01" -> "host:NODE01"')
    assert colours in push[0] and "dir=back" in push[0] and "constraint" not in push[0]
    # The edges of a farm push to each other: one line, both ways, not ranking them.
    pair = lines_with(dot, "EDGE01 push EDGE02 (runs on the timers)")
    assert len(pair) == 1 and "dir=both" in pair[0] and "constraint=false" in pair[0]
    assert "EDGE02 push EDGE01 (runs on the timers)" in pair[0]


def test_all_links_adds_the_unscheduled_ones_dashed_and_grey():
    links = graph.allowed_links(LOCAL)
    dot = graph.to_dot(LOCAL, links, all_links=True)
    for lk in links:
        assert words(lk) in dot, lk
        line = lines_with(dot, words(lk))
        assert len(line) == 1
        grey = f'color="{graph.COLOURS["allowed"]}", style=dashed' in line[0]
        assert grey == (not lk["scheduled"]), line
        if not lk["scheduled"]:
            assert "constraint=false" in line[0]
    assert "allowed by the policy, not run" in dot and "not drawn" not in dot
    # Every drawn line carries only links of one kind.
    for line in lines_with(dot, " -> "):
        assert not ("runs on the timers" in line and "allowed, not scheduled" in line)


def test_a_hostile_name_is_one_escaped_string():
    fleet = [dict(h) for h in LOCAL]
    evil = "EDGE<01>&\"'x\\"
    fleet[3]["name"] = evil
    fleet[1]["trusted"] = ["MASTER01", "NODE02", evil, "EDGE02"]
    fleet[4]["provider"] = "<script>&"
    dot = graph.to_dot(fleet, graph.allowed_links(fleet), all_links=True)
    assert '"host:EDGE<01>&amp;\\"\'x\\\\" [label="EDGE<01>&amp;\\"\'x\\\\\\n' in dot
    assert "edge · <script>&amp;" in dot
    # Outside the quoted strings no name is left: each string is closed where it should be.
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', dot)
    assert "EDGE<01>" not in bare and "script" not in bare


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


def test_each_balancer_stands_in_its_farms_cluster_with_an_arrow_to_each_edge(local):
    fleet, balancers = local
    assert [(b["farm"], b["host"]) for b in balancers] == [("lon-a", "node01"), ("lon-b", "node02")]
    dot = graph.to_dot(fleet, graph.allowed_links(fleet), balancers)
    cluster = dot.split("subgraph cluster_farm_0 {")[1].split("\n  }")[0]
    assert '"balancer:lon-a" [label="HAProxy on NODE01 :80"' in cluster
    for edge in ("EDGE01", "EDGE02"):
        arrow = lines_with(cluster, f'"host:{edge}" -> "balancer:lon-a"')
        assert len(arrow) == 1 and "dir=back" in arrow[0]
        assert graph.COLOURS["http"] in arrow[0]
    assert dot.count('-> "balancer:') == 4
    assert "a farm's balancer to its edges" in dot
    assert "a farm's balancer to its edges" not in graph.to_dot(fleet, graph.allowed_links(fleet))


def test_a_balancer_on_one_address_says_it():
    b = farms.balancers(LOCAL_HOSTS, {"lon-b": {"host": "node02", "port": 81,
                                                "address": "10.0.0.5"}})  # fmt: skip
    assert graph.balancer_label(b[0], LOCAL_HOSTS) == "HAProxy on NODE02 10.0.0.5:81"
    b = farms.balancers(LOCAL_HOSTS, {"lon-b": {"host": "node02", "address": "::"}})
    assert graph.balancer_label(b[0], LOCAL_HOSTS) == "HAProxy on NODE02 :80"


# -- render(): Graphviz draws it --------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"


def drawn(svg: Path):
    """The SVG's texts, and its lines as (from, to) of the DOT file."""
    root = ET.parse(svg).getroot()
    texts = {t.text for t in root.iter(f"{SVG}text")}
    lines = {tuple(g.find(f"{SVG}title").text.split("->"))
             for g in root.iter(f"{SVG}g") if g.get("class") == "edge"}  # fmt: skip
    return texts, lines


@pytest.mark.parametrize("all_links", [False, True])
def test_graphviz_draws_every_host_balancer_and_link(tmp_path, local, all_links):
    fleet, balancers = local
    written = graph.render(fleet, tmp_path / "fleet.svg", balancers, all_links)
    assert written == [tmp_path / "fleet.dot", tmp_path / "fleet.svg", tmp_path / "fleet.png"]
    assert sorted(os.listdir(tmp_path)) == ["fleet.dot", "fleet.png", "fleet.svg"]
    assert written[2].read_bytes().startswith(b"\x89PNG")
    texts, lines = drawn(written[1])
    assert {h["name"] for h in fleet} <= texts
    assert {"HAProxy on NODE01 :80", "HAProxy on NODE02 :80"} <= texts
    links = [lk for lk in graph.allowed_links(fleet) if lk["scheduled"] or all_links]
    pairs = {frozenset((f"host:{lk['initiator']}", f"host:{lk['target']}")) for lk in links}
    policy = {frozenset(line) for line in lines if not line[1].startswith("balancer:")}
    assert policy == pairs
    assert sum(line[1].startswith("balancer:") for line in lines) == 4


def test_graphviz_draws_a_hostile_name_into_a_valid_svg(tmp_path):
    fleet = [dict(h) for h in LOCAL]
    evil = "EDGE<01>&x;\"'\\N"
    fleet[3]["name"] = evil
    fleet[1]["trusted"] = ["MASTER01", "NODE02", evil, "EDGE02"]
    written = graph.render(fleet, tmp_path / "fleet", all_links=True)
    texts, _lines = drawn(written[1])
    assert evil in texts


def test_graphviz_lays_out_sixteen_edges_in_four_farms(tmp_path):
    fleet = big_fleet(4, 4)
    texts, lines = drawn(graph.render(fleet, tmp_path / "fleet", all_links=True)[1])
    assert {h["name"] for h in fleet} <= texts
    assert {f"farm farm-{f}" for f in range(4)} <= texts


def test_without_graphviz_the_dot_file_is_written_and_the_error_names_graphviz(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(UsageError, match="Graphviz's dot is not on the PATH.*graphviz"):
        graph.render(LOCAL, tmp_path / "fleet")
    assert os.listdir(tmp_path) == ["fleet.dot"]
    assert (tmp_path / "fleet.dot").read_text().startswith("digraph edgesync {")


def test_a_failing_dot_leaves_the_dot_file_and_says_why(tmp_path, monkeypatch):
    program = tmp_path / "bin" / "dot"
    program.parent.mkdir()
    program.write_text('#!/bin/sh\necho "no layout for you" >&2\nexit 3\n')
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(program.parent))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UsageError, match="no layout for you"):
        graph.render(LOCAL, out / "fleet")
    assert os.listdir(out) == ["fleet.dot"]


# -- edgectl graph ---------------------------------------------------------------


def test_edgectl_graph_lists_the_files_it_wrote(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGESYNC_PROJECT", str(REPO))
    out = tmp_path / "fleet"
    assert cli.main(["graph", "-o", str(out), "--all-links", "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert files == [str(out) + suffix for suffix in (".dot", ".svg", ".png")]
    assert "allowed, not scheduled" in Path(files[0]).read_text()


def test_edgectl_graph_without_graphviz_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGESYNC_PROJECT", str(REPO))
    # Only the virtualenv's programs (ansible-inventory): no dot.
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert cli.main(["graph", "-o", str(tmp_path / "fleet"), "--json"]) == USAGE
    said = capsys.readouterr()
    assert said.out == "" and len(said.err.strip().splitlines()) == 1
    assert "graphviz" in said.err and "fleet.dot" in said.err
    assert os.listdir(tmp_path) == ["fleet.dot"]
