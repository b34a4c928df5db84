"""Faults a fleet meets, on real processes, sshd, SQLite and Redis: bad bytes
from a user or a peer, a full disk, Redis dying mid-push, a peer that stalls,
frames built to exhaust a receiver. Each ends in one line and a documented exit
code (cli.py: 2 bad input, 4 sync failure, 5 local storage), never a
traceback, and loses nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from farm import SEVEN, Farm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesync import cli, hlc, protocol, topology

PAIR = {"EDGE01": ("edge", "a", ()), "EDGE02": ("edge", "a", ())}


def frame(obj) -> bytes:
    data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return len(data).to_bytes(4, "big") + data


def hello(node="EDGE01", action="push", **extra) -> dict:
    return {"t": "hello", "v": protocol.VERSION, "node": node, "action": action,
            "clock": hlc.wall_ms(), "yours": {}, **extra}  # fmt: skip


def one_line(stderr: str | bytes, code: int, codes) -> str:
    err = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    assert code in codes, (code, err)
    assert "Traceback" not in err, err
    assert err.count("\n") <= 1, err
    return err


def run_main(argv: list[str], stdin: bytes) -> tuple[int, str, bytes]:
    """The CLI in this process, as a user's shell runs it: an exception
    escaping main would be the traceback a user sees, and fails the test."""
    out = io.BytesIO()
    err = io.StringIO()
    saved = sys.stdin, sys.stdout
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    sys.stdout = io.TextIOWrapper(out)
    try:
        with contextlib.redirect_stderr(err):
            code = cli.main(argv)
        sys.stdout.flush()
        written = out.getvalue()
    finally:
        sys.stdin, sys.stdout = saved
    return code, err.getvalue(), written


@pytest.fixture
def pair(make_farm):
    return make_farm(PAIR)


# -- bad input to put ----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b'{"title": "caf\xe9"}', "not UTF-8 at byte 14"),
        (b'{"title": "\\ud800"}', "lone surrogate"),
        (b'{"title": "a\\udc00b"}', "lone surrogate"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
        (b'{"title": ' + b"7" * 5000 + b"}", "invalid JSON"),
        (b'{"title": true}', "pages.title is a boolean"),
        (b'{"\\ud800": 1}', "unknown column"),
    ],
    ids=["latin-1", "surrogate", "low surrogate", "deep", "5000 digits", "boolean", "key"],
)
def test_bad_bytes_for_put_are_one_line_exit_2_and_write_nothing(pair, data, words):
    res = subprocess.run(
        [sys.executable, "-m", "edgesync", "--config", str(pair.config_path("EDGE01")),
         "put", "pages", "--data", "-"],
        input=data, capture_output=True, timeout=60,
    )  # fmt: skip
    err = one_line(res.stderr, res.returncode, (2,))
    assert words in err, err
    assert res.stdout == b""
    assert pair.store("EDGE01").max_seq() == 0


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20)
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
    max_leaves=6,
)  # fmt: skip
KEYS = st.sampled_from(["title", "section", "body", "id", "colour", ""]) | st.text(max_size=5)


def put_input() -> st.SearchStrategy[bytes]:
    as_json = st.dictionaries(KEYS, VALUES, max_size=4).map(
        lambda d: json.dumps(d).encode()  # \\uXXXX escapes: lone surrogates survive
    )
    return as_json | st.binary(max_size=60) | VALUES.map(lambda v: json.dumps(v).encode())


def test_a_string_left_open_across_a_frame_is_refused_at_once(pair):
    nasty = b"[" * 20_100 + b'"' + b'\\"' * 1_000_000  # braces, then one open string
    res = subprocess.run(
        [sys.executable, "-m", "edgesync", "--config", str(pair.config_path("EDGE02")),
         "serve", "--stdio", "--peer", "EDGE01"],
        input=frame(nasty), capture_output=True, timeout=60,  # quadratic: hours
    )  # fmt: skip
    one_line(res.stderr, res.returncode, (2,))


def test_a_caller_naming_itself_at_length_is_refused_in_a_short_line(pair):
    big = {**hello(), "node": "X" * 1_000_000}
    res = subprocess.run(
        [sys.executable, "-m", "edgesync", "--config", str(pair.config_path("EDGE02")),
         "serve", "--stdio", "--peer", "EDGE01"],
        input=frame(big), capture_output=True, timeout=60,
    )  # fmt: skip
    assert len(one_line(res.stderr, res.returncode, (3,))) < 300
    refusals = pair.store("EDGE02").status()["refusals"]
    assert refusals["count"] == 1 and len(refusals["last"][0]["rule"]) < 300


def _data_dir_a_file(data_dir) -> None:
    data_dir.rename(data_dir.with_name("gone"))
    data_dir.write_text("")


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (lambda p: p.parent, 2, "cannot be read"),
        (lambda p: p.write_bytes(b"[node]\nname = \"\xff\"\n") and p, 2, "not valid TOML"),
        (lambda p: p.write_text(p.read_text().replace(
            "redis://127.0.0.1:", "redis://127.0.0.1:x")) and p, 2, "node.redis_url"),
        (lambda p: p.write_text(p.read_text().replace(
            'url = "local:edge02.toml"', 'url = "ssh://u@h:99999"')) and p, 2, "peers.EDGE02.url"),
        (lambda p: _data_dir_a_file(p.parent / "edge01") or p, 5, "local storage"),
    ],
    ids=["a directory", "not UTF-8", "redis port", "ssh port", "data_dir a file"],
)  # fmt: skip
def test_a_bad_config_or_data_dir_is_one_line(pair, make, code, words):
    pair.close()
    path = make(pair.config_path("EDGE01"))
    res = subprocess.run([sys.executable, "-m", "edgesync", "--config", str(path), "status"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert words in one_line(res.stderr, res.returncode, (code,))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=put_input())
def test_put_takes_any_bytes_keeps_types_or_refuses_in_one_line(pair, data):
    config = str(pair.config_path("EDGE01"))
    code, err, out = run_main(["--config", config, "put", "pages", "--data", "-"], data)
    one_line(err, code, (0, 1, 2))
    if code != 0:
        assert out == b""
        return
    stored = json.loads(out)
    given_values = json.loads(data)
    for column, value in given_values.items():
        if column != "id":
            # Kept as given: the same value of the same type (never true as 1).
            assert stored[column] == value and type(stored[column]) is type(value), column


def serve_input() -> st.SearchStrategy[bytes]:
    field = st.sampled_from(["t", "v", "node", "action", "clock", "yours", "held", "cursor",
                             "log", "at", "last", "changes", "dry_run"])  # fmt: skip
    hellos = st.builds(
        lambda action, extra: {**hello(action=action), **extra},
        st.sampled_from(["push", "pull"]),
        st.dictionaries(field, VALUES, max_size=3),
    )
    change = st.fixed_dictionaries(
        {k: VALUES for k in "onhtikdps"}, optional={"x": VALUES}
    )  # fmt: skip
    batches = st.builds(
        lambda changes, last: {"t": "batch", "last": last, "changes": changes},
        st.lists(change, max_size=3) | VALUES,
        VALUES,
    )
    framed = st.lists(hellos | batches | VALUES, min_size=1, max_size=3).map(
        lambda msgs: b"".join(frame(json.dumps(m).encode()) for m in msgs)
    )
    return framed | st.binary(max_size=80) | hellos.map(lambda h: frame(h) + b"\x00\x00\x01")


def genuine(pair) -> list[dict]:
    """EDGE01's real, signed changes (made once per farm)."""
    if not hasattr(pair, "genuine"):
        pair.put("EDGE01", section="s", title="genuine")
        store = pair.store("EDGE01")
        pair.genuine = [json.loads(b) for _s, b, _o, _n in store.changes_after(0, 10)]
    return pair.genuine


def test_bad_bytes_in_a_peers_frame_are_one_line_exit_2_and_apply_nothing(pair):
    change = genuine(pair)[0]
    body = json.dumps({"t": "batch", "last": 1, "changes": [change]}).encode()
    title = json.dumps(change["d"]["title"]).encode()
    cases = {
        "lone surrogate": body.replace(title, b'"\\ud800"'),
        "invalid UTF-8": body.replace(title, b'"\xff\xfe"'),
        "5000 digits": body.replace(b'"n": 1', b'"n": ' + b"9" * 5000),
        "deep nesting": body.replace(title, b"[" * 50_000 + b"]" * 50_000),
        "hello of wrong types": None,
    }
    for why, data in cases.items():
        if data is None:
            wrong = {**hello(), "yours": [1], "clock": "soon", "node": {"a": 1}}
            stream = frame(wrong)
        else:
            assert data != body, why
            stream = frame(hello()) + frame(data)
        res = subprocess.run(
            [sys.executable, "-m", "edgesync", "--config", str(pair.config_path("EDGE02")),
             "serve", "--stdio", "--peer", "EDGE01"], input=stream, capture_output=True,
        )  # fmt: skip
        one_line(res.stderr, res.returncode, (2, 3))
    assert pair.store("EDGE02").rows("pages") == 0


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=serve_input(), pick=st.data())
def test_serve_takes_any_frames_and_answers_in_one_line(pair, data, pick):
    if pick.draw(st.booleans()):  # a genuine batch with one field made up
        change = dict(genuine(pair)[0])
        field = pick.draw(st.sampled_from(sorted(change)))
        if field == "d":
            change["d"] = {**change["d"], pick.draw(KEYS): pick.draw(VALUES)}
        else:
            change[field] = pick.draw(VALUES)
        data = frame(hello()) + frame({"t": "batch", "last": 1, "changes": [change]})
    config = str(pair.config_path("EDGE02"))
    code, err, _out = run_main(["--config", config, "serve", "--stdio", "--peer", "EDGE01"], data)
    one_line(err, code, (0, 2, 3, 4))


# -- the local disk ------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB filesystem (tmpfs) as EDGE02's data disk."""
    mount = tmp_path / "edge02"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                         capture_output=True, text=True)  # fmt: skip
    if res.returncode != 0:
        pytest.fail(f"cannot mount a small filesystem (the tests run as root): {res.stderr}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path, spare: int = 0) -> None:
    """Fill the filesystem of ``path``, then give ``spare`` bytes back."""
    with open(path, "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 4096)
    os.truncate(path, max(0, path.stat().st_size - spare))


def test_a_full_disk_is_exit_5_nothing_half_written_and_writes_go_on_once_freed(
    tmp_path, redis_server, small_disk
):
    redis_server.client().flushall()
    farm = Farm(tmp_path, redis_server.url, PAIR)
    try:
        first = farm.put("EDGE02", title="before the disk filled")
        for i in range(20):
            farm.put("EDGE01", title=f"to pull {i}", body="b" * 20_000)
        held = farm.store("EDGE02").held()
        farm.stores.pop("EDGE02").close()
        fill(small_disk / "filler")  # full: the database cannot even open its WAL
        put = farm.cli("EDGE02", "put", "pages", "--data", json.dumps({"body": "x" * 100_000}))
        assert "local storage" in one_line(put.stderr, put.returncode, (5,))
        fill(small_disk / "filler", spare=150_000)  # room to open, not for 400 kB of pulls
        pull = farm.cli("EDGE02", "pull", "EDGE01")
        assert "local storage" in one_line(pull.stderr, pull.returncode, (5,))

        (small_disk / "filler").unlink()
        assert farm.store("EDGE02").held() == held  # nothing half-written
        assert farm.store("EDGE02").get("pages", first["id"])["title"] == first["title"]
        assert farm.cli("EDGE02", "put", "pages", "--data", '{"title": "after"}').returncode == 0
        report = farm.sync("EDGE02", "pull", "EDGE01")
        assert farm.store("EDGE02").rows("pages") == 22 and report["applied"] == 20
    finally:
        farm.close()


def test_a_disk_filled_under_a_long_lived_writer_leaves_its_chain_whole(
    tmp_path, redis_server, small_disk
):
    """Issue 23: one Store kept open (as the HTTP face keeps its writer's) writes
    until the disk is full, then again once it is freed; a peer pulling with
    proofs checked takes every change, and every acknowledged write."""
    redis_server.client().flushall()
    farm = Farm(tmp_path, redis_server.url, PAIR)
    try:
        edge = farm.store("EDGE02")
        acked = [edge.put("pages", {"title": f"before {i}"}) for i in range(3)]
        fill(small_disk / "filler", spare=200_000)
        refused = []
        for i in range(100):
            try:
                acked.append(edge.put("pages", {"title": f"filling {i}", "body": "x" * 30_000}))
            except sqlite3.OperationalError as exc:
                refused.append(str(exc))
                assert not edge.db.conn.in_transaction  # nothing of it stays open
                if len(refused) == 3:
                    break
        assert refused == ["database or disk is full"] * 3, refused
        fill(small_disk / "filler2")  # what the refused writes left, too
        big = json.dumps({"title": "refused", "body": "x" * 100_000})
        full = farm.cli("EDGE02", "put", "pages", "--data", big)  # a process of its own
        assert "disk is full" in one_line(full.stderr, full.returncode, (5,))

        (small_disk / "filler").unlink()
        (small_disk / "filler2").unlink()
        acked += [edge.put("pages", {"title": f"after {i}"}) for i in range(3)]
        after = farm.cli("EDGE02", "put", "pages", "--data", '{"title": "after, by the CLI"}')
        assert after.returncode == 0, after.stderr
        acked.append(json.loads(after.stdout))

        report = farm.sync("EDGE01", "pull", "EDGE02")  # proofs checked
        peer = farm.store("EDGE01")
        assert report["applied"] == len(acked) == edge.held()["EDGE02"]
        assert [peer.get("pages", w["id"])["title"] for w in acked] == [w["title"] for w in acked]
        assert peer.digest() == edge.digest()
    finally:
        farm.close()


class _FailingCommit:
    """A connection's ``execute`` whose next COMMIT fails as SQLite may fail one
    on a full disk: SQLITE_FULL with the transaction left open ("may or may not
    roll back automatically")."""

    def __init__(self, execute):
        self._execute = execute
        self.armed = True

    def __call__(self, sql, *args):
        if sql == "COMMIT" and self.armed:
            self.armed = False
            raise sqlite3.OperationalError("database or disk is full")
        return self._execute(sql, *args)


def test_a_commit_that_fails_leaves_no_trace_in_the_chain(tmp_path, redis_server):
    """A COMMIT that fails but leaves its transaction open: the store rolls it
    back, so the failed change's chain head, own row and sequence are gone,
    later writes go on from the last committed change and a peer takes them."""
    redis_server.client().flushall()
    farm = Farm(tmp_path, redis_server.url, PAIR)
    try:
        edge = farm.store("EDGE02")
        acked = [edge.put("pages", {"title": "before"})]
        state = edge.log.signing_state(), edge.log.clock()
        edge.db.execute = _FailingCommit(edge.db.execute)
        with pytest.raises(sqlite3.OperationalError, match="disk is full"):
            edge.put("pages", {"title": "never written"})
        assert not edge.db.conn.in_transaction
        assert (edge.log.signing_state(), edge.log.clock()) == state
        assert edge.rows("pages") == 1 and edge.max_seq() == 1
        acked += [edge.put("pages", {"title": f"after {i}"}) for i in range(3)]

        report = farm.sync("EDGE01", "pull", "EDGE02")
        peer = farm.store("EDGE01")
        assert report["applied"] == 4
        assert [peer.get("pages", w["id"])["title"] for w in acked] == [w["title"] for w in acked]
        assert peer.rows("pages") == 4 and peer.digest() == edge.digest()
    finally:
        farm.close()


# -- Redis dying mid-push ------------------------------------------------------


def test_redis_gone_mid_push_is_exit_4_and_the_next_push_delivers_everything(tmp_path, own_redis):
    farm = Farm(tmp_path, own_redis.url, PAIR, batch_size=10)
    try:
        for i in range(3000):
            farm.put("EDGE01", title=f"p{i}")
        farm.store("EDGE01").flush()
        push = subprocess.Popen(
            [sys.executable, "-m", "edgesync", "--config", str(farm.config_path("EDGE01")),
             "push", "EDGE02"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        receiver = farm.store("EDGE02")
        deadline = time.monotonic() + 60
        while receiver.rows("pages") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        own_redis.stop()
        _out, err = push.communicate(timeout=60)
        assert "redis unavailable mid-session" in one_line(err, push.returncode, (4,))
        assert 0 < receiver.rows("pages") < 3000
        farm.stores.pop("EDGE01").close()
        farm.sync("EDGE01", "push", "EDGE02")  # Redis still down: from the SQLite log
        assert receiver.rows("pages") == 3000
    finally:
        farm.close()


# -- peers that stall ----------------------------------------------------------

# Stand-ins for a peer's `serve`, run by the real sshd as the key's forced command.
# Takes the connection and never answers (it reads until the caller hangs up,
# then ends: no stalled peer outlives its test).
MUTE = "import sys; sys.stdin.buffer.read()"
WELCOME_THEN_MUTE = textwrap.dedent("""
    import json, sys, time
    n = int.from_bytes(sys.stdin.buffer.read(4), "big"); sys.stdin.buffer.read(n)
    w = json.dumps({"t": "welcome", "v": 2, "node": "EDGE02", "clock": int(time.time() * 1000),
                    "yours": {}, "held": {}}).encode()
    sys.stdout.buffer.write(len(w).to_bytes(4, "big") + w); sys.stdout.buffer.flush()
    sys.stdin.buffer.read()  # mute until the caller hangs up
""")
TRICKLE = textwrap.dedent("""
    import json, sys, time
    n = int.from_bytes(sys.stdin.buffer.read(4), "big"); sys.stdin.buffer.read(n)
    w = json.dumps({"t": "welcome", "v": 2, "node": "EDGE02", "clock": int(time.time() * 1000),
                    "yours": {}, "log": "x"}).encode()
    sys.stdout.buffer.write(len(w).to_bytes(4, "big") + w + (10**6).to_bytes(4, "big"))
    while True:  # a frame that never ends, a byte at a time: busy, never idle
        sys.stdout.buffer.write(b" "); sys.stdout.buffer.flush(); time.sleep(0.2)
""")


@pytest.fixture
def stalling(tmp_path, make_farm, sshd):
    """EDGE01 reaches EDGE02 over a real sshd whose forced command is a script
    (``stalling.peer(SCRIPT)`` writes it)."""
    farm = make_farm(PAIR, connect_timeout_s=2, idle_timeout_s=2, session_timeout_s=4)
    script = tmp_path / "peer.py"
    farm.over_ssh(sshd, "EDGE01", "EDGE02", command=f"{sys.executable} {script}")
    farm.peer = script.write_text
    return farm


@pytest.mark.parametrize(
    ("script", "action", "words"),
    [
        (MUTE, "push", "no answer within 2 s of connecting (connect_timeout_s)"),
        (WELCOME_THEN_MUTE, "push", "no progress for 2 s (idle_timeout_s)"),
        (TRICKLE, "pull", "the session ran past its 4 s (session_timeout_s)"),
    ],
    ids=["mute", "welcome then mute", "trickle"],
)
def test_a_stalled_peer_ends_the_session_at_its_deadline_naming_peer_and_limit(
    stalling, script, action, words
):
    stalling.put("EDGE01", title="waiting")
    stalling.peer(script)
    started = time.monotonic()
    res = stalling.cli("EDGE01", action, "EDGE02", timeout=60)
    took = time.monotonic() - started
    err = one_line(res.stderr, res.returncode, (4,))
    assert f"sync with EDGE02 failed: {words}" in err, err
    assert took < 20, took  # not a speed target: a hang would be 3600 s


BAD_WELCOME = textwrap.dedent("""
    import json, sys, time
    n = int.from_bytes(sys.stdin.buffer.read(4), "big"); sys.stdin.buffer.read(n)
    w = json.dumps({"t": "welcome", "v": 2, "node": "EDGE02", "clock": "soon", "yours": {},
                    "held": {}}).encode()
    sys.stdout.buffer.write(len(w).to_bytes(4, "big") + w); sys.stdout.buffer.flush()
""")
BAD_ACK = textwrap.dedent("""
    import json, sys, time
    def read():
        n = int.from_bytes(sys.stdin.buffer.read(4), "big"); return sys.stdin.buffer.read(n)
    def send(obj):
        w = json.dumps(obj).encode()
        sys.stdout.buffer.write(len(w).to_bytes(4, "big") + w); sys.stdout.buffer.flush()
    read()
    send({"t": "welcome", "v": 2, "node": "EDGE02", "clock": int(time.time() * 1000),
          "yours": {}, "held": {}})
    read()
    send({"t": "ack", "applied": "many"})
""")
HUGE_LAST = textwrap.dedent("""
    import json, sys, time
    n = int.from_bytes(sys.stdin.buffer.read(4), "big"); sys.stdin.buffer.read(n)
    for msg in ({"t": "welcome", "v": 2, "node": "EDGE02", "clock": int(time.time() * 1000),
                 "yours": {}, "log": "x"}, {"t": "done", "last": 2**64, "at": None}):
        w = json.dumps(msg).encode()
        sys.stdout.buffer.write(len(w).to_bytes(4, "big") + w)
    sys.stdout.buffer.flush()
""")


@pytest.mark.parametrize(
    ("script", "action"),
    [(BAD_WELCOME, "push"), (BAD_ACK, "push"), (HUGE_LAST, "pull")],
    ids=["welcome clock of the wrong type", "ack of the wrong type", "last past 2**53"],
)
def test_a_hostile_peer_answering_a_caller_gets_one_line_exit_2(stalling, script, action):
    stalling.put("EDGE01", title="to send")
    stalling.peer(script)
    res = stalling.cli("EDGE01", action, "EDGE02", timeout=60)
    assert "malformed frame" in one_line(res.stderr, res.returncode, (2,))


def test_serve_whose_caller_closed_its_end_is_one_line_exit_4(pair):
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgesync", "--config", str(pair.config_path("EDGE02")),
         "serve", "--stdio", "--peer", "EDGE01"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stdout.close()  # the caller is gone
    proc.stdin.write(frame(hello(action="pull", held={}, cursor=0, log=None)))
    proc.stdin.close()
    err = proc.stderr.read()
    proc.wait(timeout=30)
    assert "broke" in one_line(err, proc.returncode, (4,))


def test_a_database_locked_by_another_process_cannot_hold_serve_past_its_deadline(make_farm, say):
    farm = make_farm(PAIR, session_timeout_s=3)
    farm.put("EDGE01", title="x")
    bodies = [b for _s, b, _o, _n in farm.store("EDGE01").changes_after(0, 10)]
    holder = sqlite3.connect(farm.store("EDGE02").config.db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        started = time.monotonic()
        res = subprocess.run(
            [sys.executable, "-m", "edgesync", "--config", str(farm.config_path("EDGE02")),
             "serve", "--stdio", "--peer", "EDGE01"],
            input=frame(hello()) + frame(protocol.batch_frame(bodies, 1)),
            capture_output=True, timeout=120,
        )  # fmt: skip
        took = time.monotonic() - started
    finally:
        holder.rollback()
    err = one_line(res.stderr, res.returncode, (4,))
    assert "session_timeout_s" in err, err
    say(f"serve behind a held lock ended after {took:.1f} s (session_timeout_s = 3)")
    assert took < 30, took  # not a speed target: SQLite alone would wait 60 s


def test_serve_ends_a_session_whose_caller_goes_quiet(tmp_path, redis_server):
    redis_server.client().flushall()
    farm = Farm(tmp_path, redis_server.url, PAIR, idle_timeout_s=1)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgesync", "--config", str(farm.config_path("EDGE02")),
             "serve", "--stdio", "--peer", "EDGE01"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        proc.stdin.write(frame(hello()))
        proc.stdin.flush()  # ... and then nothing, the pipe held open
        err = proc.stderr.read()
        proc.wait(timeout=30)
        assert "no progress for 1 s (idle_timeout_s)" in one_line(err, proc.returncode, (4,))
        proc.stdin.close()
        proc.stdout.close()
    finally:
        farm.close()


# -- frames built to exhaust a receiver ----------------------------------------


# Runs argv[2:] and writes its peak RSS (kB) to argv[1]. A small process of its
# own, because a child's peak counts the memory of the process it was forked from.
PEAK = textwrap.dedent("""
    import os, sys
    pid = os.fork()
    if pid == 0:
        os.execv(sys.argv[2], sys.argv[2:])
    _pid, status, usage = os.wait4(pid, 0)
    open(sys.argv[1], "w").write(str(usage.ru_maxrss))
    sys.exit(os.waitstatus_to_exitcode(status))
""")


def serve_peak(farm, data: bytes) -> tuple[subprocess.CompletedProcess, float]:
    """Feed ``data`` to EDGE02's serve; its result and its peak RSS in MB."""
    peak = farm.root / "peak"
    res = subprocess.run(
        [sys.executable, "-c", PEAK, str(peak), sys.executable, "-m", "edgesync",
         "--config", str(farm.config_path("EDGE02")), "serve", "--stdio", "--peer", "EDGE01"],
        input=data, capture_output=True, timeout=120,
    )  # fmt: skip
    return res, int(peak.read_text()) / 1024


def batch_of(items: bytes) -> bytes:
    return frame(b'{"t":"batch","last":1,"changes":[' + items + b"]}")


def test_hostile_frames_are_refused_before_they_are_applied_and_cost_under_200_mb(pair, say):
    tiny = b'{"o":"EDGE01","n":1,"h":"x","t":"pages","i":"x","k":"del","d":{},"p":"x","s":"x"}'
    room = protocol.MAX_FRAME - 64
    cases = {
        "a 63 MB frame": (63 * 2**20).to_bytes(4, "big") + b"{" * 1000,
        "460,000 tiny changes": batch_of(b",".join([tiny] * 460_000)),
        "a frame of empty objects": batch_of(b",".join([b"{}"] * (room // 3))),
        "a frame of empty lists": batch_of(b",".join([b"[]"] * (room // 3))),
        "a frame of floats": batch_of(b",".join([b"1.5"] * (room // 4))),
        "a frame of short strings": batch_of(b",".join([b'"ab"'] * (room // 5))),
        "a frame of big integers": batch_of(b",".join([b"123456789012"] * (room // 13))),
        "10,001 changes": batch_of(b",".join([tiny] * 10_001)),
    }
    for why, body in cases.items():
        res, peak = serve_peak(pair, frame(hello()) + body)
        err = one_line(res.stderr, res.returncode, (2,))
        say(f"{why}: exit {res.returncode}, receiver peak {peak:.0f} MB: {err.strip()[:90]}")
        assert peak < 200, (why, peak)
    assert pair.store("EDGE02").rows("pages") == 0


# -- the outbox ----------------------------------------------------------------


def test_a_converged_fleet_has_an_empty_outbox_and_a_removed_target_loses_its_group(
    tmp_path, redis_server
):
    redis_server.client().flushall()
    farm = Farm(tmp_path, redis_server.url, SEVEN)
    try:
        for name in ("EDGE01", "EDGE03", "NODE01", "MASTER01"):
            for i in range(3):
                farm.put(name, title=f"{name} {i}")
        hosts = [{"name": n, "role": r, "farm": f, "trusted": list(t)}
                 for n, (r, f, t) in SEVEN.items()]  # fmt: skip
        for _ in range(2):  # the second round moves the cursors past what the first brought
            for link in topology.links(hosts):  # every timer's link, in order
                farm.sync(link["initiator"], link["action"], link["target"])
        assert len(set(farm.digests().values())) == 1
        r = redis_server.client()
        for name in SEVEN:
            status = farm.store(name).status()
            assert status["outbox_pending"] == 0, (name, status)
            assert status["outbox_stream"] == 0, (name, status)
        assert farm.store("MASTER01").status()["push_targets"] == []  # pushes on no timer
        assert not r.exists("edgesync:MASTER01:changes")
        groups = {g["name"].decode() for g in r.xinfo_groups("edgesync:NODE01:changes")}
        assert groups == {"MASTER01", "EDGE01", "EDGE02"}

        # NODE01 stops pushing to EDGE02 (the topology changed): its group goes.
        farm.stores.pop("NODE01").close()
        cfg = farm.config_path("NODE01")
        text = cfg.read_text()
        cut = text.index("[peers.EDGE02]")
        end = text.index("\n\n", cut)
        cfg.write_text(text[:cut] + text[cut:end].replace("\npush = true", "") + text[end:])
        assert farm.store("NODE01").status()["push_targets"] == ["EDGE01", "MASTER01"]
        farm.put("NODE01", title="after the change")
        farm.store("NODE01").flush()
        groups = {g["name"].decode() for g in r.xinfo_groups("edgesync:NODE01:changes")}
        assert groups == {"MASTER01", "EDGE01"}
    finally:
        farm.close()


TOO_NEW_ERROR = textwrap.dedent("""
    import json, sys
    n = int.from_bytes(sys.stdin.buffer.read(4), "big"); sys.stdin.buffer.read(n)
    w = json.dumps({"t": "error", "msg": "EDGE02 has no sync protocol in common",
                    "speaks": [5, 6]}).encode()
    sys.stdout.buffer.write(len(w).to_bytes(4, "big") + w); sys.stdout.buffer.flush()
""")
TOO_NEW_WELCOME = textwrap.dedent("""
    import json, sys, time
    n = int.from_bytes(sys.stdin.buffer.read(4), "big"); sys.stdin.buffer.read(n)
    w = json.dumps({"t": "welcome", "v": 7, "node": "EDGE02", "clock": int(time.time() * 1000),
                    "yours": {}, "held": {}}).encode()
    sys.stdout.buffer.write(len(w).to_bytes(4, "big") + w); sys.stdout.buffer.flush()
""")


@pytest.mark.parametrize(
    ("script", "theirs"),
    [(TOO_NEW_ERROR, "5-6"), (TOO_NEW_WELCOME, "7")],
    ids=["refuses the hello", "answers in a version not offered"],
)
def test_a_peer_too_new_is_refused_by_the_caller_naming_both_versions(stalling, script, theirs):
    stalling.put("EDGE01", title="to send")
    stalling.peer(script)
    res = stalling.cli("EDGE01", "push", "EDGE02", timeout=60)
    err = one_line(res.stderr, res.returncode, (3,))
    assert err.startswith(f"refused: EDGE02 speaks sync protocol {theirs}; this agent speaks 2-4")
    links = json.loads(stalling.cli("EDGE01", "status", "--json").stdout)["links"]
    assert links[0]["sessions_failed"] == 1 and "speaks sync protocol" in links[0]["last_error"]


def test_what_a_peer_sends_reaches_the_link_history_as_one_printable_line(pair):
    edge01 = pair.store("EDGE01")
    later = hlc.encode(hlc.wall_ms() + 10**9, 0, "EDGE01")  # far in the future
    hostile = {"o": "\x1b[2J\rEDGE01 OK\u202eevil\x00", "n": 1, "h": later,
               "t": "pages", "i": "x", "k": "new", "d": {}}  # fmt: skip
    data = frame(hello(action="push")) + frame({"t": "batch", "last": 1, "changes": [hostile]})
    res = subprocess.run(
        [sys.executable, "-m", "edgesync", "--config", str(pair.config_path("EDGE02")),
         "serve", "--stdio", "--peer", "EDGE01"],
        input=data + frame({"t": "done"}), capture_output=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    links = json.loads(pair.cli("EDGE02", "status", "--json").stdout)["links"]
    error = links[0]["last_error"]
    assert not any(c in error for c in "\x1b\r\x00\u202e"), error
    assert "\\x1b" in error and "\\u202e" in error
    assert edge01.rows("pages") == 0


def test_backups_refuse_what_is_not_a_database_and_leave_nothing_when_they_fail(pair, tmp_path):
    res = pair.cli("EDGE01", "backup", str(tmp_path))
    assert "is a directory" in one_line(res.stderr, res.returncode, (2,))
    first = json.loads(pair.cli("EDGE01", "backup").stdout)["backup"]
    second = json.loads(pair.cli("EDGE01", "backup").stdout)["backup"]  # the same second
    assert first != second
    missing = pair.config_path("EDGE01").with_name("missing.toml")
    missing.write_text(pair.config_path("EDGE01").read_text().replace('"edge01"', '"nowhere"'))
    for args in (("backup",), ("migrate", "--check"), ("migrate",)):
        res = subprocess.run([sys.executable, "-m", "edgesync", "--config", str(missing), *args],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert "not initialised" in one_line(res.stderr, res.returncode, (2,))
    assert not (missing.parent / "nowhere").exists()
    # A backup that cannot be written (a file size limit standing in for a full disk).
    target = tmp_path / "full" / "copy.db"
    for n in range(400):
        pair.put("EDGE01", title="x" * 2000 + str(n))
    res = subprocess.run(
        ["sh", "-c", f'ulimit -f 100; exec "$0" -m edgesync --config {pair.config_path("EDGE01")}'
         f" backup {target}", sys.executable],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    one_line(res.stderr, res.returncode, (5,))
    assert sorted(p.name for p in target.parent.iterdir()) == []


def test_backup_keep_removes_all_but_the_newest_of_its_own_backups(pair, tmp_path):
    res = pair.cli("EDGE01", "backup", "--keep", "0")
    assert "--keep 0: keep at least 1 backup" in one_line(res.stderr, res.returncode, (2,))
    made = [json.loads(pair.cli("EDGE01", "backup").stdout)["backup"] for _ in range(3)]
    where = Path(made[0]).parent
    (where / "notes.txt").write_text("an operator's file stays")
    last = json.loads(pair.cli("EDGE01", "backup", "--keep", "2").stdout)
    assert last["pruned"] == made[:2]
    assert sorted(p.name for p in where.iterdir()) == sorted(
        [Path(made[2]).name, Path(last["backup"]).name, "notes.txt"]
    )
