"""site.yml turns inventory/local into a syncing fleet on real LXD and Docker.

The tests run in order, as an operator would: tear down, build from nothing,
run again (nothing changes), write and sync, get refused, let the timers work,
take a host off a trusted list, take a host out of the inventory (its key with it).
"""

from __future__ import annotations

import calendar
import json
import subprocess
import time

import pytest
from conftest import TRUST_TAGS, container, report
from runner_events import failures

EDGES = ["edge01", "edge02", "edge03", "edge04"]


def test_site_builds_every_host(built, fleet):
    stats = built.stats
    assert not stats["failures"] and not stats["dark"]
    assert set(fleet.hosts) <= set(stats["ok"])
    for host, hv in fleet.hosts.items():
        status = fleet.agent_json(host, "status", "--json")
        assert status["node"] == hv["edgesync_name"]
        assert status["redis"] == "ok"
        # each container is named after its host, not after the image's build machine
        assert fleet.run(host, "hostname").stdout.strip() == host


def test_sshd_takes_keys_only_and_forwards_nothing_for_anyone(built, fleet):
    for host in fleet.hosts:
        settings = set(fleet.run(host, "/usr/sbin/sshd", "-T").stdout.splitlines())
        for line in ("passwordauthentication no", "kbdinteractiveauthentication no",
                     "allowtcpforwarding no", "allowstreamlocalforwarding no",
                     "allowagentforwarding no", "x11forwarding no", "permittunnel no",
                     "permituserenvironment no"):  # fmt: skip
            assert line in settings, (host, line)


# The timers role's default schedule: a round every 30 minutes.
ROUND_EVERY = 30 * 60


def round_slots(fleet) -> dict[str, int]:
    """Each host's slot in the schedule: seconds after the start of a period at
    which its round timer fires (its fixed random delay; hosts without timed
    links have none). The same whether or not a round fired in between."""
    out = {}
    for host in fleet.hosts:
        res = fleet.run(host, "systemctl", "show", "edgesync-round.timer",
                        "-p", "NextElapseUSecRealtime", "-p", "LoadState")  # fmt: skip
        if "LoadState=loaded" in res.stdout:
            when = res.stdout.split("NextElapseUSecRealtime=")[1].split("\n")[0]  # ... UTC
            utc = calendar.timegm(time.strptime(when, "%a %Y-%m-%d %H:%M:%S %Z"))
            out[host] = utc % ROUND_EVERY
    return out


def test_a_second_run_changes_nothing(built, fleet, say):
    before = round_slots(fleet)
    # Every host has timed links: the masters with each other too.
    assert set(before) == set(fleet.hosts), before
    again = fleet.playbook("site.yml")
    report(say, "site.yml again (no changes)", again)
    assert again.rc == 0, failures(again)
    changed = {h: n for h, n in again.stats["changed"].items() if n}
    assert changed == {}, f"changed on a second run: {changed}"
    # Nothing reloaded or re-rolled: each host keeps its slot in the schedule.
    assert round_slots(fleet) == before


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
            for master in fleet.masters:
                assert fleet.agent_json(master, "get", "pages", rid)["id"] == rid
    info = fleet.module("all", "edgesync_info")
    assert info.rc == 0, failures(info)
    digests = {
        ev["event_data"]["host"]: ev["event_data"]["res"]["digest"]
        for ev in info.events
        if ev.get("event") == "runner_on_ok"
    }
    assert set(digests) == set(fleet.hosts)
    assert len(set(digests.values())) == 1, digests


def test_an_edge_pushing_to_the_master_is_refused(built, fleet):
    # The master's rows are compared: no scheduled round may bring it any.
    with fleet.rounds_paused():
        before = fleet.agent_json("master01", "status", "--json")["rows"]
        fleet.agent("edge01", "put", "pages", "--data", '{"title": "not for the master directly"}')
        run = fleet.module("edge01", "edgesync_push", "peer=MASTER01")
        msgs = failures(run)
        assert run.rc != 0
        assert len(msgs) == 1 and "edge01" in msgs[0] and "refused:" in msgs[0], msgs
        assert fleet.agent_json("master01", "status", "--json")["rows"] == before


def test_check_mode_reports_and_sends_nothing(built, fleet):
    # No scheduled round may carry the write to node02 between the two pulls.
    with fleet.rounds_paused():
        made = fleet.agent_json("edge03", "put", "pages", "--data", '{"title": "dry"}')["id"]
        run = fleet.module("node02", "edgesync_pull", "peer=EDGE03", cmdline="--check")
        assert run.rc == 0, failures(run)
        res = next(e["event_data"]["res"] for e in run.events if e.get("event") == "runner_on_ok")
        assert res["would_receive"] >= 1 and res["changed"]
        assert made not in fleet.ids("node02")
        assert fleet.agent_json("node02", "pull", "EDGE03", "--json")["applied"] >= 1
        assert made in fleet.ids("node02")


# A short schedule for the freshness test: a round every INTERVAL s, each host
# at its own fixed delay within DELAY s.
INTERVAL, DELAY = 20, 5


def test_the_timers_alone_carry_a_write_to_the_master_within_one_interval(built, fleet, say):
    fast = fleet.playbook(
        "site.yml", tags="timers",
        extravars={"timers_on_calendar": f"*:*:0/{INTERVAL}",
                   "timers_randomized_delay_sec": DELAY},
    )  # fmt: skip
    assert fast.rc == 0, failures(fast)
    took = []
    for attempt in range(3):
        rid = fleet.agent_json(
            "edge02", "put", "pages", "--data", f'{{"title": "timed {attempt}"}}'
        )["id"]
        written = time.monotonic()
        while time.monotonic() < written + 180:
            if fleet.agent("master01", "get", "pages", rid, check=False).returncode == 0:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the write did not reach the master by the timers within 180 s")
        took.append(time.monotonic() - written)
        time.sleep(INTERVAL / 3)  # the next write lands elsewhere in the cycle
    say(
        f"edge02 -> master01 by the timers alone (a round every {INTERVAL} s, delay up to "
        f"{DELAY} s): " + ", ".join(f"{t:.1f} s" for t in took)
    )
    # What makes it one round, not two: on node01 systemd runs the push to the
    # master after the pulls from the edges, in the one round its timer starts.
    after = fleet.run("node01", "systemctl", "show", "edgesync-push-master01.service",
                      "-p", "After").stdout  # fmt: skip
    assert "edgesync-pull-edge01.service" in after and "edgesync-pull-edge02.service" in after
    wants = fleet.run("node01", "systemctl", "show", "edgesync-round.service", "-p", "Wants").stdout
    assert "edgesync-push-master01.service" in wants and "edgesync-pull-edge02.service" in wants
    back = fleet.playbook("site.yml", tags="timers")
    assert back.rc == 0, failures(back)


def container_id(host: str) -> str:
    return subprocess.run(["docker", "inspect", "-f", "{{.Id}}", container(host)],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


def test_a_host_removed_from_a_trusted_list_can_no_longer_connect(built, fleet, tmp_path):
    assert fleet.agent_json("edge02", "pull", "NODE01", "--json")["peer"] == "NODE01"
    # node01 is a Docker container: its changed trusted list must not remake it
    # (that would destroy its database and its signing key).
    node01, changes = container_id("node01"), fleet.agent_json("node01", "status", "--json")
    inventory = fleet.edited_inventory(tmp_path, untrust=("node01", "EDGE02"))
    try:
        run = fleet.playbook("site.yml", inventory=inventory, tags=TRUST_TAGS)
        assert run.rc == 0, failures(run)
        res = fleet.agent("edge02", "pull", "NODE01", check=False)
        assert res.returncode == 3 and res.stderr.startswith("refused:"), res.stderr
    finally:
        restore = fleet.playbook("site.yml", tags=TRUST_TAGS)
        assert restore.rc == 0, failures(restore)
    assert fleet.agent_json("edge02", "pull", "NODE01", "--json")["peer"] == "NODE01"
    assert container_id("node01") == node01
    after = fleet.agent_json("node01", "status", "--json")
    assert after["origin"] == changes["origin"] and after["changes"] >= changes["changes"]


def test_every_host_lists_the_fleets_signing_keys(built, fleet):
    """site.yml gave every host the public key each agent made at init."""
    own = {}
    for host in fleet.hosts:
        name, key = fleet.agent(host, "pubkey").stdout.split()
        own[name] = key
    assert len(own) == len(fleet.hosts)
    for host in fleet.hosts:
        listed = fleet.run(host, "cat", f"{fleet.facts['edgesync_data_dir']}/fleet_keys").stdout
        keys = dict(line.split() for line in listed.splitlines() if not line.startswith("#"))
        assert keys == own, host


# Run on a host as root by the agent's Python: hand FRAMES (a push from CALLER
# of the given change bodies) to `serve --stdio`, as a relay would send them.
_PUSH_AS = """
import json, subprocess, sys, time
caller, bodies = sys.argv[1], json.loads(sys.argv[2])
def frame(obj):
    data = json.dumps(obj).encode()
    return len(data).to_bytes(4, "big") + data
hello = {"t": "hello", "v": 2, "node": caller, "action": "push",
         "clock": int(time.time() * 1000), "yours": {}}
batch = {"t": "batch", "last": 1, "changes": [json.loads(b) for b in bodies]}
res = subprocess.run(["runuser", "-u", sys.argv[3], "--", sys.argv[4], "--config", sys.argv[5],
                      "serve", "--stdio", "--peer", caller],
                     input=frame(hello) + frame(batch) + frame({"t": "done"}), capture_output=True)
print(json.dumps({"rc": res.returncode, "stderr": res.stderr.decode()}))
"""


def push_as(fleet, host: str, caller: str, bodies: list[str]) -> dict:
    facts = fleet.facts
    res = fleet.run(host, fleet.python, "-c", _PUSH_AS, caller, json.dumps(bodies),
                    facts["edgesync_user"], facts["edgesync_agent"],
                    facts["edgesync_config_path"])  # fmt: skip
    return json.loads(res.stdout)


def last_own_body(fleet, host: str, origin: str) -> str:
    query = (
        "import sqlite3; print(sqlite3.connect('"
        + fleet.facts["edgesync_data_dir"]
        + "/edgesync.db')"
        f".execute(\"SELECT body FROM _changes WHERE origin = '{origin}' ORDER BY seq DESC"
        ' LIMIT 1").fetchone()[0])'
    )
    return fleet.run(host, fleet.python, "-c", query).stdout.strip()


def test_a_host_removed_from_the_inventory_has_its_later_changes_refused(built, fleet, tmp_path):
    # Before: a change made on edge02, relayed by node01, is accepted by the master.
    kept = fleet.agent_json("edge02", "put", "pages", "--data", '{"title": "edge02 before"}')
    before = push_as(fleet, "master01", "NODE01", [last_own_body(fleet, "edge02", "EDGE02")])
    assert before["rc"] == 0, before
    inventory = fleet.edited_inventory(tmp_path, drop="edge02", untrust=("node01", "EDGE02"))
    try:
        run = fleet.playbook("site.yml", inventory=inventory, tags=TRUST_TAGS)
        assert run.rc == 0, failures(run)
        for host in fleet.hosts:
            if host != "edge02":
                keys = fleet.run(
                    host, "cat", f"{fleet.facts['edgesync_data_dir']}/fleet_keys"
                ).stdout
                assert "EDGE02 " not in keys, host
        # After: edge02's next change, relayed the same way, is refused and counted.
        fleet.agent("edge02", "put", "pages", "--data", '{"title": "edge02 after"}')
        after = push_as(fleet, "master01", "NODE01", [last_own_body(fleet, "edge02", "EDGE02")])
        assert after["rc"] == 3, after
        assert "refused:" in after["stderr"] and "EDGE02" in after["stderr"], after
        assert "no known public key" in after["stderr"], after
        refusals = fleet.agent_json("master01", "status", "--json")["refusals"]
        assert "EDGE02" in refusals["last"][0]["rule"]
        # What edge02 wrote before stays.
        assert fleet.agent_json("master01", "get", "pages", kept["id"])["title"] == "edge02 before"
    finally:
        restore = fleet.playbook("site.yml", tags=TRUST_TAGS)
        assert restore.rc == 0, failures(restore)
