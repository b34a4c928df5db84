"""The chaos table: faults on the real fleet (LXD and Docker) while writers run
on every edge, each followed by recovery and sync rounds in topology order.

For each fault: every write acknowledged on an edge is on the master and, as
all digests are equal, on every host; the rounds after recovery are refused
nowhere. One row per fault: writes made, writes present, time to converge.
Runs after test_fleet.py, on the same fleet.
"""

from __future__ import annotations

import random
import subprocess
import textwrap
import time

import pytest
from conftest import PROJECT
from runner_events import failures

EDGES = ["edge01", "edge02", "edge03", "edge04"]
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
        for edge in EDGES:
            fleet.run(edge, "sh", "-c", "cat > /tmp/chaos_writer.py", input=WRITER)

    # -- writers ---------------------------------------------------------------

    def start_writers(self, phase: str, edges=EDGES, env: str = "") -> None:
        f = self.fleet
        for edge in edges:
            base = f"/tmp/chaos-{phase}"
            user, config = f.facts["edgesync_user"], f.facts["edgesync_config_path"]
            writer = f"{f.python} /tmp/chaos_writer.py {base} {RATE} {config}"
            f.run(edge, "sh", "-c", f"rm -f {base}.stop {base}.done {base}.acked; setsid nohup "
                  f"runuser -u {user} -- env {env} {writer} >{base}.log 2>&1 &")  # fmt: skip

    def stop_writers(self, phase: str, edges=EDGES) -> dict[str, list[str]]:
        """Stop the writers; each edge's acknowledged IDs."""
        base = f"/tmp/chaos-{phase}"
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
    # edge02's data dir moves onto a 16 MiB filesystem of its own (a tmpfs: the
    # Docker containers run systemd, so root in them holds CAP_SYS_ADMIN), which
    # then fills up.
    data = fleet.facts["edgesync_data_dir"]

    def root(script: str) -> None:
        fleet.run("edge02", "sh", "-c", script)

    user = fleet.facts["edgesync_user"]
    # The API holds the database open (so its WAL stays): it is stopped while
    # the data directory moves, and runs on the small disk as it fills.
    api = fleet.facts["edgesync_http_service"]
    root(f"systemctl stop {api} && rm -rf /tmp/data-disk && cp -a {data} /tmp/data-disk && "
         f"mount -t tmpfs -o size=16m,mode=0750 tmpfs {data} && "
         f"cp -a /tmp/data-disk/. {data}/ && chown {user}:{user} {data} && "
         f"systemctl start {api}")  # fmt: skip
    try:
        chaos.start_writers("disk")
        time.sleep(5)
        root(f"dd if=/dev/zero of={data}/filler bs=64k 2>/dev/null || true")  # full
        time.sleep(8)
        errors = fleet.agent("edge02", "put", "pages", "--data", '{"title": "x"}', check=False)
        assert errors.returncode == 5 and "local storage" in errors.stderr, errors.stderr
        root(f"rm -f {data}/filler")  # freed
        recovered = time.monotonic()
        time.sleep(5)
        acked = chaos.stop_writers("disk")
    finally:  # back onto the container's own disk, with everything written meanwhile
        root(f"systemctl stop {api}; rm -f {data}/filler; rm -rf /tmp/data-disk && "
             f"cp -a {data} /tmp/data-disk && umount {data} && cp -a /tmp/data-disk/. {data}/ "
             f"&& systemctl start {api}")  # fmt: skip
    chaos.converge("edge02's data disk full, then freed", acked, recovered)


def test_an_edges_clock_ten_minutes_fast_then_corrected(chaos, fleet):
    # edge04's agent sees the clock 10 minutes ahead: libfaketime preloaded into
    # its command (every session its sshd starts) and its writer. Not into sshd
    # itself, whose seccomp sandbox kills a process making libfaketime's calls.
    agent = fleet.facts["edgesync_agent"]
    fast = "LD_PRELOAD=/usr/local/lib/libfaketime.so.1 FAKETIME=+10m"
    subprocess.run(["docker", "cp", FAKETIME, "edgesync-edge04:/usr/local/lib/libfaketime.so.1"],
                   check=True)  # fmt: skip
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
    subprocess.run(["lxc", "restart", "edgesync-master01", "--project", PROJECT, "--force"],
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


def test_a_nodes_key_removed_from_the_inventory_then_site_yml(chaos, fleet, tmp_path):
    chaos.start_writers("revoke")
    inventory = fleet.edited_inventory(tmp_path, drop="node02", untrust=("node01", "NODE02"))
    try:
        run = fleet.playbook("site.yml", inventory=inventory)
        assert run.rc == 0, failures(run)
        refused = fleet.agent("node02", "push", "MASTER01", check=False)
        assert refused.returncode == 3, refused.stderr
    finally:
        restore = fleet.playbook("site.yml")
        assert restore.rc == 0, failures(restore)
    recovered = time.monotonic()
    chaos.converge("node02's key out, site.yml, then back",
                   chaos.stop_writers("revoke"), recovered)  # fmt: skip


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
