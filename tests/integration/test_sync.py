"""Push and pull between real agents over ``local:`` peers, with the topology enforced."""

import json
import os
import signal
import subprocess
import sys
import time

from farm import ALLOWED, REFUSED_BY_RECEIVER, ROUND, SEVEN, Farm

from edgesync import hlc, protocol


def snapshot(farm, name):
    store = farm.store(name)
    return store.max_seq(), store.digest()


def test_every_combination_in_a_seven_node_farm(farm):
    for name in SEVEN:
        farm.put(name, section="s", title=f"made on {name}")
    for initiator in SEVEN:
        for target in SEVEN:
            if target == initiator:
                continue
            for action in ("push", "pull"):
                before = snapshot(farm, initiator), snapshot(farm, target)
                refusals = farm.store(target).status()["refusals"]["count"]
                res = farm.cli(initiator, action, target, "--json")
                combo = (initiator, action, target)
                if combo in ALLOWED - REFUSED_BY_RECEIVER:
                    assert res.returncode == 0, (combo, res.stderr)
                    report = json.loads(res.stdout)
                    assert report["peer"] == target and report["direction"] == action
                    continue
                assert res.returncode == 3, (combo, res.stdout, res.stderr)
                assert res.stderr.startswith("refused:"), (combo, res.stderr)
                assert len(res.stderr.strip().splitlines()) == 1
                assert (snapshot(farm, initiator), snapshot(farm, target)) == before, combo
                counted = farm.store(target).status()["refusals"]
                if combo in REFUSED_BY_RECEIVER:
                    assert counted["count"] == refusals + 1, combo
                    last = counted["last"][0]
                    assert (last["peer"], last["action"]) == (initiator, action)
                    assert last["at"] and "trusted list" in last["rule"]
                else:  # refused by the initiator before connecting
                    assert counted["count"] == refusals, combo


def test_one_round_in_topology_order_brings_every_write_to_the_master(farm):
    made = {}
    for edge in ("EDGE01", "EDGE02", "EDGE03", "EDGE04"):
        made[edge] = [farm.put(edge, section="news", title=f"{edge} {i}")["id"] for i in range(5)]
    for initiator, action, target in ROUND:
        farm.sync(initiator, action, target)
    master = farm.store("MASTER01")
    for ids in made.values():
        for rid in ids:
            assert master.get("pages", rid)["id"] == rid
    assert len(set(farm.digests().values())) == 1
    # Converged: another round moves nothing but handshakes.
    for initiator, action, target in ROUND:
        report = farm.sync(initiator, action, target)
        assert report["sent"] == report["received"] == 0, (initiator, action, target)


def test_the_receivers_own_view_of_the_caller_is_the_one_that_counts(farm):
    # EDGE03's config claims EDGE01 is in farm b, so EDGE03 lets itself push;
    # EDGE01 knows EDGE03 is in farm b while it is in farm a, and refuses.
    path = farm.config_path("EDGE03")
    text = path.read_text().replace(
        '[peers.EDGE01]\nurl = "local:edge01.toml"\nrole = "edge"\nfarm = "a"',
        '[peers.EDGE01]\nurl = "local:edge01.toml"\nrole = "edge"\nfarm = "b"',
    )
    path.write_text(text)
    farm.put("EDGE03", title="sneaky")
    res = farm.cli("EDGE03", "push", "EDGE01")
    assert res.returncode == 3 and res.stderr.startswith("refused:")
    assert "farm" in res.stderr
    assert farm.store("EDGE01").rows("pages") == 0
    assert farm.store("EDGE01").status()["refusals"]["count"] == 1


def test_a_caller_the_receiver_does_not_know_is_refused(farm, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "edgesync", "--config", str(farm.config_path("MASTER01")),
         "serve", "--stdio", "--peer", "EDGE99"],
        input=hello_frame("EDGE99", "pull"), capture_output=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 3
    assert b"refused:" in res.stderr and b"no peer entry" in res.stderr
    assert farm.store("MASTER01").status()["refusals"]["count"] == 1


def frame(obj) -> bytes:
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return len(data).to_bytes(4, "big") + data


def hello_frame(node, action, clock=None, **extra) -> bytes:
    hello = {"t": "hello", "v": protocol.VERSION, "node": node, "action": action,
             "clock": clock if clock is not None else hlc.wall_ms(), **extra}  # fmt: skip
    return frame(hello)


def serve(farm, name, peer, data: bytes):
    return subprocess.run(
        [sys.executable, "-m", "edgesync", "--config", str(farm.config_path(name)),
         "serve", "--stdio", "--peer", peer],
        input=data, capture_output=True, timeout=60,
    )  # fmt: skip


def test_a_bad_frame_ends_the_session_and_applies_nothing_from_its_batch(farm):
    farm.put("EDGE01", title="one")
    farm.put("EDGE01", title="two")
    store = farm.store("EDGE01")
    bodies = [b for _s, b, _o, _n in store.changes_after(0, 10)]
    good = protocol.batch_frame(bodies, 2)
    hello = hello_frame("EDGE01", "push")
    cases = {  # a broken session is a sync failure (4); a bad frame, bad input (2)
        "truncated frame": (4, hello + frame(good)[:-10]),
        "oversized frame": (2, hello + (protocol.MAX_FRAME + 1).to_bytes(4, "big") + b"{}"),
        "malformed frame": (2, hello + frame(b'{"t": "batch", "changes": [ oops')),
        "truncated frame header": (4, hello + b"\x00\x00"),
    }
    for why, (code, data) in cases.items():
        res = serve(farm, "EDGE02", "EDGE01", data)
        assert res.returncode == code, (why, res.stderr)
        assert why.encode() in res.stderr, (why, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1
        assert farm.store("EDGE02").rows("pages") == 0


def test_a_batch_with_one_bad_change_is_rejected_whole(farm):
    for i in range(3):
        farm.put("EDGE01", title=f"p{i}")
    changes = [json.loads(b) for _s, b, _o, _n in farm.store("EDGE01").changes_after(0, 10)]
    changes[1]["d"]["title"] = {"not": "scalar"}
    data = hello_frame("EDGE01", "push") + frame({"t": "batch", "last": 3, "changes": changes})
    res = serve(farm, "EDGE02", "EDGE01", data)
    assert res.returncode == 2 and b"malformed batch: change 1" in res.stderr
    assert farm.store("EDGE02").rows("pages") == 0


def test_a_peer_whose_clock_is_far_ahead_is_refused(farm):
    ahead = hlc.wall_ms() + 10 * 60 * 1000
    res = serve(farm, "MASTER01", "EDGE01", hello_frame("EDGE01", "pull", clock=ahead))
    assert res.returncode == 3
    assert b"clock is" in res.stderr and b"ahead" in res.stderr
    assert "clock" in farm.store("MASTER01").status()["refusals"]["last"][0]["rule"]
    # Changes stamped far in the future are refused too, whoever forwards them.
    future = hlc.encode(ahead, 0, "EDGE01")
    rid = "EDGE01-LON-43AX-K3J9X0QZ-27112026200512"
    change = {"o": "EDGE01", "n": 1, "h": future, "t": "pages", "i": rid, "k": "put",
              "d": {"title": "x"}}  # fmt: skip
    data = hello_frame("EDGE01", "push") + frame({"t": "batch", "last": 1, "changes": [change]})
    res = serve(farm, "EDGE02", "EDGE01", data)
    assert res.returncode == 2 and b"in the future" in res.stderr
    assert farm.store("EDGE02").rows("pages") == 0


def test_a_ring_converges_and_then_goes_quiet(tmp_path, redis_server):
    redis_server.client().flushall()
    ring = Farm(tmp_path, redis_server.url,
                {n: ("edge", "a", ()) for n in ("EDGE01", "EDGE02", "EDGE03")})  # fmt: skip
    try:
        links = [("EDGE01", "EDGE02"), ("EDGE02", "EDGE03"), ("EDGE03", "EDGE01")]
        for name in ("EDGE01", "EDGE02", "EDGE03"):
            for i in range(3):
                ring.put(name, title=f"{name} {i}")
        for _ in range(2):
            for a, b in links:
                ring.sync(a, "push", b)
        assert len(set(ring.digests().values())) == 1
        assert ring.store("EDGE01").rows("pages") == 9
        for a, b in links:
            report = ring.sync(a, "push", b)
            assert report["sent"] == 0 and report["batches"] == 0
    finally:
        ring.close()


def test_killing_the_receiver_mid_push_loses_nothing(tmp_path, redis_server):
    redis_server.client().flushall()
    pair = Farm(tmp_path, redis_server.url, {"EDGE01": ("edge", "a", ()),
                                             "EDGE02": ("edge", "a", ())},
                batch_size=500)  # fmt: skip
    try:
        sender = pair.store("EDGE01")
        total = 20_000
        rows = [{"title": f"t{i}", "body": "x" * 200} for i in range(total)]
        for row in rows:
            sender.put("pages", row)
        sender.flush()
        push = subprocess.Popen(
            [sys.executable, "-m", "edgesync", "--config", str(pair.config_path("EDGE01")),
             "push", "EDGE02", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        receiver = pair.store("EDGE02")
        deadline = time.monotonic() + 60
        while receiver.rows("pages") < 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        killed = _kill_serve_child(push.pid)
        out, err = push.communicate(timeout=60)
        assert killed, "the receiving process was not found"
        assert push.returncode == 4, err
        part = receiver.rows("pages")
        assert 0 < part < total
        report = pair.sync("EDGE01", "push", "EDGE02")
        assert receiver.rows("pages") == total
        assert receiver.max_seq() == total  # every change logged exactly once
        assert report["sent"] <= total - part + 500  # at most the unacknowledged batch again
        assert receiver.digest() == sender.digest()
        assert sender.status()["outbox_pending"] == 0
    finally:
        pair.close()


def _kill_serve_child(parent: int) -> bool:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if ppid == parent and b"serve" in cmd:
            os.kill(int(pid), signal.SIGKILL)
            return True
    return False


def test_changes_logged_out_of_order_are_still_all_pushed(farm):
    for i in range(4):
        farm.put("EDGE03", title=f"p{i}")
    log = [json.loads(b) for _s, b, _o, _n in farm.store("EDGE03").changes_after(0, 10)]
    # EDGE04 got EDGE03's changes out of order (3, 4, then 1, 2), as a library
    # caller may deliver them; it forwards them all to NODE02 all the same.
    farm.store("EDGE04").apply_changes([log[2], log[3]])
    farm.store("EDGE04").apply_changes([log[0], log[1]])
    report = farm.sync("NODE02", "pull", "EDGE04")
    assert report["applied"] == 4
    assert farm.store("NODE02").held() == {"EDGE03": 4}
    assert farm.store("NODE02").digest() == farm.store("EDGE03").digest()


def test_a_dry_run_counts_what_would_move_and_moves_nothing(farm):
    for i in range(3):
        farm.put("EDGE01", title=f"p{i}")
    res = farm.cli("EDGE01", "push", "EDGE02", "--dry-run", "--json")
    assert json.loads(res.stdout)["would_send"] == 3
    res = farm.cli("NODE01", "pull", "EDGE01", "--dry-run", "--json")
    assert json.loads(res.stdout)["would_receive"] == 3
    assert farm.store("EDGE02").rows("pages") == farm.store("NODE01").rows("pages") == 0
    assert farm.store("EDGE01").log.cursor("EDGE02", "push") == 0
    farm.sync("NODE01", "pull", "EDGE01")
    res = farm.cli("NODE01", "pull", "EDGE01", "--dry-run", "--json")
    assert json.loads(res.stdout)["would_receive"] == 0
