"""Push and pull sessions: the caller's side (``sync``) and the receiver's (``serve``).

Cursors move only after the other side has committed: a pusher's cursor (its
own log position for the peer) after the peer's ack, a puller's (its position in
the peer's log) in the same transaction that applies the batch. So killing
either side at any moment loses nothing, and the next session resends at most
the unacknowledged batch. Each session opens with what the receiving side holds
from every origin, so nothing it holds is sent again.

Who may sync is policy.py's; the frames are protocol.py's; the pipe is
transport.py's; this module only drives the session, and counts it in the link
history (history.py) once it is over.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from . import history, hlc, policy, protocol
from .changelog import take_unheld
from .changes import MAX_SEQ, check_stamps
from .deadlines import Limits, interrupting
from .errors import Refused, SyncError
from .outbox import Unavailable
from .protocol import (
    MAX_BATCH_BYTES,
    BadFrame,
    ProtocolError,
    batch_frame,
    body_bytes,
    read_frame,
    write_frame,
)
from .store import Store
from .transport import Connection


def _chunks(bodies: Iterable[str], limit: int) -> Iterator[list[str]]:
    """``bodies`` cut into batches of at most ``limit`` changes and
    MAX_BATCH_BYTES (at least one change each), read as they are sent."""
    batch: list[str] = []
    size = 0
    for body in bodies:
        cost = body_bytes(body)
        if batch and (len(batch) >= limit or size + cost > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(body)
        size += cost
    if batch:
        yield batch


def _next_batch(rows, held: dict, known=lambda origin: True) -> tuple[list[str], int]:
    """From log rows (seq, body, origin, n): the bodies a holder of ``held`` lacks,
    at most MAX_BATCH_BYTES of them (at least one), and the seq of the last row
    looked at, which the batch covers. Changes of origins not ``known`` (whose
    key was revoked) are never sent on."""
    bodies: list[str] = []
    size, last = 0, rows[0][0]
    for seq, body, origin, n in rows:
        cost = body_bytes(body)
        if bodies and size + cost > MAX_BATCH_BYTES:
            break
        if known(origin) and take_unheld(held, origin, n):
            bodies.append(body)
            size += cost
        last = seq
    return bodies, last


# -- the caller -----------------------------------------------------------


def sync(store: Store, peer_name: str, action: str, dry_run: bool = False) -> dict:
    """Run one push or pull session with ``peer_name``; returns its report.

    ``dry_run`` does the handshake and counts what would move (``would_send``
    or ``would_receive``) without sending a change or moving a cursor.
    """
    link: dict = {}
    counted = not dry_run and peer_name in store.config.peers
    try:
        report = _sync(store, peer_name, action, dry_run, link)
    except Exception as exc:
        if counted:
            history.record(store.db, peer_name, action, True, error=str(exc), **link)
        raise
    if counted:
        history.record(store.db, peer_name, action, True, sent=report["sent"],
                       received=report["received"], **link)  # fmt: skip
    return report


def _sync(store: Store, peer_name: str, action: str, dry_run: bool, link: dict) -> dict:
    config = store.config
    started = time.monotonic()
    target = policy.peer_of(config, peer_name)
    if target is None:
        raise Refused(f"refused: {peer_name} is not a configured peer of {config.name}")
    decision = policy.may_initiate(policy.me_of(config), action, target)
    if not decision:
        raise Refused(f"refused: {decision.rule}")
    healed = store.heal_clock()
    conn = Connection(config, config.peers[peer_name], store.interrupt)
    report = {"peer": peer_name, "direction": action, "sent": 0, "received": 0, "applied": 0,
              "conflicts": 0, "skipped": 0, "batches": 0}  # fmt: skip
    try:
        pull = {}
        if action == "pull":
            cursor, log_id, at = store.log.pull_cursor(peer_name)
            pull = {"held": store.held(), "cursor": cursor, "log": log_id, "at": at,
                    "dry_run": dry_run}  # fmt: skip
            if not dry_run:  # protocol 4: what the sender needs to show us a fork
                pull.update(store.forks_stated())
        hello = protocol.hello(
            config.name, action, hlc.wall_ms(), store.heads_of(peer_name), **pull
        )
        write_frame(conn.writer, hello)
        try:
            reply = read_frame(conn.reader, ("welcome", "refused"))
        except protocol.PeerError as exc:
            raise protocol.gap_in(peer_name, exc) or exc from None
        if reply["t"] == "refused":
            raise Refused(f"refused: {reply.get('rule')}")
        link["protocol"] = v = protocol.accepted(peer_name, reply)
        link["peer_release"] = protocol.release_of(reply, v)
        if store.check_heads(reply.get("yours")) or healed:
            report["incarnation"] = store.log.origin()
        if action == "pull" and not dry_run and reply.get("log") != pull["log"]:
            if not isinstance(reply.get("log"), str):
                raise BadFrame("malformed frame: welcome to a pull without a log id")
            store.restart_pull(peer_name, reply["log"])
        skew = _count(reply, "clock", default=0) - hlc.wall_ms()
        if skew > config.max_clock_skew_ms:
            raise Refused(
                f"refused: {peer_name}'s clock is {skew} ms ahead of ours "
                f"(max_clock_skew_ms is {config.max_clock_skew_ms})"
            )
        if dry_run:
            report["dry_run"] = True
        if action == "push" and dry_run:
            held = _held(reply.get("held") or {})
            report["would_send"] = store.log.count_unheld(store.log.cursor(peer_name, "push"), held)
            write_frame(conn.writer, {"t": "done"})
            read_frame(conn.reader, ("bye",))
        elif action == "push":
            evidence = store.evidence_for(reply) if v >= 4 else iter(())
            _push(store, peer_name, conn, _held(reply.get("held") or {}), report, evidence)
        elif dry_run:
            done = read_frame(conn.reader, ("done",))
            report["would_receive"] = _count(done, "count", default=0)
        else:
            try:
                _pull(store, peer_name, conn, report)
            except Refused as exc:
                store.record_refusal(peer_name, "pull", str(exc).removeprefix("refused: "))
                raise
    except (BrokenPipeError, ConnectionResetError, ProtocolError) as exc:
        raise conn.failure(peer_name, exc) from None
    except BadFrame as exc:
        raise conn.watchdog.error() or BadFrame(f"{exc} (from {peer_name})") from None
    except Unavailable as exc:
        raise SyncError(
            f"sync with {peer_name} failed: redis unavailable mid-session: {exc}"
        ) from None
    except Exception:
        # Past a deadline, whatever broke (an interrupted SQLite call) broke by it.
        late = conn.watchdog.error()
        if late is not None:
            raise late from None
        raise
    finally:
        conn.close()
    report["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    return report


def _push(
    store: Store, peer: str, conn: Connection, held: dict, report: dict, evidence: Iterable[str]
) -> None:
    """Send ``evidence`` first (forks.py), then from the peer's consumer group on
    the Redis stream while it continues the log at the cursor, from the SQLite
    log otherwise.

    A receiver that holds less of some origin than it did after the last push
    (its database was restored from a backup) is sent the log again from the
    start; its held marks keep what it still holds from being sent twice."""
    before = store.log.push_held(peer)
    lagging = {o: held.get(o, 0) for o, mark in before.items() if held.get(o, 0) < mark}
    if lagging:
        store.restart_push(peer, lagging)
    cursor = store.log.cursor(peer, "push")
    refused = None
    for bodies in _chunks(evidence, store.config.batch_size):
        _send_batch(conn, bodies, cursor, report)
    feed = store.relay.feed(peer) if store.relay else None
    limit = store.config.batch_size
    while True:
        rows = feed.take(cursor, limit)[0] if feed else None
        if rows is None:
            rows = store.log.changes_after(cursor, limit)
        if not rows:
            break
        bodies, last = _next_batch(rows, held, store.keys.knows)
        if bodies:
            ack = _send_batch(conn, bodies, last, report)
            for key in ("applied", "conflicts", "skipped", "deferred"):
                report[key] = report.get(key, 0) + _count(ack, key, default=0)
            if ack.get("deferred"):
                refused = ack.get("rule")
        store.set_cursor(peer, "push", last)
        if feed:
            feed.ack_through(last)
        cursor = last
    write_frame(conn.writer, {"t": "done"})
    read_frame(conn.reader, ("bye",))
    store.set_push_held(peer, held)  # what the peer holds now (marks moved as sent)
    if store.relay:
        store.relay.trim()
    if refused is not None:  # over the peer's quota: the next push goes back for them
        raise Refused(f"refused: {refused}")


def _send_batch(conn: Connection, bodies: list[str], last: int, report: dict) -> dict:
    """Push one batch and read its ack (a refusal raises); returns the ack."""
    write_frame(conn.writer, batch_frame(bodies, last))
    ack = read_frame(conn.reader, ("ack", "refused"))
    if ack["t"] == "refused":
        raise Refused(f"refused: {ack.get('rule')}")
    report["sent"] += len(bodies)
    report["batches"] += 1
    return ack


def _count(msg: dict, key: str, default: int | None = None) -> int:
    """A peer's count, sequence or clock field: an integer from 0 to MAX_SEQ."""
    value = msg.get(key, default)
    if type(value) is not int or not 0 <= value <= MAX_SEQ:
        raise BadFrame(f"malformed frame: {key} is not a number from 0 to {MAX_SEQ}")
    return value


def _at(msg: dict) -> list | None:
    at = msg.get("at")
    if at is None or (
        isinstance(at, list)
        and len(at) == 2
        and type(at[0]) is str
        and type(at[1]) is int
        and 0 <= at[1] <= MAX_SEQ
    ):
        return at
    raise BadFrame("malformed frame: at is not [origin, n]")


def _pull(store: Store, peer: str, conn: Connection, report: dict) -> None:
    """Apply the peer's batches; once some of them were deferred (over this
    node's quota, quotas.py) the cursor stays where it stood, so the next pull
    reads them again, and the session ends refused, naming the quota."""
    with store.applying():
        _pull_batches(store, peer, conn, report)


def _pull_batches(store: Store, peer: str, conn: Connection, report: dict) -> None:
    rule = None
    while True:
        msg = read_frame(conn.reader, ("batch", "done"))
        if msg["t"] == "done":
            if msg.get("last") is not None and rule is None:  # the rest is held here
                store.set_pull_cursor(peer, _count(msg, "last"), _at(msg))
            if rule is not None:
                raise Refused(f"refused: {rule}")
            return
        changes = msg.get("changes")
        last = _count(msg, "last")
        check_stamps(changes, store.config.max_clock_skew_ms)
        cursor = (peer, "pull", last) if rule is None else None
        result = store.apply_changes(changes, cursor=cursor, at=_at(msg))
        rule = rule or result.rule
        report["received"] += len(changes)
        report["batches"] += 1
        report["applied"] += result.applied
        report["conflicts"] += result.conflicts
        report["skipped"] += result.skipped
        report["deferred"] = report.get("deferred", 0) + result.deferred
        write_frame(conn.writer, protocol.ack(result.applied, result.conflicts, result.skipped))


# -- the receiver ---------------------------------------------------------


def serve(store: Store, peer_name: str, inp: BinaryIO, out: BinaryIO) -> int:
    """Serve one session for ``peer_name`` (named by the SSH key's forced
    command or by the local transport, never by the caller's own words), under
    the session's deadlines."""
    link: dict = {"sent": 0, "received": 0}
    try:
        with interrupting(peer_name, Limits.of(store.config), store.interrupt) as watchdog:
            try:
                done = _serve(store, peer_name, watchdog.stream(inp), watchdog.stream(out), link)
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise SyncError(f"session with {peer_name} broke: {exc.strerror}") from None
    except Exception as exc:
        if "action" in link and peer_name in store.config.peers:
            history.record(store.db, peer_name, link.pop("action"), False, error=str(exc), **link)
        raise
    if peer_name in store.config.peers:
        history.record(store.db, peer_name, link.pop("action"), False, **link)
    return done


def _serve(store: Store, peer_name: str, inp: BinaryIO, out: BinaryIO, link: dict) -> int:
    config = store.config
    store.heal_clock()
    hello = read_frame(inp, ("hello",))
    action = hello.get("action")
    if action not in policy.ACTIONS:
        raise BadFrame(f"malformed frame: unknown action {str(action)[:40]!r}")
    try:
        v = protocol.choose(peer_name, hello)
    except Refused:
        write_frame(out, protocol.refusal(config.name, protocol.speaks()))
        raise
    link.update(action=action, protocol=v, peer_release=protocol.release_of(hello, v))
    decision = policy.may_accept(policy.me_of(config), action, policy.peer_of(config, peer_name))
    rule = None if decision else decision.rule
    if rule is None and hello.get("node") != peer_name:
        said = repr(hello.get("node"))[:60]
        rule = f"the caller says it is {said} but its key is {peer_name}'s"
    clock = hello.get("clock")
    skew = (clock - hlc.wall_ms()) if isinstance(clock, int) else 0
    if rule is None and skew > config.max_clock_skew_ms:
        rule = (
            f"{peer_name}'s clock is {skew} ms ahead of {config.name}'s "
            f"(max_clock_skew_ms is {config.max_clock_skew_ms})"
        )
    if rule is not None:
        store.record_refusal(peer_name, action, rule)
        write_frame(out, protocol.refused(rule))
        raise Refused(f"refused: {rule}")
    store.check_heads(hello.get("yours"))
    yours = store.heads_of(peer_name)
    if action == "push":
        welcome = protocol.welcome(config.name, hlc.wall_ms(), yours, held=store.held(), v=v)
        if v >= 4:  # what the pusher needs to show us a fork (forks.py)
            welcome.update(store.forks_stated())
        write_frame(out, welcome)
        _receive(store, peer_name, inp, out, link)
    else:
        log_id = store.log.log_id()
        write_frame(out, protocol.welcome(config.name, hlc.wall_ms(), yours, log=log_id, v=v))
        evidence = store.evidence_for(hello) if v >= 4 and not hello.get("dry_run") else iter(())
        _send(store, hello, log_id, inp, out, link, evidence)
    return 0


def _receive(store: Store, peer: str, inp: BinaryIO, out: BinaryIO, link: dict) -> None:
    with store.applying():
        _receive_batches(store, peer, inp, out, link)


def _receive_batches(store: Store, peer: str, inp: BinaryIO, out: BinaryIO, link: dict) -> None:
    while True:
        msg = read_frame(inp, ("batch", "done"))
        if msg["t"] == "done":
            write_frame(out, {"t": "bye"})
            return
        changes = msg.get("changes")
        check_stamps(changes, store.config.max_clock_skew_ms)
        try:
            result = store.apply_changes(changes)
        except Refused as exc:
            rule = str(exc).removeprefix("refused: ")
            store.record_refusal(peer, "push", rule)
            write_frame(out, protocol.refused(rule))
            raise
        link["received"] += len(changes)
        if result.deferred:
            store.record_refusal(peer, "push", result.rule)
        write_frame(out, protocol.ack(result.applied, result.conflicts, result.skipped,
                                      result.deferred, result.rule))  # fmt: skip


def _held(held: object) -> dict:
    """A peer's held marks ({origin: n}), checked."""
    if not isinstance(held, dict) or any(
        type(n) is not int or not 0 <= n <= MAX_SEQ for n in held.values()
    ):
        raise BadFrame("malformed frame: held is not {origin: sequence}")
    return held


def _send(
    store: Store,
    hello: dict,
    log_id: str,
    inp: BinaryIO,
    out: BinaryIO,
    link: dict,
    evidence: Iterable[str],
) -> None:
    """A pull's sending side: ``evidence`` first (forks.py), then the log."""
    held = _held(hello.get("held"))
    cursor = hello.get("cursor")
    if type(cursor) is not int or not 0 <= cursor <= MAX_SEQ:
        raise BadFrame("malformed frame: pull hello without a cursor")
    if hello.get("log") != log_id or (cursor and store.log.at_of(cursor) != hello.get("at")):
        cursor = 0  # a position in another log (or before a restore): read this one whole
    if hello.get("dry_run"):
        write_frame(out, {"t": "done", "count": store.log.count_unheld(cursor, held)})
        return
    for bodies in _chunks(evidence, store.config.batch_size):
        write_frame(out, batch_frame(bodies, cursor, store.log.at_of(cursor) if cursor else None))
        read_frame(inp, ("ack",))
        link["sent"] += len(bodies)
    seq = cursor
    known = store.keys.knows
    # One batch ahead: the next is read from the log and on its way while the
    # puller applies this one (acks are small: neither side's writes can block
    # for long on the other's).
    unacked = 0  # changes in the batch sent before this one, counted once acked
    while rows := store.log.changes_after(seq, store.config.batch_size):
        bodies, seq = _next_batch(rows, held, known)
        if bodies:
            write_frame(out, batch_frame(bodies, seq, store.log.at_of(seq)))
            if unacked:
                read_frame(inp, ("ack",))
                link["sent"] += unacked
            unacked = len(bodies)
    if unacked:
        read_frame(inp, ("ack",))
        link["sent"] += unacked
    # The puller holds everything up to here: its cursor may move on.
    write_frame(out, {"t": "done", "last": seq, "at": store.log.at_of(seq) if seq else None})
