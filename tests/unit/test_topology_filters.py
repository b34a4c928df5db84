"""The Ansible topology filters: the inventory seen through the agent's policy."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "filter"))

from edgesync_topology import FilterModule

# The filters as playbooks see them.
FILTERS = FilterModule().filters()
edgesync_callers = FILTERS["edgesync_callers"]
edgesync_fleet = FILTERS["edgesync_fleet"]
edgesync_links = FILTERS["edgesync_links"]
edgesync_peers = FILTERS["edgesync_peers"]
edgesync_topology_errors = FILTERS["edgesync_topology_errors"]


def host(inv, name, role, farm=None, trusted=(), provider="lxd", groups=None, **extra):
    group = {"master": "masters", "node": "nodes", "edge": "edges"}.get(role, "ungrouped")
    return inv, {
        "edgesync_name": name, "edgesync_location": "LON", "edgesync_role": role,
        "edgesync_farm": farm, "edgesync_trusted": list(trusted), "edgesync_provider": provider,
        "group_names": groups if groups is not None else [group], **extra,
    }  # fmt: skip


GOOD = dict([
    host("master01", "MASTER01", "master"),
    host("node01", "NODE01", "node", trusted=["MASTER01", "EDGE01", "EDGE02"], provider="docker"),
    host("edge01", "EDGE01", "edge", farm="lon-a"),
    host("edge02", "EDGE02", "edge", farm="lon-a", provider="docker"),
    host("edge03", "EDGE03", "edge", farm="lon-b"),
])  # fmt: skip


# What the agent role writes into every config besides the topology.
SETTINGS = {"user": "edgesync", "data_dir": "/var/lib/edgesync",
            "redis_url": "redis://:pw@127.0.0.1:6379/0", "batch_size": 1000,
            "max_clock_skew_ms": 300000,
            "tables": {"pages": {"columns": ["title", "body"], "slug": ["title"]}}}  # fmt: skip


def fleet_of(hostvars):
    return edgesync_fleet(hostvars, list(hostvars))


def test_a_good_fleet_has_no_errors_and_links_in_topology_order():
    fleet = fleet_of(GOOD)
    assert edgesync_topology_errors(fleet, [], SETTINGS) == []
    links = [(lk["initiator"], lk["action"], lk["target"]) for lk in edgesync_links(fleet)]
    assert links == [
        ("EDGE01", "push", "EDGE02"), ("EDGE02", "push", "EDGE01"),
        ("NODE01", "pull", "EDGE01"), ("NODE01", "pull", "EDGE02"),
        ("NODE01", "push", "MASTER01"), ("NODE01", "pull", "MASTER01"),
        ("NODE01", "push", "EDGE01"), ("NODE01", "push", "EDGE02"),
    ]  # fmt: skip


def test_a_hosts_round_runs_what_it_pulls_before_what_it_pushes():
    rounds = {h["name"]: FILTERS["edgesync_round"](fleet_of(GOOD), h["name"])
              for h in fleet_of(GOOD)}  # fmt: skip
    assert rounds["MASTER01"] == []  # the master runs no timed links
    after = {lk["unit"]: lk["after"] for lk in rounds["NODE01"]}
    assert after == {
        "edgesync-pull-edge01": [],
        "edgesync-pull-edge02": [],
        "edgesync-push-master01": ["edgesync-pull-edge01", "edgesync-pull-edge02"],
        "edgesync-pull-master01": ["edgesync-pull-edge01", "edgesync-pull-edge02",
                                   "edgesync-push-master01"],
        "edgesync-push-edge01": ["edgesync-pull-edge01", "edgesync-pull-edge02",
                                 "edgesync-push-master01", "edgesync-pull-master01"],
        "edgesync-push-edge02": ["edgesync-pull-edge01", "edgesync-pull-edge02",
                                 "edgesync-push-master01", "edgesync-pull-master01"],
    }  # fmt: skip


def test_configs_mark_push_only_for_the_links_a_host_pushes_on():
    fleet = fleet_of(GOOD)
    config = FILTERS["edgesync_agent_config"]
    pushes = {name: sorted(p for p, spec in config(fleet, name, SETTINGS)["peers"].items()
                           if spec.get("push"))
              for name in ("MASTER01", "NODE01", "EDGE01", "EDGE03")}  # fmt: skip
    assert pushes == {"MASTER01": [], "NODE01": ["EDGE01", "EDGE02", "MASTER01"],
                      "EDGE01": ["EDGE02"], "EDGE03": []}  # fmt: skip


def test_every_violation_is_listed_at_once():
    bad = dict(GOOD)
    bad.update([
        host("edge09", "edge09", "edge", farm="lon-a"),          # bad name
        host("edge10", "EDGE01", "edge", farm="lon-a"),          # duplicate name
        host("edge11", "EDGE11", "edge"),                        # edge without a farm
        host("node02", "NODE02", "node", trusted=["NOBODY"]),    # unknown trusted name
        host("odd01", "ODD01", "boss"),                          # bad role
        host("edge12", "EDGE12", "edge", farm="x", provider="vm"),  # bad provider
        host("master02", "MASTER02", "master", groups=["edges"]),   # wrong group
        host("master03", "MASTER03", "master", farm="lon-a"),       # a farm on a master
        host("edge13", "EDGE13", "edge", farm="x", edgesync_provider_host="lon-host-1"),
        host("edge14", "EDGE14", "edge", farm="x", edgesync_provider_host="node02"),
        host("edge15", "EDGE15", "edge", farm="x", edgesync_provider_host="par-host-1"),
    ])  # fmt: skip
    errors = edgesync_topology_errors(fleet_of(bad), [], SETTINGS, [*bad, "par-host-1"])
    text = "\n".join(errors)
    for expected in [
        "host edge09: invalid config: node.name = 'edge09': must match [A-Z0-9]{1,16}",
        "host edge10: edgesync_name EDGE01 is also edge01's",
        "host edge11: invalid config: node.farm is missing (required for edges)",
        "host node02: trusted name NOBODY is not a host",
        "host odd01: invalid config: node.role = 'boss'",
        "host edge12: edgesync_provider 'vm'",
        "host master02: role master but not in group masters",
        "host master03: invalid config: node.farm = 'lon-a': only edges",
        "host edge13: edgesync_provider_host 'lon-host-1' is not in the inventory",
        "host edge14: edgesync_provider_host 'node02' is an edgesync host",
    ]:
        assert expected in text, (expected, errors)
    assert "edge15" not in text  # a provider host of the inventory


def test_a_link_that_breaks_the_rules_is_a_violation():
    errors = edgesync_topology_errors(
        fleet_of(GOOD),
        [{"initiator": "EDGE01", "action": "push", "target": "MASTER01"}],
        SETTINGS,
    )
    assert errors == [
        "link EDGE01 push MASTER01: edges push only to edges of their own farm; "
        "MASTER01 is a master, EDGE01 is in farm lon-a",
        "link EDGE01 push MASTER01: an edge pushes only to edges of its own farm; "
        "MASTER01 is a master, EDGE01 is in farm lon-a",
    ]


def test_authorized_callers_follow_the_policy():
    fleet = fleet_of(GOOD)
    # A node lets in masters and its trusted list only.
    assert edgesync_callers(fleet, "NODE01") == ["EDGE01", "EDGE02", "MASTER01"]
    # An edge lets in masters, nodes and edges (edges only pull from other farms).
    assert edgesync_callers(fleet, "EDGE03") == ["EDGE01", "EDGE02", "MASTER01", "NODE01"]
    peers = {p["name"] for p in edgesync_peers(fleet, "EDGE01")}
    assert peers == {"MASTER01", "NODE01", "EDGE02", "EDGE03"}


def test_a_rolling_update_never_takes_a_whole_farm_and_says_which_farm_cannot_stay_up():
    fleet = edgesync_fleet(GOOD, list(GOOD))
    plan = FILTERS["edgesync_update_plan"](fleet)
    # Batch one: the first edge of each farm; batch two: the rest of lon-a.
    assert plan == {"order": ["edge01", "edge03", "edge02"], "batches": [2, 1],
                    "lone": [{"farm": "lon-b", "host": "edge03"}]}  # fmt: skip
    five = [host(f"e{i}", f"EDGE{i:02d}", "edge", farm="f") for i in range(1, 6)]
    big = dict([host("master01", "MASTER01", "master"), *five])
    fleet = edgesync_fleet(big, list(big))
    assert FILTERS["edgesync_update_plan"](fleet, 3)["batches"] == [3, 2]
    assert FILTERS["edgesync_update_plan"](fleet, 9)["batches"] == [4, 1]  # never all five
    assert FILTERS["edgesync_update_plan"](fleet)["batches"] == [1, 1, 1, 1, 1]


def test_each_host_is_drained_and_checked_through_the_link_to_its_master():
    fleet = edgesync_fleet(GOOD, list(GOOD))
    upstream = FILTERS["edgesync_upstream"]
    assert upstream(fleet, "EDGE01")["label"] == "NODE01 pull EDGE01"
    assert upstream(fleet, "EDGE02")["initiator_host"] == "node01"
    assert upstream(fleet, "NODE01")["label"] == "NODE01 push MASTER01"
    assert upstream(fleet, "MASTER01")["label"] == "NODE01 push MASTER01"
    assert upstream(fleet, "EDGE03") is None  # no node trusts it


def test_each_role_gets_its_quota_and_a_bad_one_is_refused_naming_the_host():
    fleet = fleet_of(GOOD)
    config = FILTERS["edgesync_agent_config"]
    settings = {**SETTINGS, "quota_by_role": {"node": {"changes": "500", "bytes": 0,
                                                       "interval_s": 60}}}  # fmt: skip
    node = config(fleet, "NODE01", settings)["node"]
    assert (node["quota_changes"], node["quota_bytes"], node["quota_interval_s"]) == (500, 0, 60)
    assert "quota_changes" not in config(fleet, "EDGE01", settings)["node"]
    # No limit: no keys, so the previous release still reads the config.
    none = {**SETTINGS, "quota_by_role": {"node": {"changes": 0, "bytes": 0, "interval_s": 60}}}
    assert not any(k.startswith("quota") for k in config(fleet, "NODE01", none)["node"])
    bad = {**SETTINGS, "quota_by_role": {"edge": {"changes": -1, "bytes": 0, "interval_s": 60}}}
    errors = edgesync_topology_errors(fleet, [], bad, list(GOOD))
    assert any(e.startswith("host edge01: invalid config: node.quota_changes = -1") for e in errors)


TWO_MASTERS = dict([
    host("master01", "MASTER01", "master"),
    host("master02", "MASTER02", "master", provider="docker"),
    host("node01", "NODE01", "node", trusted=["MASTER01", "MASTER02", "EDGE01"]),
    host("edge01", "EDGE01", "edge", farm="lon-a"),
])  # fmt: skip


def test_two_masters_exchange_changes_in_their_own_stage_and_every_node_reaches_both():
    fleet = fleet_of(TWO_MASTERS)
    assert edgesync_topology_errors(fleet, [], SETTINGS) == []
    links = [(lk["stage"], lk["initiator"], lk["action"], lk["target"])
             for lk in edgesync_links(fleet)]  # fmt: skip
    assert links == [
        ("nodes-pull-edges", "NODE01", "pull", "EDGE01"),
        ("nodes-push-masters", "NODE01", "push", "MASTER01"),
        ("nodes-push-masters", "NODE01", "push", "MASTER02"),
        ("masters-pull-masters", "MASTER01", "pull", "MASTER02"),
        ("masters-pull-masters", "MASTER02", "pull", "MASTER01"),
        ("masters-push-masters", "MASTER01", "push", "MASTER02"),
        ("masters-push-masters", "MASTER02", "push", "MASTER01"),
        ("nodes-pull-masters", "NODE01", "pull", "MASTER01"),
        ("nodes-pull-masters", "NODE01", "pull", "MASTER02"),
        ("nodes-push-edges", "NODE01", "push", "EDGE01"),
    ]  # fmt: skip
    rounds = FILTERS["edgesync_round"](fleet, "MASTER01")
    assert {lk["unit"]: lk["after"] for lk in rounds} == {
        "edgesync-pull-master02": [],
        "edgesync-push-master02": ["edgesync-pull-master02"],
    }
    config = FILTERS["edgesync_agent_config"](fleet, "MASTER01", SETTINGS)
    assert config["peers"]["MASTER02"].get("push")


def test_a_node_that_does_not_sync_with_every_master_is_refused_naming_it():
    bad = dict(TWO_MASTERS)
    bad.update([host("node01", "NODE01", "node", trusted=["MASTER01", "EDGE01"])])
    assert edgesync_topology_errors(fleet_of(bad), [], SETTINGS) == [
        "host node01: a node must sync with every master (MASTER01, MASTER02); "
        "NODE01's trusted list lacks MASTER02"
    ]
