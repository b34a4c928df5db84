"""site.yml turns inventory/local into a syncing fleet on real LXD and Docker.

The tests run in order, as an operator would: tear down, build from nothing,
run again (nothing changes), write and sync, get refused, let the timers work,
take a host off a trusted list.
"""

from __future__ import annotations

import shutil
import time

import pytest
import yaml
from runner_events import failures, host_seconds

EDGES = ["edge01", "edge02", "edge03", "edge04"]


def report(say, label, runner):
    """Print a playbook's wall time (reruns included) and each host's seconds in tasks."""
    lines = [f"{label}: {runner.wall_seconds:.0f} s wall, status {runner.status}"]
    lines += [f"  {h:9s} {s:6.1f} s in tasks" for h, s in host_seconds(runner).items()]
    say("\n".join(lines))


@pytest.fixture(scope="module")
def built(fleet, say):
    teardown = fleet.playbook("teardown.yml")
    assert teardown.rc == 0, failures(teardown)
    first = fleet.playbook("site.yml")
    report(say, "site.yml from nothing", first)
    assert first.rc == 0, failures(first)
    return first


def test_site_builds_every_host(built, fleet):
    stats = built.stats
    assert not stats["failures"] and not stats["dark"]
    assert set(fleet.hosts) <= set(stats["ok"])
    for host, hv in fleet.hosts.items():
        status = fleet.agent_json(host, "status", "--json")
        assert status["node"] == hv["edgesync_name"]
        assert status["redis"] == "ok"


def test_sshd_takes_keys_only_and_forwards_nothing_for_anyone(built, fleet):
    for host in fleet.hosts:
        settings = set(fleet.run(host, "/usr/sbin/sshd", "-T").stdout.splitlines())
        for line in ("passwordauthentication no", "kbdinteractiveauthentication no",
                     "allowtcpforwarding no", "allowstreamlocalforwarding no",
                     "allowagentforwarding no", "x11forwarding no", "permittunnel no",
                     "permituserenvironment no"):  # fmt: skip
            assert line in settings, (host, line)


def test_a_second_run_changes_nothing(built, fleet, say):
    second = fleet.playbook("site.yml")
    report(say, "site.yml again (no changes)", second)
    assert second.rc == 0, failures(second)
    changed = {h: n for h, n in second.stats["changed"].items() if n}
    assert changed == {}, f"changed on a second run: {changed}"


def test_writes_on_every_edge_reach_the_master_and_all_agree(built, fleet):
    made = {}
    for edge in EDGES:
        made[edge] = [
            fleet.agent_json(edge, "put", "pages", "--data", f'{{"title": "{edge} page {i}"}}')[
                "id"
            ]
            for i in range(3)
        ]
    sync = fleet.playbook("sync.yml")
    assert sync.rc == 0, failures(sync)
    for ids in made.values():
        for rid in ids:
            assert fleet.agent_json("master01", "get", "pages", rid)["id"] == rid
    info = fleet.module_ok("all", "edgesync_info")
    assert info.rc == 0, failures(info)
    digests = {
        ev["event_data"]["host"]: ev["event_data"]["res"]["digest"]
        for ev in info.events
        if ev.get("event") == "runner_on_ok"
    }
    assert set(digests) == set(fleet.hosts)
    assert len(set(digests.values())) == 1, digests


def test_an_edge_pushing_to_the_master_is_refused(built, fleet):
    before = fleet.agent_json("master01", "status", "--json")["rows"]
    fleet.agent("edge01", "put", "pages", "--data", '{"title": "not for the master directly"}')
    run = fleet.module("edge01", "edgesync_push", "peer=MASTER01")
    msgs = failures(run)
    assert run.rc != 0
    assert len(msgs) == 1 and "edge01" in msgs[0] and "refused:" in msgs[0], msgs
    assert fleet.agent_json("master01", "status", "--json")["rows"] == before


def test_check_mode_reports_and_sends_nothing(built, fleet):
    fleet.agent("edge03", "put", "pages", "--data", '{"title": "dry"}')
    run = fleet.module_ok("node02", "edgesync_pull", "peer=EDGE03", cmdline="--check")
    assert run.rc == 0, failures(run)
    res = next(e["event_data"]["res"] for e in run.events if e.get("event") == "runner_on_ok")
    assert res["would_receive"] >= 1 and res["changed"]
    assert fleet.agent_json("node02", "pull", "EDGE03", "--json")["applied"] >= 1


def test_the_timers_alone_carry_a_write_to_the_master(built, fleet, say):
    fast = fleet.playbook(
        "site.yml", tags="timers",
        extravars={"timers_on_calendar": "*:*:0/5", "timers_randomized_delay_sec": 1},
    )  # fmt: skip
    assert fast.rc == 0, failures(fast)
    rid = fleet.agent_json("edge02", "put", "pages", "--data", '{"title": "by timer"}')["id"]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if fleet.agent("master01", "get", "pages", rid, check=False).returncode == 0:
            break
        time.sleep(3)
    else:
        pytest.fail("the write did not reach the master by the timers within 180 s")
    took = 180 - (deadline - time.monotonic())
    say(f"write on edge02 reached master01 by the timers alone in {took:.0f} s")
    back = fleet.playbook("site.yml", tags="timers")
    assert back.rc == 0, failures(back)


def test_a_host_removed_from_a_trusted_list_can_no_longer_connect(built, fleet, tmp_path):
    assert fleet.agent_json("edge02", "pull", "NODE01", "--json")["peer"] == "NODE01"
    inventory = tmp_path / "inventory"
    shutil.copytree(fleet.inventory, inventory)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    node01 = hosts["all"]["children"]["nodes"]["hosts"]["node01"]
    node01["edgesync_trusted"] = [t for t in node01["edgesync_trusted"] if t != "EDGE02"]
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    try:
        run = fleet.playbook("site.yml", inventory=inventory)
        assert run.rc == 0, failures(run)
        res = fleet.agent("edge02", "pull", "NODE01", check=False)
        assert res.returncode == 3 and res.stderr.startswith("refused:"), res.stderr
    finally:
        restore = fleet.playbook("site.yml")
        assert restore.rc == 0, failures(restore)
    assert fleet.agent_json("edge02", "pull", "NODE01", "--json")["peer"] == "NODE01"
