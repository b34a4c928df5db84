"""The store as a library: applying changes from elsewhere, slugs, the outbox."""

import json
import multiprocessing
import random
import threading
import time

import pytest
from farm import resign
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesync import hlc
from edgesync.errors import BadBatch, NotFound
from edgesync.ids import new_id


def stream_seqs(entries):
    """The log sequences a Redis stream's entries cover, sorted, with repeats."""
    return sorted(s for _i, f in entries for s in range(int(f[b"lo"]), int(f[b"hi"]) + 1))


def write_until_the_stream_has_the_log(node, server, seconds: float = 10.0) -> None:
    """Keep writing (as users do) until the relay, retrying Redis on its own
    schedule, has put every logged change on the stream; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        node.store.put("pages", {"title": "after"})
        node.store.flush()
        have = set(stream_seqs(server.client().xrange("edgesync:EDGE01:changes")))
        if have >= set(range(1, node.store.max_seq() + 1)):
            return
        assert time.monotonic() < deadline, f"stream still lacks {node.store.max_seq() - len(have)}"
        time.sleep(0.1)


def log_of(node):
    """Every change in a node's log, as sent to peers."""
    return [json.loads(body) for _s, body, _o, _n in node.store.changes_after(0, 10**9)]


def test_a_write_logs_one_change_stamped_with_the_clock(make_node):
    node = make_node("EDGE01")
    page = node.store.put("pages", {"title": "Hello", "body": "b"})
    (change,) = log_of(node)
    assert change["o"] == "EDGE01" and change["n"] == 1 and change["i"] == page["id"]
    assert change["k"] == "new" and change["d"]["title"] == "Hello"
    assert hlc.is_valid(change["h"])
    node.store.put("pages", {"id": page["id"], "body": "c"})
    second = log_of(node)[1]
    assert second["d"] == {"body": "c"} and second["h"] > change["h"]  # only what changed


def test_changes_from_a_peer_apply_once_and_enter_the_log(make_node):
    a, b = make_node("EDGE01"), make_node("EDGE02")
    for i in range(5):
        a.store.put("pages", {"section": "s", "title": f"t{i}"})
    batch = log_of(a)
    first = b.store.apply_changes(batch)
    again = b.store.apply_changes(batch)
    assert (first.applied, first.skipped) == (5, 0)
    assert (again.applied, again.skipped) == (0, 5)
    assert b.store.digest() == a.store.digest()
    assert [c["n"] for c in log_of(b)] == [1, 2, 3, 4, 5]  # ready to forward
    assert b.store.held() == {"EDGE01": 5}


def test_concurrent_edits_to_different_columns_are_both_kept(make_node):
    a, b, m = make_node("EDGE01"), make_node("EDGE02"), make_node("MASTER01", role="master")
    page = a.store.put("pages", {"title": "T", "body": "B"})
    b.store.apply_changes(log_of(a))
    a.store.put("pages", {"id": page["id"], "title": "T from a"})
    b.store.put("pages", {"id": page["id"], "body": "B from b"})
    m.store.apply_changes(log_of(b))
    m.store.apply_changes(log_of(a))
    got = m.store.get("pages", page["id"])
    assert (got["title"], got["body"]) == ("T from a", "B from b")


def test_the_later_stamp_wins_a_column_and_counts_a_conflict(make_node):
    a, b = make_node("EDGE01"), make_node("EDGE02")
    page = a.store.put("pages", {"title": "T"})
    b.store.apply_changes(log_of(a))
    a.store.put("pages", {"id": page["id"], "title": "older"})
    b.store.put("pages", {"id": page["id"], "title": "newer"})
    result = b.store.apply_changes(log_of(a))
    assert result.conflicts == 1
    assert b.store.get("pages", page["id"])["title"] == "newer"
    a.store.apply_changes(log_of(b))
    assert a.store.get("pages", page["id"])["title"] == "newer"


def test_a_delete_is_a_tombstone_that_wins_over_later_edits(make_node):
    a, b = make_node("EDGE01"), make_node("EDGE02")
    page = a.store.put("pages", {"title": "T"})
    b.store.apply_changes(log_of(a))
    a.store.delete("pages", page["id"])
    b.store.put("pages", {"id": page["id"], "body": "late edit"})
    a.store.apply_changes(log_of(b))
    b.store.apply_changes(log_of(a))
    assert a.store.rows("pages") == b.store.rows("pages") == 0
    assert a.store.digest() == b.store.digest()


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda c: c.update(t="nope"), "unknown table 'nope'"),
        (lambda c: c["d"].update(colour=1), "unknown column pages.colour"),
        (lambda c: c["d"].update(title=[1]), "not a scalar"),
        (lambda c: c.update(i="42"), "bad record id"),
        (lambda c: c.update(h="yesterday"), "bad clock stamp"),
        (lambda c: c.update(n=0), "bad origin sequence"),
        (lambda c: c.update(k="upsert"), "bad kind"),
        (lambda c: c.pop("d"), "wrong keys"),
        (lambda c: c["d"].update(body="x" * 3000), "value too large"),
    ],
)
def test_a_batch_with_one_malformed_change_is_rejected_whole(make_node, mutate, why):
    a, b = make_node("EDGE01"), make_node("EDGE02", max_value_bytes=2000)
    for i in range(4):
        a.store.put("pages", {"title": f"t{i}"})
    batch = log_of(a)
    mutate(batch[2])
    with pytest.raises(BadBatch, match=why):
        b.store.apply_changes(batch)
    assert b.store.rows("pages") == 0 and b.store.max_seq() == 0


def test_a_slug_clash_is_redrawn_locally(make_node):
    node = make_node("EDGE01")
    first = node.store.put("pages", {"section": "s", "title": "same"})
    code = first["id"].split("-")[2]
    # Force a second record to want the same slug: give it the first one's title
    # and then rename it to clash exactly.
    second = node.store.put("pages", {"section": "s", "title": "other"})
    renamed = node.store.put("pages", {"id": second["id"], "title": "same"})
    assert renamed["slug"] != first["slug"]
    assert renamed["slug"].startswith("s-same-")
    assert node.store.get_by_slug("pages", first["slug"])["id"] == first["id"]
    assert code.lower() in first["slug"]


def test_records_from_two_edges_wanting_one_slug_resolve_alike_everywhere(make_node):
    a, b, m = make_node("EDGE01"), make_node("EDGE02"), make_node("MASTER01", role="master")
    pa = a.store.put("pages", {"section": "s", "title": "clash"})
    pb = b.store.put("pages", {"section": "s", "title": "clash"})
    # Make b's record want exactly a's slug, as two edges could by chance.
    code = pa["id"].split("-")[2]
    change = log_of(b)[0]
    change["d"]["_code"] = code
    change = resign(change, b.store)
    b2 = make_node("EDGE03")
    b2.store.apply_changes([change])
    m.store.apply_changes([*log_of(a), change])
    b2.store.apply_changes(log_of(a))
    small, big = sorted([pa["id"], pb["id"]])
    for store in (m.store, b2.store):
        assert store.get_by_slug("pages", pa["slug"])["id"] == small
        other = store.get("pages", big)["slug"]
        assert other.startswith(pa["slug"] + "-") and other != pa["slug"]
    assert m.store.digest() == b2.store.digest()
    # When the holder is deleted, the other record takes the slug on every node.
    holder = a if small == pa["id"] else b
    holder.store.delete("pages", small)
    deletion = log_of(holder)[-1]
    for store in (m.store, b2.store):
        store.apply_changes([deletion])
        assert store.get_by_slug("pages", pa["slug"])["id"] == big
    assert m.store.digest() == b2.store.digest()


OPS = st.lists(
    st.tuples(
        st.sampled_from(["EDGE01", "EDGE02", "EDGE03"]),
        st.sampled_from(["create", "title", "body", "delete"]),
        st.integers(0, 5),
        st.text(max_size=8),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=OPS, seed=st.integers(0, 2**32))
def test_any_order_and_any_duplication_of_changes_gives_one_digest(make_node, ops, seed):
    nodes = {n: make_node(n) for n in ("EDGE01", "EDGE02", "EDGE03")}
    known: list[str] = []
    for name, op, pick, text in ops:
        store = nodes[name].store
        if op == "create" or not known:
            known.append(store.put("pages", {"section": "s", "title": text})["id"])
            continue
        rid = known[pick % len(known)]
        try:
            store.get("pages", rid)
        except NotFound:  # not here yet, or deleted: learn it from the others first
            for other in nodes.values():
                store.apply_changes(log_of(other))
        try:
            if op == "delete":
                store.delete("pages", rid)
            else:
                store.put("pages", {"id": rid, op: text})
        except NotFound:
            pass  # deleted meanwhile
    everything = [c for n in nodes.values() for c in log_of(n)]
    rng = random.Random(seed)
    digests = set()
    for k in range(3):
        target = make_node(f"MASTER0{k + 1}", role="master")
        shuffled = everything + rng.sample(everything, len(everything) // 2)
        rng.shuffle(shuffled)
        for i in range(0, len(shuffled), 7):
            target.store.apply_changes(shuffled[i : i + 7])
        digests.add(target.store.digest())
        target.store.close()
    assert len(digests) == 1
    # cleanup the per-example databases
    for n in nodes.values():
        n.store.close()


def _writer(config_path, count, queue):
    from edgesync.agent import open_store

    store = open_store(config_path)
    for i in range(count):
        store.put("pages", {"title": f"p{i}"})
    store.close()
    queue.put("done")


# EDGE01 pushes to EDGE02 on a schedule: its outbox keeps a stream for it.
PUSHES = {"EDGE02": {"url": "local:edge02.toml", "role": "edge", "farm": "a", "push": True}}


def test_two_processes_writing_one_database_both_succeed(make_node, redis_server):
    node = make_node("EDGE01", peers=PUSHES)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(node.config_path, 300, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert node.store.rows("pages") == 600
    assert node.store.held() == {"EDGE01": 600}
    stream = redis_server.client().xrange("edgesync:EDGE01:changes")
    # Every committed change is on the stream. A change may be there twice: a
    # process catching the stream up from the log can queue another process's
    # change between that one's commit and its own XADD. Pushers read by seq and
    # skip a repeat, so it is sent once (the push tests count what arrives).
    assert sorted(set(stream_seqs(stream))) == list(range(1, 601))


def test_writes_survive_redis_going_down_and_the_stream_catches_up(make_node, own_redis):
    node = make_node("EDGE01", redis_url=own_redis.url, peers=PUSHES)
    warnings = []
    node.store.warn = warnings.append
    node.store.put("pages", {"title": "before"})
    own_redis.stop()
    for i in range(5):
        node.store.put("pages", {"title": f"while down {i}"})
    node.store.flush()
    assert node.store.rows("pages") == 6
    assert warnings and "redis unavailable" in warnings[0]
    assert node.store.status()["redis"] == "down"
    cli = node.cli("put", "pages", "--data", '{"title": "cli while down"}')
    assert cli.returncode == 0 and "warning: redis unavailable" in cli.stderr
    own_redis.start()  # a fresh, empty Redis: it lost everything
    write_until_the_stream_has_the_log(node, own_redis)
    assert node.store.status()["redis"] == "ok"
    stream = own_redis.client().xrange("edgesync:EDGE01:changes")
    assert stream_seqs(stream) == list(range(1, node.store.max_seq() + 1))  # once each
    assert node.store.max_seq() >= 8
    assert node.store.relay.gap_from() is None


def test_a_gap_in_the_stream_is_filled_without_duplicates(make_node, own_redis):
    node = make_node("EDGE01", redis_url=own_redis.url, peers=PUSHES)
    warnings = []
    node.store.warn = warnings.append
    node.store.put("pages", {"title": "one"})
    # Redis keeps its data (and the stream's epoch) but refuses us: a new password,
    # and our connections dropped, so that they must log in again.
    admin = own_redis.client()
    admin.config_set("requirepass", "locked-out")
    admin.client_kill_filter(_type="normal", skipme=True)
    node.store.put("pages", {"title": "two"})
    node.store.put("pages", {"title": "three"})
    node.store.flush()
    assert warnings and "redis unavailable" in warnings[0]
    import redis as redis_lib

    redis_lib.Redis(port=own_redis.port, password="locked-out").config_set("requirepass", "")
    write_until_the_stream_has_the_log(node, own_redis)
    stream = own_redis.client().xrange("edgesync:EDGE01:changes")
    assert stream_seqs(stream) == list(range(1, node.store.max_seq() + 1))  # once each


def test_ids_are_global_not_rowids(make_node):
    a = make_node("EDGE01", location="PAR")
    page = a.store.put("pages", {"title": "x"})
    assert page["id"].startswith("EDGE01-PAR-")
    assert "rowid" not in json.dumps(log_of(a))
    assert new_id("EDGE01", "PAR") != page["id"]


def test_a_session_applying_batches_checkpoints_beside_its_commits(make_node):
    """Store.applying: a thread moves the WAL into the database while the
    session applies; the WAL stays bounded (it starts over at the commits'
    own checkpoints); nothing is lost."""
    a, b = make_node("EDGE01"), make_node("EDGE02")
    for i in range(300):
        a.store.put("pages", {"section": "s", "title": f"t{i}", "body": "x" * 2000})
    batch = log_of(a)
    db = b.store.db
    size = b.store.config.db_path.stat().st_size
    with b.store.applying():
        for i in range(0, len(batch), 50):
            b.store.apply_changes(batch[i : i + 50])
        # 600 kB is far below an autocheckpoint: the database file grows only
        # by the thread's checkpoints.
        deadline = time.monotonic() + 10
        while b.store.config.db_path.stat().st_size < size + 500_000:
            assert time.monotonic() < deadline, "no checkpoint moved the WAL into the database"
            time.sleep(0.05)
    assert db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 20_000
    assert b.store.digest() == a.store.digest()
    with pytest.raises(BadBatch), b.store.applying():  # a failing session ends its thread too
        b.store.apply_changes([{"o": "nonsense"}])
    assert not [t for t in threading.enumerate() if t.name == "edgesync-checkpoint"]


def test_the_wal_stays_bounded_through_a_long_session(make_node):
    """However the thread's checkpoints fall between the session's commits, the
    WAL starts over at the commits' own checkpoints: a catch-up of any length
    cannot fill the disk with WAL."""
    a, b = make_node("EDGE01"), make_node("EDGE02")
    for i in range(1200):
        a.store.put("pages", {"section": "s", "title": f"t{i}", "body": "x" * 2000})
    batch = log_of(a)
    b.store.db.execute("PRAGMA wal_autocheckpoint=100")  # 400 kB, as 20,000 pages are 80 MB
    wal = b.store.config.db_path.with_name(b.store.config.db_path.name + "-wal")
    largest = 0
    with b.store.applying():
        for i in range(0, len(batch), 20):
            b.store.apply_changes(batch[i : i + 20])
            largest = max(largest, wal.stat().st_size)
    # 2.4 MB of records (and their log) went through; the WAL stays near its 100 pages.
    assert largest < 1_500_000, f"the WAL grew to {largest} bytes"
    assert b.store.digest() == a.store.digest()
