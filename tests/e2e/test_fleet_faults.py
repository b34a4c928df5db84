"""The chaos table: faults on the real fleet (LXD and Docker) while writers run
on every edge, each followed by recovery and sync rounds in topology order.

For each fault: every write acknowledged on an edge is on the master and, as
all digests are equal, on every host; the rounds after recovery are refused
nowhere. One row per fault: writes made, writes present, time to converge.
Runs after test_fleet.py, on the same fleet.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from conftest import PROJECT, container
from update_cycle import FarmUsers

from edgectl import users

EDGES = ["edge01", "edge02", "edge03", "edge04"]
EDGECTL = str(Path(sys.executable).parent / "edgectl")
RATE = 10  # writes per second on every edge
FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

# Runs on an edge as the agent's user, with the agent's Python: a write every
# 1/RATE s until told to stop; each acknowledged ID is appended to a file.
WRITER = textwrap.dedent("""
    import os, sys, time
    from edgesync.agent import open_store
    base, rate, config = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    store, n, failed = open_store(config, warn=lambda m: None), 0, 0
    with open(base + ".acked", "a") as acked:
        while not os.path.exists(base + ".stop"):
            began = time.monotonic()
            try:
                rid = store.put("pages", {"title": f"{base} {n}"})["id"]
            except Exception:  # refused: not acknowledged (the disk, the clock)
                failed += 1
            else:
                acked.write(rid + "\\n")
                acked.flush()
            n += 1
            time.sleep(max(0.0, 1 / rate - (time.monotonic() - began)))
    store.close()
    with open(base + ".done", "w") as fh:
        fh.write(f"{n} {failed}\\n")
""")


class Chaos:
    def __init__(self, fleet, say):
        self.fleet = fleet
        self.say = say
        self.rows: list[str] = []
        self.running: set[str] = set()  # phases whose writers run

    # -- writers ---------------------------------------------------------------

    def start_writers(self, phase: str, edges=EDGES, env: str = "") -> None:
        f = self.fleet
        self.running.add(phase)
        for edge in edges:
            # Each time: a container started again (a fault) begins with an empty /tmp.
            f.run(edge, "sh", "-c", "cat > /tmp/chaos_writer.py", input=WRITER)
            base = f"/tmp/chaos-{phase}"
            user, config = f.facts["edgesync_user"], f.facts["edgesync_config_path"]
            writer = f"{f.python} /tmp/chaos_writer.py {base} {RATE} {config}"
            f.run(edge, "sh", "-c", f"rm -f {base}.stop {base}.done {base}.acked; setsid nohup "
                  f"runuser -u {user} -- env {env} {writer} >{base}.log 2>&1 &")  # fmt: skip

    def stop_writers(self, phase: str, edges=EDGES) -> dict[str, list[str]]:
        """Stop the writers; each edge's acknowledged IDs."""
        base = f"/tmp/chaos-{phase}"
        self.running.discard(phase)
        for edge in edges:
            self.fleet.run(edge, "touch", f"{base}.stop")
        acked = {}
        for edge in edges:
            deadline = time.monotonic() + 60
            while self.fleet.run(edge, "test", "-e", f"{base}.done", check=False).returncode:
                assert time.monotonic() < deadline, f"{edge}: the writer did not stop"
                time.sleep(0.5)
            text = self.fleet.run(edge, "cat", f"{base}.acked", check=False).stdout
            acked[edge] = text.split()
        return acked

    # -- sync ------------------------------------------------------------------

    def converge(self, fault: str, acked: dict[str, list[str]], recovered: float) -> None:
        """Sync rounds until every acknowledged write is on the master and all
        digests agree; check it, print the fault's row."""
        made = sum(len(ids) for ids in acked.values())
        wanted = {rid for ids in acked.values() for rid in ids}
        failed, present, digests, rounds = self.fleet.converge(wanted)
        took = time.monotonic() - recovered
        self.rows.append(f"{fault:44s} {made:7d} {len(present):8d} {took:9.0f} s {rounds:3d}")
        self.say(self.rows[-1])
        assert failed == [], f"{fault}: refused or failed after recovery: {failed}"
        assert present == wanted, f"{fault}: {len(wanted - present)} acknowledged writes lost"
        assert len(set(digests.values())) == 1, f"{fault}: digests differ: {digests}"

    # -- helpers for the faults --------------------------------------------------

    def background(self, host: str, *args: str) -> subprocess.Popen:
        argv = self.fleet.agent_argv(host, *args)
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def kill9(self, host: str, words: str, within: float = 10) -> bool:
        """kill -9 the first process on ``host`` whose command line holds ``words``."""
        script = (
            "import os, signal, sys\n"
            "for p in os.listdir('/proc'):\n"
            "    try:\n"
            "        cmd = open(f'/proc/{p}/cmdline', 'rb').read().replace(b'\\0', b' ')\n"
            "    except OSError:\n"
            "        continue\n"
            "    if p.isdigit() and int(p) != os.getpid() and sys.argv[1].encode() in cmd:\n"
            "        os.kill(int(p), signal.SIGKILL); print(p)\n"
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.fleet.run(host, self.fleet.python, "-c", script, words).stdout.strip():
                return True
            time.sleep(0.05)
        return False

    def host_link(self, host: str) -> str:
        """The host side of ``host``'s network cable (its veth on this machine)."""
        peer = self.fleet.run(host, "cat", "/sys/class/net/eth0/iflink").stdout.strip()
        for line in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                                   check=True).stdout.splitlines():  # fmt: skip
            index, name = line.split(":")[:2]
            if index == peer:
                return name.strip().split("@")[0]
        raise AssertionError(f"{host}: no host-side link with index {peer}")


@pytest.fixture(scope="module")
def chaos(built, fleet, say):
    c = Chaos(fleet, say)
    assert fleet.sync_round() == []  # start converged
    say(f"{'fault':44s} {'writes':>7s} {'present':>8s} {'converge':>11s} rounds")
    yield c
    say("chaos table\n" + "\n".join(c.rows))


@pytest.fixture(autouse=True)
def _writers_stopped(chaos):
    """A fault test that fails half-way stops its writers here: writes that go
    on into the next tests would fail those too (their digests never agree)."""
    yield
    for phase in sorted(chaos.running):
        chaos.stop_writers(phase)


def test_an_edge_cut_off_mid_sync(chaos):
    chaos.start_writers("cut")
    time.sleep(5)
    link = chaos.host_link("edge01")
    pull = chaos.background("node01", "pull", "EDGE01")
    time.sleep(random.uniform(0.1, 0.5))
    subprocess.run(["ip", "link", "set", link, "down"], check=True)
    try:
        time.sleep(10)
    finally:
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
    recovered = time.monotonic()
    _out, err = pull.communicate(timeout=180)
    assert pull.returncode in (0, 4) and "Traceback" not in err, err
    time.sleep(5)
    chaos.converge("edge01 cut off mid-sync, then back", chaos.stop_writers("cut"), recovered)


def test_the_agent_killed_mid_batch_on_either_side(chaos):
    chaos.start_writers("kill")
    time.sleep(8)
    pull = chaos.background("node01", "pull", "EDGE02")  # edge02's serve sends
    assert chaos.kill9("edge02", "serve --stdio"), "no serve process to kill on edge02"
    pull.communicate(timeout=120)
    time.sleep(5)
    pull = chaos.background("node01", "pull", "EDGE01")  # node01 receives
    assert chaos.kill9("node01", " pull EDGE01"), "no pull process to kill on node01"
    pull.communicate(timeout=120)
    recovered = time.monotonic()
    time.sleep(3)
    chaos.converge("agent kill -9 sending, then receiving", chaos.stop_writers("kill"), recovered)


def test_redis_killed_on_an_edge_and_restarted_empty(chaos):
    chaos.start_writers("redis")
    time.sleep(5)
    chaos.fleet.run("edge03", "systemctl", "kill", "-s", "KILL", "redis-server")
    chaos.fleet.run("edge03", "sh", "-c", "rm -f /var/lib/redis/*.rdb /var/lib/redis/*.aof")
    time.sleep(3)
    chaos.fleet.run("edge03", "systemctl", "restart", "redis-server")
    recovered = time.monotonic()
    time.sleep(5)
    chaos.converge("redis on edge03 killed, restarted empty", chaos.stop_writers("redis"),
                   recovered)  # fmt: skip


def test_an_edges_data_disk_full_then_freed(chaos, fleet):
    # edge02's data dir moves onto a filesystem of its own, 16 MiB larger than
    # what the directory holds (a tmpfs: the Docker containers run systemd, so
    # root in them holds CAP_SYS_ADMIN), which then fills up.
    data = fleet.facts["edgesync_data_dir"]

    def root(script: str) -> None:
        fleet.run("edge02", "sh", "-c", script)

    user = fleet.facts["edgesync_user"]
    # The API holds the database open (so its WAL stays): it is stopped while
    # the data directory moves, and runs on the small disk as it fills.
    api = fleet.facts["edgesync_http_service"]
    held = int(fleet.run("edge02", "du", "-sm", data).stdout.split()[0])
    # If the copy onto the small disk fails, edge02 goes back onto its own
    # disk at once (the later tests run on it).
    root(f"systemctl stop {api} && rm -rf /tmp/data-disk && cp -a {data} /tmp/data-disk && "
         f"mount -t tmpfs -o size={held + 16}m,mode=0750 tmpfs {data} && "
         f"if cp -a /tmp/data-disk/. {data}/ && chown {user}:{user} {data}; "
         f"then systemctl start {api}; "
         f"else umount {data}; systemctl start {api}; false; fi")  # fmt: skip
    refused, took = None, []  # puts taken before the disk refused one
    try:
        chaos.start_writers("disk")
        time.sleep(5)
        root(f"dd if=/dev/zero of={data}/filler bs=64k 2>/dev/null || true")  # full
        time.sleep(3)
        # A write may still fit where SQLite reuses space it already holds (the
        # WAL after a checkpoint, free pages): write pages of 64 KiB until the
        # disk refuses one, as it must long before 300 of them (19 MiB).
        body = json.dumps({"title": "full", "body": "x" * 65536})
        for _ in range(300):
            res = fleet.agent("edge02", "put", "pages", "--data", body, check=False)
            if res.returncode != 0:
                refused = res
                break
            took.append(json.loads(res.stdout)["id"])
        assert refused is not None, "300 writes of 64 KiB each fitted on a full disk"
        assert refused.returncode == 5, refused.stderr
        assert "local storage" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        root(f"rm -f {data}/filler")  # freed
        recovered = time.monotonic()
        time.sleep(5)
        acked = chaos.stop_writers("disk")
        acked["edge02"] += took
    finally:  # back onto the container's own disk, with everything written meanwhile
        if "disk" in chaos.running:  # a writer holds the database open
            chaos.stop_writers("disk")
        root(f"systemctl stop {api}; rm -f {data}/filler; rm -rf /tmp/data-disk && "
             f"cp -a {data} /tmp/data-disk")  # fmt: skip
        # A sync session a peer's round started may still hold the database
        # for a moment: umount when it has let go.
        root(f"for i in $(seq 60); do umount {data} 2>/dev/null && break; sleep 1; done; "
             f"! mountpoint -q {data} && cp -a /tmp/data-disk/. {data}/ && "
             f"systemctl start {api}")  # fmt: skip
    chaos.converge("edge02's data disk full, then freed", acked, recovered)


def test_an_edges_clock_ten_minutes_fast_then_corrected(chaos, fleet):
    # edge04's agent sees the clock 10 minutes ahead: libfaketime preloaded into
    # its command (every session its sshd starts) and its writer. Not into sshd
    # itself, whose seccomp sandbox kills a process making libfaketime's calls.
    agent = fleet.facts["edgesync_agent"]
    fast = "LD_PRELOAD=/usr/local/lib/libfaketime.so.1 FAKETIME=+10m"
    lib = f"{container('edge04')}:/usr/local/lib/libfaketime.so.1"
    subprocess.run(["docker", "cp", FAKETIME, lib], check=True)
    wrapper = f'#!/bin/sh\n{fast} exec {fleet.python} {agent}.real "$@"\n'
    swap = f"mv {agent} {agent}.real && cat > {agent} && chmod 755 {agent}"
    fleet.run("edge04", "sh", "-c", swap, input=wrapper)
    others = [e for e in EDGES if e != "edge04"]
    try:
        chaos.start_writers("clock", others)
        chaos.start_writers("clock", ["edge04"], env=fast)
        time.sleep(8)
        refused = fleet.agent("node02", "pull", "EDGE04", check=False)
        assert refused.returncode == 3 and "clock is" in refused.stderr, refused.stderr
        ran_fast = chaos.stop_writers("clock", ["edge04"])["edge04"]
    finally:
        fleet.run("edge04", "mv", f"{agent}.real", agent)
    recovered = time.monotonic()
    chaos.start_writers("clock-after", ["edge04"])  # the clock is right again
    time.sleep(5)
    acked = chaos.stop_writers("clock", others)
    acked["edge04"] = ran_fast + chaos.stop_writers("clock-after", ["edge04"])["edge04"]
    chaos.converge("edge04's clock 10 min fast, then corrected", acked, recovered)


def test_the_master_restarted_mid_push(chaos, fleet):
    chaos.start_writers("master")
    time.sleep(5)
    fleet.agent("node01", "pull", "EDGE01")
    fleet.agent("node01", "pull", "EDGE02")
    push = chaos.background("node01", "push", "MASTER01")
    time.sleep(random.uniform(0.2, 0.8))
    subprocess.run(["lxc", "restart", container("master01"), "--project", PROJECT, "--force"],
                   check=True)  # fmt: skip
    recovered = time.monotonic()
    _out, err = push.communicate(timeout=180)
    assert push.returncode in (0, 4) and "Traceback" not in err, err
    deadline = time.monotonic() + 120
    while fleet.agent("master01", "status", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the master's agent did not come back"
        time.sleep(1)
    while fleet.run("master01", "systemctl", "is-active", "ssh", check=False).returncode != 0:
        assert time.monotonic() < deadline, "the master's sshd did not come back"
        time.sleep(1)
    chaos.converge("master01 restarted mid-push", chaos.stop_writers("master"), recovered)


def test_a_farms_balancer_while_its_edges_fail(chaos, fleet, tmp_path):
    """Users of farm lon-a (edge01 on LXD, edge02 on Docker) through its
    balancer while its edges fail: edge01's API killed (systemd brings it
    back), edge01's container stopped (the farm down to one edge), then no
    edge of the farm serving. Reads and writes keep succeeding while one edge
    serves; with none, the answer is a 503 with Retry-After, never a wait past
    the client's timeout; no write the balancer acknowledged is lost."""
    people = FarmUsers(fleet, tmp_path, farms=["lon-a"])
    people.start()
    api, name = fleet.facts["edgesync_http_service"], container("edge01")
    lxc = ["lxc", "--project", PROJECT]
    phases = []

    def phase(label, seconds, *, serving: bool):
        began = time.time()
        time.sleep(seconds)
        phases.append((label, began, time.time(), serving))

    try:
        phase("farm lon-a, both edges serving", 4, serving=True)
        pid = fleet.run("edge01", "systemctl", "show", api, "-p", "MainPID", "--value").stdout
        fleet.run("edge01", "kill", "-9", pid.strip())
        phase("edge01's API killed (-9)", 8, serving=True)
        subprocess.run([*lxc, "stop", name, "--force"], check=True)
        phase("edge01's container stopped (one edge left)", 8, serving=True)
        fleet.run("edge02", "systemctl", "stop", api)
        phase("and edge02's API stopped (no edge left)", 6, serving=False)
        fleet.run("edge02", "systemctl", "start", api)
        subprocess.run([*lxc, "start", name], check=True)
        deadline = time.monotonic() + 60
        while not ready(fleet.api_url("edge02")):
            assert time.monotonic() < deadline, "edge02's API did not come back"
            time.sleep(0.2)
        time.sleep(3)  # the balancer's checks see it UP (rise 2, every second)
        phase("edge02 back, edge01 starting", 4, serving=True)
    finally:
        requests = people.stop()
        fleet.run("edge02", "systemctl", "start", api, check=False)
        subprocess.run([*lxc, "start", name], capture_output=True)
    deadline = time.monotonic() + 120
    while fleet.run("edge01", "systemctl", "is-active", api, check=False).returncode != 0:
        assert time.monotonic() < deadline, "edge01's API did not come back"
        time.sleep(1)
    timeout_ms = users.TIMEOUT_S * 1000
    bad = []
    for label, began, ended, serving in phases:
        during = [r for r in requests if began <= r["t"] < ended]
        ok = [r for r in during if r["status"] == (201 if r["kind"] == "write" else 200)]
        clean = [r for r in during if r["status"] == 503 and r["retry_after"]]
        slowest = max((r["ms"] for r in during), default=0)
        chaos.rows.append(f"{'balancer: ' + label:44s} {len(during):7d} requests, {len(ok)} ok, "
                          f"{len(clean)} 503+Retry-After, slowest {slowest:.0f} ms")  # fmt: skip
        chaos.say(chaos.rows[-1])
        allowed = ok if serving else ok + clean
        bad += [(label, r) for r in during if r not in allowed or r["ms"] >= timeout_ms]
    assert bad == [], bad[:5]
    acked = {r["x"] for r in requests if r["kind"] == "write" and r["status"] == 201}
    failed, present, digests, _rounds = fleet.converge(acked)
    assert failed == [] and present == acked, f"{len(acked - present)} acknowledged writes lost"
    assert len(set(digests.values())) == 1, digests


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def edgectl(*args: str) -> tuple[int, dict]:
    """edgectl as an operator runs it (the console script, --json): its exit code and report."""
    res = subprocess.run([EDGECTL, *args, "--json"], capture_output=True, text=True, timeout=1800)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout)


def test_a_master_lost_with_its_data_then_rebuilt_by_edgectl_up(chaos, fleet, say):
    """master02's container destroyed, its data with it: status and verify
    take master01 as reference, mark master02, exit 1; then, while the edges
    write, rounds go on through master01 (the farms still hear of each
    other) and `edgectl up` makes master02 anew, a new incarnation; the rounds
    after bring it everything: one digest, every acknowledged write (and its
    predecessor's own) on both masters."""
    lost, kept = "master02", "master01"
    assert set(fleet.masters) == {lost, kept}, fleet.masters
    was = fleet.agent_json(lost, "status", "--json")["origin"]
    # master02 made changes of its own (a master takes writes too), and a
    # round carried them to the fleet before it was lost.
    own = {fleet.agent_json(lost, "put", "pages", "--data", f'{{"title": "on master02 {i}"}}')["id"]
           for i in range(3)}  # fmt: skip
    assert fleet.sync_round() == []
    subprocess.run(["docker", "rm", "-f", container(lost)], check=True, capture_output=True)
    took = {}

    # (Before the writers start: verify narrows a difference down to records,
    # and content written meanwhile is a difference.)
    began = time.monotonic()
    rc, status = edgectl("status")
    assert rc == 1 and status["reference"] == kept, status
    row = next(r for r in status["hosts"] if r["host"] == lost)
    assert row["attention"] and "version" not in row, row
    rc, verified = edgectl("verify")
    assert rc == 1 and verified["unreachable"] == ["MASTER02"], verified
    took["status and verify"] = time.monotonic() - began

    # A round without master02, while the edges write: only master02 fails
    # (unreachable); the links to it are named; a write of farm lon-a reaches
    # farm lon-b through master01.
    chaos.start_writers("lost")
    crossing = fleet.agent_json("edge01", "put", "pages", "--data", '{"title": "via master01"}')
    began = time.monotonic()
    rc, report = edgectl("sync")
    took["a round without it"] = time.monotonic() - began
    assert rc == 1, report
    assert [line.split(":")[0] for line in report["failures"]] == [lost], report["failures"]
    named = {line.split(":")[0] for line in report["warnings"] if "MASTER02" in line}
    assert named == {kept, "node01", "node02"}, report["warnings"]
    assert crossing["id"] in fleet.ids("edge03") and crossing["id"] in fleet.ids(kept)

    began = time.monotonic()
    up = subprocess.run([EDGECTL, "up"], capture_output=True, text=True, timeout=1800)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    rebuilt = time.monotonic()
    took["edgectl up rebuilding it"] = rebuilt - began
    now = fleet.agent_json(lost, "status", "--json")
    assert now["origin"].startswith("MASTER02.") and now["origin"] != was, now["origin"]
    time.sleep(3)
    chaos.converge("master02 destroyed with its data, rebuilt", chaos.stop_writers("lost"),
                   rebuilt)  # fmt: skip
    took["until the rebuilt master agreed"] = time.monotonic() - rebuilt
    say("master02 lost: " + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()))
    rc, verified = edgectl("verify")
    assert rc == 0 and verified["agree"], verified
    assert own <= fleet.ids(lost), "the rebuilt master lacks the changes its predecessor made"


def test_a_masters_backup_copied_off_its_host_then_restored_from_the_copy(chaos, fleet, tmp_path):
    """The restore drill: `edgectl backup` copies each master's backup to the
    controller, checked on arrival; the edges and master01 write on, a round
    carries it all; master01 is restored from the copy (older than those
    writes) with `edgectl restore`; the rounds after bring back what the copy
    lacked: every acknowledged write on both masters, one digest. A damaged
    copy is refused before the host is touched."""
    rc, report = edgectl("backup")
    assert rc == 0, report
    where = Path(fleet.admin_dir) / "backups" / fleet.name
    copies = {m: sorted((where / m).glob(f"{m}-schema*-*Z.db")) for m in fleet.masters}
    assert all(copies.values()) and not list(where.glob("*/*.part")), copies
    copy = copies["master01"][-1]
    checked = subprocess.run([sys.executable, "-m", "edgesync", "check-backup", str(copy)],
                             capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(checked.stdout)["integrity"] == "ok"

    damaged = tmp_path / copy.name
    damaged.write_bytes(b"\0" * 4096)
    before = fleet.agent("master01", "digest").stdout
    rc, report = edgectl("restore", "master01", str(damaged))
    assert rc == 1 and len(report["failures"]) == 1, report
    assert "not restored" in report["failures"][0] and str(damaged) in report["failures"][0]
    assert fleet.agent("master01", "digest").stdout == before

    chaos.start_writers("drill")
    since = [fleet.agent_json("master01", "put", "pages", "--data",
                              f'{{"title": "master01 after its backup {i}"}}')["id"]
             for i in range(3)]  # fmt: skip
    time.sleep(5)
    assert fleet.sync_round() == []
    with fleet.rounds_paused():  # no round refills master01 before it is looked at
        rc, report = edgectl("restore", "master01", str(copy))
        assert rc == 0, report
        assert not set(since) & fleet.ids("master01"), "the copy is not in place"
    recovered = time.monotonic()
    acked = chaos.stop_writers("drill")
    acked["master01"] = since
    chaos.converge("master01 restored from its off-host copy", acked, recovered)


def test_after_the_faults_a_converged_fleet_has_an_empty_outbox(chaos, fleet):
    for _ in range(2):  # the second round moves cursors past what the first brought
        assert chaos.fleet.sync_round() == []
    for host in fleet.hosts:
        status = fleet.agent_json(host, "status", "--json")
        assert (status["outbox_pending"], status["outbox_stream"]) == (0, 0), (
            host,
            status["push_targets"],
            status["outbox_pending"],
            status["outbox_stream"],
        )
