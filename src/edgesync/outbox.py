"""The Redis outbox: a stream of logged changes, one consumer group per push target
(a peer this node pushes to on a schedule; none, no stream).

Redis is the delivery queue, not the truth. One entry per committed
transaction: ``lo`` and ``hi`` are the first and last local log sequences it
covers and ``c`` the change bodies, one per line, so a pusher can send straight
from the stream, and the stream can always be rebuilt from the SQLite log.
Entries are trimmed only once every consumer group has acknowledged them.

This module speaks only to Redis: what to queue and when is the relay's
(relay.py), which reads the log.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from .changes import origin_seq
from .lazy import lazy

# Loaded when the first Outbox is made: a command that opens none never loads it.
redis = lazy("redis")

ENTRY_MAX = 1000  # changes per stream entry (and a publisher's wake-up threshold)
SCAN = 1000  # stream entries per XREVRANGE call
_LINGER = 0.05  # seconds the publisher waits to batch more changes


class Unavailable(Exception):
    """Redis could not be reached or refused the command."""


class Outbox:
    def __init__(self, url: str, node: str):
        self.url = url
        self.key = f"edgesync:{node}:changes"
        self.epoch_key = f"edgesync:{node}:epoch"
        self.r = redis.Redis.from_url(
            url, socket_connect_timeout=1.0, socket_timeout=10.0, decode_responses=False
        )

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise Unavailable(str(exc) or type(exc).__name__) from None

    def ping(self) -> None:
        self._call(self.r.ping)

    def publish(self, entries: Iterable[tuple[int, str]]) -> int:
        """Queue (seq, body) pairs, one stream entry per run of consecutive seqs
        (at most ENTRY_MAX changes each); returns how many changes were queued."""
        runs: list[list[tuple[int, str]]] = []
        for seq, body in entries:
            if runs and runs[-1][-1][0] + 1 == seq and len(runs[-1]) < ENTRY_MAX:
                runs[-1].append((seq, body))
            else:
                runs.append([(seq, body)])
        fields = [
            {"lo": run[0][0], "hi": run[-1][0], "c": "\n".join(b for _s, b in run)} for run in runs
        ]
        if len(fields) == 1:
            self._call(self.r.xadd, self.key, fields[0])
        elif fields:
            for i in range(0, len(fields), 100):
                pipe = self.r.pipeline(transaction=False)
                for f in fields[i : i + 100]:
                    pipe.xadd(self.key, f)
                self._call(pipe.execute)
        return sum(len(run) for run in runs)

    def seqs_from(self, low: int) -> set[int]:
        """Seqs present in the stream at or above ``low`` (scanning from the tail).

        Writers in several processes add entries slightly out of seq order, so
        the scan goes on a chunk past the first entry below ``low``.
        """
        found: set[int] = set()
        upper = "+"
        below = 0
        while True:
            got = self._call(self.r.xrevrange, self.key, max=upper, count=SCAN)
            for _entry_id, fields in got:
                lo, hi = int(fields[b"lo"]), int(fields[b"hi"])
                if hi >= low:
                    found.update(range(max(lo, low), hi + 1))
                else:
                    below += 1
            if len(got) < SCAN or below >= SCAN:
                return found
            upper = "(" + got[-1][0].decode()

    def ensure_groups(self, groups: Iterable[str]) -> None:
        for group in groups:
            try:
                self.r.xgroup_create(self.key, group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise Unavailable(str(exc)) from None
            except redis.RedisError as exc:
                raise Unavailable(str(exc) or type(exc).__name__) from None

    def groups(self) -> set[str]:
        """The consumer groups on the stream."""
        if not self._call(self.r.exists, self.key):
            return set()
        return {g["name"].decode() for g in self._call(self.r.xinfo_groups, self.key)}

    def drop_groups(self, names: Iterable[str]) -> None:
        for name in names:
            self._call(self.r.xgroup_destroy, self.key, name)

    def length(self) -> int:
        """Entries on the stream (each one committed transaction's changes)."""
        return self._call(self.r.xlen, self.key)

    def drop(self) -> None:
        """Delete the stream (its groups with it) and its epoch token."""
        self._call(self.r.delete, self.key, self.epoch_key)

    def epoch(self) -> bytes | None:
        """The epoch token written beside the stream (None when Redis lost it)."""
        return self._call(self.r.get, self.epoch_key)

    def set_epoch(self, epoch: str) -> None:
        self._call(self.r.set, self.epoch_key, epoch)

    def feed(self, group: str) -> Feed:
        self.ensure_groups([group])
        return Feed(self, group)

    def trim(self, groups: Iterable[str]) -> None:
        """Drop entries every consumer group has read and acknowledged."""
        groups = set(groups)
        if not groups:
            return
        info = {g["name"].decode(): g for g in self._call(self.r.xinfo_groups, self.key)}
        keep = None
        for name in groups:
            g = info.get(name)
            if g is None:
                return  # a push target without a group yet: it must see everything
            if g["pending"]:
                first = self._call(self.r.xpending, self.key, name)["min"]
            else:
                first = _next_id(g["last-delivered-id"])
            first = first.decode() if isinstance(first, bytes) else first
            if keep is None or _id_key(first) < _id_key(keep):
                keep = first
        if keep is not None and keep != "0-1":
            self._call(self.r.xtrim, self.key, minid=keep, approximate=False)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


def _next_id(entry_id: bytes | str) -> str:
    ms, seq = _id_key(entry_id.decode() if isinstance(entry_id, bytes) else entry_id)
    return f"{ms}-{seq + 1}"


class Feed:
    """One push target's consumer group, read as runs of log sequences.

    Entries this consumer read but never acknowledged (say, the pusher was
    killed) come first, then new ones. ``take`` answers only while the stream
    continues the log exactly where the cursor stands; otherwise the pusher
    falls back to the SQLite log for that stretch.
    """

    CONSUMER = "pusher"

    def __init__(self, outbox: Outbox, group: str):
        self.outbox = outbox
        self.group = group
        self.buffer: list[tuple[bytes, int, int, list[str]]] = []
        self.pending_from: bytes | str | None = "0"  # re-read our unacknowledged entries first
        self.done = False

    def _fill(self, want: int) -> None:
        have = sum(hi - lo + 1 for _i, lo, hi, _b in self.buffer)
        while have < want and not self.done:
            start = ">" if self.pending_from is None else self.pending_from
            got = self.outbox._call(
                self.outbox.r.xreadgroup, self.group, self.CONSUMER, {self.outbox.key: start},
                count=100,
            )  # fmt: skip
            entries = got[0][1] if got else []
            if self.pending_from is not None:
                if not entries:
                    self.pending_from = None
                    continue
                self.pending_from = entries[-1][0]
            elif not entries:
                self.done = True
            for entry_id, fields in entries:
                if not fields:  # trimmed while pending
                    continue
                lo, hi = int(fields[b"lo"]), int(fields[b"hi"])
                self.buffer.append((entry_id, lo, hi, fields[b"c"].decode().split("\n")))
                have += hi - lo + 1

    def take(self, cursor: int, limit: int) -> tuple[list | None, list[bytes]]:
        """Rows (seq, body, origin, n) after ``cursor`` from the stream, or None
        when the stream does not continue the log at ``cursor``."""
        self._fill(limit)
        self.buffer.sort(key=lambda e: e[1])
        # Entries wholly behind the cursor were delivered in an earlier session.
        while self.buffer and self.buffer[0][2] <= cursor:
            self._ack([self.buffer.pop(0)[0]])
        rows: list = []
        ids: list[bytes] = []
        expect = cursor + 1
        for entry_id, lo, hi, bodies in self.buffer:
            if lo > expect or len(rows) >= limit:
                break
            for k, body in enumerate(bodies):
                seq = lo + k
                if seq >= expect:
                    rows.append((seq, body, *origin_seq(body)))
            expect = hi + 1
            ids.append(entry_id)
        if not rows:
            return None, []
        return rows, ids

    def ack_through(self, last: int) -> None:
        done = [e for e in self.buffer if e[2] <= last]
        self.buffer = [e for e in self.buffer if e[2] > last]
        self._ack([e[0] for e in done])

    def _ack(self, ids: list[bytes]) -> None:
        if ids:
            self.outbox._call(self.outbox.r.xack, self.outbox.key, self.group, *ids)


class Publisher:
    """Queues committed changes on the stream from a background thread.

    A round trip to Redis costs as much as a whole SQLite commit here, so a
    write returns once it is committed and its changes go onto the stream
    behind it, many per pipeline. A failure is reported to the owner, which
    records the gap in SQLite; nothing is retried here.
    """

    def __init__(self, outbox: Outbox):
        self.outbox = outbox
        self._queue: list[tuple[int, str]] = []
        self._busy = False
        self._cond = threading.Condition()
        self._stop = False
        self.failed: tuple[int, str] | None = None  # (first seq not queued, error)
        self._thread = threading.Thread(target=self._run, name="edgesync-publisher", daemon=True)
        self._thread.start()

    def submit(self, entries: list[tuple[int, str]]) -> None:
        with self._cond:
            wake = not self._queue
            self._queue.extend(entries)
            if wake or len(self._queue) >= ENTRY_MAX:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if not self._queue and self._stop:
                    return
                # Linger a moment so a burst of writes shares one round trip:
                # here a round trip costs as much as a whole SQLite commit.
                if len(self._queue) < ENTRY_MAX and not self._stop:
                    self._cond.wait(_LINGER)
                batch, self._queue = self._queue, []
                self._busy = True
            try:
                if self.failed is None:
                    self.outbox.publish(batch)
                    error = None
                else:
                    error = self.failed[1]
            except Unavailable as exc:
                error = str(exc)
            with self._cond:
                if error is not None:
                    first = min(seq for seq, _b in batch)
                    if self.failed is None or first < self.failed[0]:
                        self.failed = (first, error)
                self._busy = False
                self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything submitted has been sent (or has failed)."""
        with self._cond:
            self._cond.notify_all()  # cut the linger short
            self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def take_failure(self) -> tuple[int, str] | None:
        with self._cond:
            failed, self.failed = self.failed, None
            return failed

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(30)
