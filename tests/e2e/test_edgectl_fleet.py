"""edgectl, the operator's tool, on the shared fleet: status, verify, sync and
graph as an operator runs them (the console script, through ansible-runner),
with their exit codes, JSON and progress."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import container

EDGECTL = str(Path(sys.executable).parent / "edgectl")
DB = "/var/lib/edgesync/edgesync.db"


def edgectl(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([EDGECTL, *args], capture_output=True, text=True, timeout=timeout)


def test_sync_shows_progress_and_a_summary(built, fleet):
    res = edgectl("sync")
    assert res.returncode == 0, res.stdout + res.stderr
    # one line per finished task on stderr (no terminal here), then the summary
    assert "Nodes pull from their edges  [ok 2" in res.stderr, res.stderr
    assert "sync.yml: successful" in res.stdout
    for host in fleet.hosts:
        assert host in res.stdout


def test_sync_json_is_json_only(built, fleet):
    res = edgectl("sync", "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] and report["run"] == "sync.yml"
    assert set(report["hosts"]) == set(fleet.hosts)


def test_sync_with_a_master_out_of_reach_names_it_and_goes_on_through_the_other(built, fleet):
    """master01's sshd stopped: the links to it (the nodes' and master02's)
    fail and are named as warnings, the round goes on through master02 and
    is not failed (exit 0); a write on an edge reaches master02 in it. With
    master01 back, the next round is whole and brings it there too."""
    assert len(fleet.masters) == 2, fleet.masters
    made = fleet.agent_json("edge01", "put", "pages", "--data", '{"title": "one master out"}')
    fleet.run("master01", "systemctl", "stop", "ssh")
    try:
        res = edgectl("sync", "--json")
    finally:
        fleet.run("master01", "systemctl", "start", "ssh")
    report = json.loads(res.stdout)
    assert res.returncode == 0, res.stdout
    assert report["failures"] == [], report["failures"]
    named = {line.split(":")[0]: line for line in report["warnings"]
             if ": Name the masters this host could not sync with: " in line}  # fmt: skip
    assert sorted(named) == ["master02", "node01", "node02"], report["warnings"]
    for host in ("node01", "node02"):
        assert "push MASTER01: " in named[host] and "pull MASTER01: " in named[host], named
    assert "pull MASTER01: " in named["master02"] and "push MASTER01: " in named["master02"]
    assert fleet.agent_json("master02", "get", "pages", made["id"])["id"] == made["id"]
    again = edgectl("sync", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["warnings"] == [], again.stdout
    assert fleet.agent_json("master01", "get", "pages", made["id"])["id"] == made["id"]


def test_sync_with_every_master_out_of_reach_fails_the_nodes_and_runs_the_rest(built, fleet):
    """Both masters' sshd stopped: each node reached no master, so it fails
    the round (exit 1); the edges' part of the round still runs."""
    for master in fleet.masters:
        fleet.run(master, "systemctl", "stop", "ssh")
    try:
        res = edgectl("sync", "--json")
    finally:
        for master in fleet.masters:
            fleet.run(master, "systemctl", "start", "ssh")
    report = json.loads(res.stdout)
    assert res.returncode == 1, res.stdout
    failed = sorted(line.split(":")[0] for line in report["failures"])
    assert failed == ["node01", "node02"], report["failures"]
    for host in ("edge01", "edge02", "edge03", "edge04"):
        assert report["hosts"][host]["failed"] == 0, report["hosts"]


def test_status_is_one_table_with_every_host(built, fleet, say):
    res = edgectl("status", "--json")
    report = json.loads(res.stdout)
    rows = {r["host"]: r for r in report["hosts"]}
    assert set(rows) == set(fleet.hosts)
    versions = {r.get("version") for r in rows.values()}
    assert len(versions) == 1 and None not in versions, versions
    # every host's API up and ready, read on the host itself
    assert all(r["api"]["up"] and r["api"]["ready"] for r in rows.values()), rows
    # exit 1 exactly when some host needs attention, each reason on a line
    assert res.returncode == (1 if report["attention"] else 0), res.stderr
    assert report["attention"] == [f"{r['host']}: {w}" for r in report["hosts"]
                                   for w in r["attention"]]  # fmt: skip
    # each farm's balancer, as its HAProxy sees the farm's edges: all UP
    balancers = {b["farm"]: b for b in report["balancers"]}
    assert set(balancers) == {b["farm"] for b in fleet.balancers()}
    for farm in fleet.balancers():
        assert balancers[farm["farm"]]["backends"] == dict.fromkeys(farm["edges"], "UP"), farm
    table = edgectl("status")
    assert "edgesync fleet:" in table.stdout and "last sync" in table.stdout
    assert f"balancers: {len(balancers)} of {len(balancers)} farms fine" in table.stdout
    say(f"edgectl status ({report['seconds']} s):\n{table.stdout}")


def test_status_marks_a_host_that_does_not_answer(built, fleet):
    """edge04's Redis stopped, edge03 drained and edge02's API stopped: their
    rows say so and the command exits 1."""
    data_dir, api = fleet.facts["edgesync_data_dir"], fleet.facts["edgesync_http_service"]
    fleet.run("edge04", "systemctl", "stop", "redis-server")
    fleet.run("edge03", "touch", f"{data_dir}/draining")
    fleet.run("edge02", "systemctl", "stop", api)
    try:
        res = edgectl("status", "--json")
    finally:
        fleet.run("edge04", "systemctl", "start", "redis-server")
        fleet.run("edge03", "rm", f"{data_dir}/draining")
        fleet.run("edge02", "systemctl", "start", api)
    report = json.loads(res.stdout)
    assert res.returncode == 1
    row = next(r for r in report["hosts"] if r["host"] == "edge04")
    assert row["attention"], row
    assert any(line.startswith("edge04: ") for line in report["attention"])
    assert "edge03: API not ready: /readyz answers 503: not ready: draining" in report["attention"]
    down = [line for line in report["attention"] if line.startswith("edge02: API down: ")]
    assert down and "no answer on 127.0.0.1:" in down[0], report["attention"]


def test_a_host_whose_key_changed_is_refused(built, fleet, tmp_path):
    """The controller pins each host's key: a host answering with another key
    (a container replaced, or someone in between) is not talked to."""
    pinned = Path(fleet.admin_dir) / "known_hosts.d" / container("edge02")
    good = pinned.read_text()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)  # fmt: skip
    other = (tmp_path / "k.pub").read_text().split()[:2]
    pinned.write_text(f"{container('edge02')} {' '.join(other)}\n")
    # SSH connections kept from earlier runs would not check the key again.
    for sock in (Path.home() / ".ansible" / "cp").glob("*"):
        sock.unlink()
    try:
        res = edgectl("status", "--json", "--limit", "edge02")
    finally:
        pinned.write_text(good)
    report = json.loads(res.stdout)
    assert res.returncode == 1
    (line,) = report["attention"]
    assert line.startswith("edge02: ") and "Host key verification failed" in line, line


def test_the_administration_key_works_only_from_the_provider_host(built, fleet):
    """The controller's key, stolen onto an edge, does not open another host."""
    admin = Path(fleet.admin_dir)
    conf = (admin / "hosts.d" / f"{container('edge02')}.conf").read_text()
    address = conf.split("HostName ", 1)[1].split()[0]
    fleet.run("edge01", "sh", "-c", "umask 077; cat > /root/stolen",
              input=(admin / "id_ed25519").read_text())  # fmt: skip
    try:
        res = fleet.run("edge01", "ssh", "-i", "/root/stolen", "-o", "BatchMode=yes",
                        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        f"root@{address}", "true", check=False)  # fmt: skip
    finally:
        fleet.run("edge01", "rm", "-f", "/root/stolen")
    assert res.returncode == 255 and "Permission denied" in res.stderr, res.stderr


def test_verify_agrees_then_narrows_a_difference_down_to_records(built, fleet, say):
    fleet.converge(set())
    agree = edgectl("verify", "--json")
    assert agree.returncode == 0, agree.stdout + agree.stderr
    assert json.loads(agree.stdout)["agree"] is True

    # A database restored from an old copy, as it were: one record changed and
    # one gone on edge04 behind the agent's back.
    changed, gone = fleet.run("edge04", "sqlite3", DB,
                              "SELECT id FROM pages WHERE _deleted = 0 ORDER BY id LIMIT 2"
                              ).stdout.split()  # fmt: skip
    before = fleet.run("edge04", "sqlite3", "-json", DB,
                       f"SELECT body, _deleted FROM pages WHERE id IN ('{changed}', '{gone}')"
                       f" ORDER BY id").stdout  # fmt: skip
    fleet.run("edge04", "sqlite3", DB,
              f"UPDATE pages SET body = 'tampered' WHERE id = '{changed}';"
              f"UPDATE pages SET _deleted = 1 WHERE id = '{gone}'")  # fmt: skip
    try:
        res = edgectl("verify", "--json")
        text = edgectl("verify").stdout
    finally:
        old = json.loads(before)
        undo = (
            f"UPDATE pages SET body = {_sql(old[0]['body'])} WHERE id = '{changed}';"
            f"UPDATE pages SET _deleted = {old[1]['_deleted']} WHERE id = '{gone}'"
        )
        fleet.run("edge04", "sqlite3", DB, undo)
    report = json.loads(res.stdout)
    assert res.returncode == 1
    assert report["agree"] is False
    assert report["groups"][-1] == ["EDGE04"], report["groups"]
    found = {r["id"]: r["hosts"] for r in report["records"]}
    assert set(found) == {changed, gone}, found
    assert found[gone]["EDGE04"] is None and found[gone]["MASTER01"]
    assert found[changed]["EDGE04"] != found[changed]["MASTER01"]
    rows = report["tables"]["pages"]["rows"]["MASTER01"]
    assert report["queries"] < 20, report["queries"]
    say(f"edgectl verify: {rows} rows, 2 records narrowed down in {report['queries']} "
        f"questions, prefix length {report['levels']}:\n{text}")  # fmt: skip
    assert "EDGE04" in text and changed in text
    assert edgectl("verify").returncode == 0


def _sql(value) -> str:
    return "NULL" if value is None else "'" + str(value).replace("'", "''") + "'"


def test_graph_draws_the_fleet(built, fleet, tmp_path):
    res = edgectl("graph", "-o", str(tmp_path / "fleet"))
    assert res.returncode == 0, res.stderr
    svg = ET.parse(tmp_path / "fleet.svg").getroot()
    text = " ".join(t.text or "" for t in svg.iter() if t.tag.endswith("text"))
    for hv in fleet.hosts.values():
        assert hv["edgesync_name"] in text
    assert (tmp_path / "fleet.dot").read_text().startswith("digraph")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["status", "-i", "/nonexistent/inv"], "inventory /nonexistent/inv does not exist"),
        (["status", "--limit", "nosuchhost"], "--limit 'nosuchhost' selects no host"),
        (["up", "-e", "novalue"], "-e 'novalue': expected KEY=VALUE"),
        (["frobnicate"], "No such command"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(args, says):
    res = edgectl(*args, timeout=120)
    assert res.returncode == 2, (args, res.stdout, res.stderr)
    assert says in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
