"""Push and pull sessions: the caller's side (``push``/``pull``) and the
receiver's (``serve``).

Cursors move only after the other side has committed: a pusher's cursor (its
own log position for the peer) after the peer's ack, a puller's (its position in
the peer's log) in the same transaction that applies the batch. So killing
either side at any moment loses nothing, and the next session resends at most
the unacknowledged batch. Each session opens with what the receiving side holds
from every origin, so nothing it holds is sent again.
"""

from __future__ import annotations

import json
import time
from typing import BinaryIO

from . import hlc, policy, protocol
from .config import Config
from .errors import BadBatch, Refused, SyncError
from .protocol import ProtocolError, batch_frame, read_frame, write_frame
from .store import Store
from .transport import Connection

MAX_BATCH_BYTES = 8 * 1024 * 1024


def _me(config: Config) -> policy.Party:
    return policy.Party(config.name, config.role, config.farm, config.trusted)


def _party(config: Config, name: str) -> policy.Party | None:
    peer = config.peers.get(name)
    return None if peer is None else policy.Party(peer.name, peer.role, peer.farm)


def push_targets(config: Config) -> tuple[str, ...]:
    me = _me(config)
    peers = [policy.Party(p.name, p.role, p.farm) for p in config.peers.values()]
    return tuple(policy.push_targets(me, peers))


def _origin_seq(body: str) -> tuple[str, int]:
    """(origin, n) of an encoded change, read from its canonical prefix."""
    if body.startswith('{"o":"'):
        end = body.find('"', 6)
        if body.startswith(',"n":', end + 1):
            comma = body.find(",", end + 6)
            try:
                return body[6:end], int(body[end + 6 : comma])
            except ValueError:
                pass
    change = json.loads(body)
    return change["o"], change["n"]


def _wanted(held: dict, origin: str, n: int) -> bool:
    """Does the receiver, holding ``held``, lack change ``origin``:``n``?

    ``held`` is the contiguous high mark per origin; it moves on only by one,
    so a change logged out of order here (possible when batches arrived out
    of order) is still sent after a later one from the same origin.
    """
    mark = held.get(origin, 0)
    if n <= mark:
        return False
    if n == mark + 1:
        held[origin] = n
    return True


# -- the caller -----------------------------------------------------------


def sync(store: Store, peer_name: str, action: str, dry_run: bool = False) -> dict:
    """Run one push or pull session with ``peer_name``; returns its report.

    ``dry_run`` does the handshake and counts what would move (``would_send``
    or ``would_receive``) without sending a change or moving a cursor.
    """
    config = store.config
    started = time.monotonic()
    target = _party(config, peer_name)
    if target is None:
        raise Refused(f"refused: {peer_name} is not a configured peer of {config.name}")
    decision = policy.may_initiate(_me(config), action, target)
    if not decision:
        raise Refused(f"refused: {decision.rule}")
    conn = Connection(config, config.peers[peer_name])
    report = {"peer": peer_name, "direction": action, "sent": 0, "received": 0, "applied": 0,
              "conflicts": 0, "skipped": 0, "batches": 0}  # fmt: skip
    try:
        hello = {"t": "hello", "v": protocol.VERSION, "node": config.name, "action": action,
                 "clock": hlc.wall_ms()}  # fmt: skip
        if action == "pull":
            hello["held"] = store.held()
            hello["cursor"] = store.cursor(peer_name, "pull")
            hello["dry_run"] = dry_run
        write_frame(conn.writer, hello)
        reply = read_frame(conn.reader, ("welcome", "refused"))
        if reply["t"] == "refused":
            raise Refused(f"refused: {reply.get('rule')}")
        if reply.get("v") != protocol.VERSION:
            raise ProtocolError(
                f"peer speaks protocol version {reply.get('v')}, not {protocol.VERSION}"
            )
        skew = reply.get("clock", 0) - hlc.wall_ms()
        if skew > config.max_clock_skew_ms:
            raise Refused(
                f"refused: {peer_name}'s clock is {skew} ms ahead of ours "
                f"(max_clock_skew_ms is {config.max_clock_skew_ms})"
            )
        if dry_run:
            report["dry_run"] = True
        if action == "push" and dry_run:
            report["would_send"] = _count_unheld(store, peer_name, reply.get("held") or {})
            write_frame(conn.writer, {"t": "done"})
            read_frame(conn.reader, ("bye",))
        elif action == "push":
            _push(store, peer_name, conn, reply.get("held") or {}, report)
        elif dry_run:
            done = read_frame(conn.reader, ("done",))
            report["would_receive"] = int(done.get("count", 0))
        else:
            _pull(store, peer_name, conn, report)
    except (BrokenPipeError, ConnectionResetError, ProtocolError) as exc:
        tail = conn.stderr_tail()
        if tail.startswith("refused:"):
            raise Refused(tail) from None
        if "Permission denied" in tail:  # sshd refused our key: the peer does not trust us
            raise Refused(f"refused: ssh to {peer_name}: {tail}") from None
        raise SyncError(
            f"sync with {peer_name} failed: {exc}" + (f" ({tail})" if tail else "")
        ) from None
    finally:
        conn.close()
    report["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    return report


def _batches(store: Store, peer: str, cursor: int):
    """(bodies-with-origins, last seq, stream entry ids) after ``cursor``: from
    the peer's consumer group on the Redis stream while it covers the log
    contiguously, from the SQLite log otherwise."""
    limit = store.config.batch_size
    feed = store.stream_feed(peer)
    while True:
        rows, entry_ids = feed.take(cursor, limit) if feed else (None, [])
        if rows is None:
            rows = [(s, b, o, n) for s, b, o, n in store.changes_after(cursor, limit)]
        if not rows:
            return
        # Keep frames bounded in bytes as well as in count.
        size, cut = 0, len(rows)
        for i, row in enumerate(rows):
            size += len(row[1])
            if size > MAX_BATCH_BYTES and i:
                cut = i
                break
        rows = rows[:cut]
        yield rows, rows[-1][0], entry_ids, feed
        cursor = rows[-1][0]


def _count_unheld(store: Store, peer: str, held: dict) -> int:
    """How many changes after the push cursor the receiver lacks (reads only)."""
    count, seq = 0, store.cursor(peer, "push")
    while rows := store.changes_after(seq, 10_000):
        for seq, _body, origin, n in rows:  # noqa: B007 (seq carries on)
            count += _wanted(held, origin, n)
    return count


def _push(store: Store, peer: str, conn: Connection, held: dict, report: dict) -> None:
    cursor = store.cursor(peer, "push")
    for rows, last, _ids, feed in _batches(store, peer, cursor):
        bodies = []
        for _seq, body, origin, n in rows:
            if _wanted(held, origin, n):
                bodies.append(body)
        if bodies:
            write_frame(conn.writer, batch_frame(bodies, last))
            ack = read_frame(conn.reader, ("ack",))
            report["sent"] += len(bodies)
            report["batches"] += 1
            for key in ("applied", "conflicts", "skipped"):
                report[key] += int(ack.get(key, 0))
        with store.transaction():
            store.set_cursor(peer, "push", last)
        if feed:
            feed.ack_through(last)
    write_frame(conn.writer, {"t": "done"})
    read_frame(conn.reader, ("bye",))
    store.trim_outbox()


def _pull(store: Store, peer: str, conn: Connection, report: dict) -> None:
    while True:
        msg = read_frame(conn.reader, ("batch", "done"))
        last = msg.get("last")
        if msg["t"] == "done":
            if isinstance(last, int):  # the rest of the peer's log is held here
                with store.transaction():
                    store.set_cursor(peer, "pull", last)
            return
        changes = msg.get("changes")
        if not isinstance(last, int):
            raise ProtocolError("malformed frame: batch without a last sequence")
        _check_stamps(store.config, changes)
        result = store.apply_changes(changes, cursor=(peer, "pull", last))
        report["received"] += len(changes)
        report["batches"] += 1
        report["applied"] += result.applied
        report["conflicts"] += result.conflicts
        report["skipped"] += result.skipped
        write_frame(conn.writer, {"t": "ack", "applied": result.applied})


def _check_stamps(config: Config, changes: object) -> None:
    """Refuse a batch stamped further in the future than the allowed clock skew,
    instead of letting it drag every clock forward."""
    if not isinstance(changes, list):
        raise BadBatch("malformed batch: expected a list of changes")
    limit = hlc.wall_ms() + config.max_clock_skew_ms
    for ch in changes:
        stamp = ch.get("h") if isinstance(ch, dict) else None
        if hlc.is_valid(stamp) and hlc.decode(stamp)[0] > limit:
            raise BadBatch(
                f"malformed batch: change {ch.get('o')}:{ch.get('n')} is stamped "
                f"{hlc.decode(stamp)[0] - hlc.wall_ms()} ms in the future "
                f"(max_clock_skew_ms is {config.max_clock_skew_ms})"
            )


# -- the receiver ---------------------------------------------------------


def serve(store: Store, peer_name: str, inp: BinaryIO, out: BinaryIO) -> int:
    """Serve one session for ``peer_name`` (named by the SSH key's forced
    command or by the local transport, never by the caller's own words)."""
    config = store.config
    hello = read_frame(inp, ("hello",))
    action = hello.get("action")
    if action not in policy.ACTIONS:
        raise ProtocolError(f"malformed frame: unknown action {action!r}")
    if hello.get("v") != protocol.VERSION:
        write_frame(out, {"t": "error", "msg": f"protocol version {hello.get('v')} not supported"})
        raise ProtocolError(f"caller speaks protocol version {hello.get('v')}")
    decision = policy.may_accept(_me(config), action, _party(config, peer_name))
    rule = None if decision else decision.rule
    if rule is None and hello.get("node") != peer_name:
        rule = f"the caller says it is {hello.get('node')!r} but its key is {peer_name}'s"
    clock = hello.get("clock")
    skew = (clock - hlc.wall_ms()) if isinstance(clock, int) else 0
    if rule is None and skew > config.max_clock_skew_ms:
        rule = (
            f"{peer_name}'s clock is {skew} ms ahead of {config.name}'s "
            f"(max_clock_skew_ms is {config.max_clock_skew_ms})"
        )
    if rule is not None:
        store.record_refusal(peer_name, action, rule)
        write_frame(out, {"t": "refused", "rule": rule})
        raise Refused(f"refused: {rule}")
    welcome = {"t": "welcome", "v": protocol.VERSION, "node": config.name, "clock": hlc.wall_ms()}
    if action == "push":
        welcome["held"] = store.held()
        write_frame(out, welcome)
        _receive(store, inp, out)
    else:
        write_frame(out, welcome)
        _send(store, peer_name, hello, inp, out)
    return 0


def _receive(store: Store, inp: BinaryIO, out: BinaryIO) -> None:
    while True:
        msg = read_frame(inp, ("batch", "done"))
        if msg["t"] == "done":
            write_frame(out, {"t": "bye"})
            return
        changes = msg.get("changes")
        _check_stamps(store.config, changes)
        result = store.apply_changes(changes)
        write_frame(out, {"t": "ack", "applied": result.applied, "conflicts": result.conflicts,
                          "skipped": result.skipped})  # fmt: skip


def _send(store: Store, peer: str, hello: dict, inp: BinaryIO, out: BinaryIO) -> None:
    held = hello.get("held")
    cursor = hello.get("cursor")
    if not isinstance(held, dict) or not isinstance(cursor, int):
        raise ProtocolError("malformed frame: pull hello without held and cursor")
    if hello.get("dry_run"):
        count, seq = 0, cursor
        while rows := store.changes_after(seq, 10_000):
            for seq, _body, origin, n in rows:  # noqa: B007 (seq carries on)
                count += _wanted(held, origin, n)
        write_frame(out, {"t": "done", "count": count})
        return
    seq = cursor
    limit = store.config.batch_size
    while True:
        rows = store.changes_after(seq, limit)
        if not rows:
            break
        bodies, size = [], 0
        for s, body, origin, n in rows:
            seq = s
            if _wanted(held, origin, n):
                bodies.append(body)
                size += len(body)
                if size > MAX_BATCH_BYTES:
                    break
        if bodies:
            write_frame(out, batch_frame(bodies, seq))
            read_frame(inp, ("ack",))
    # The puller holds everything up to here: its cursor may move on.
    write_frame(out, {"t": "done", "last": seq})
