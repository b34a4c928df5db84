"""The Redis outbox: a stream of logged changes, one consumer group per push target.

Redis is the delivery queue, not the truth. One entry per committed
transaction: ``lo`` and ``hi`` are the first and last local log sequences it
covers and ``c`` the change bodies, one per line, so a pusher can send straight
from the stream, and the stream can always be rebuilt from the SQLite log.
Entries are trimmed only once every consumer group has acknowledged them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from .store import Store

_CHUNK = 1000
_LINGER = 0.05  # seconds the publisher waits to batch more changes


class Unavailable(Exception):
    """Redis could not be reached or refused the command."""


class Outbox:
    Unavailable = Unavailable

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
        (at most _CHUNK changes each); returns how many changes were queued."""
        runs: list[list[tuple[int, str]]] = []
        for seq, body in entries:
            if runs and runs[-1][-1][0] + 1 == seq and len(runs[-1]) < _CHUNK:
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
            got = self._call(self.r.xrevrange, self.key, max=upper, count=_CHUNK)
            for _entry_id, fields in got:
                lo, hi = int(fields[b"lo"]), int(fields[b"hi"])
                if hi >= low:
                    found.update(range(max(lo, low), hi + 1))
                else:
                    below += 1
            if len(got) < _CHUNK or below >= _CHUNK:
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

    def catch_up(
        self, store: Store, gap: int | None, groups: Iterable[str], exclude: set[int]
    ) -> int:
        """Queue every logged change the stream lacks; returns how many were queued.

        The stream lacks changes when Redis was down during writes (``gap``
        marks the first) or lost its data: the epoch key, written beside the
        stream, then differs from the store's. Changes every push target has
        acknowledged are not queued again; ``exclude`` are the caller's own
        fresh changes, which it queues itself.
        """
        groups = list(groups)
        epoch = store.stream_epoch()
        lost = self._call(self.r.get, self.epoch_key) != epoch.encode()
        self.ensure_groups(groups)
        floor = min((store.cursor(g, "push") for g in groups), default=0)
        if lost:
            low = floor + 1
        elif gap is not None:
            low = max(gap, floor + 1)
        else:
            return 0
        present = self.seqs_from(low)
        added = 0
        seq = low - 1
        while True:
            rows = store.changes_after(seq, _CHUNK * 10)
            if not rows:
                break
            missing = [(s, b) for s, b, _o, _n in rows if s not in present and s not in exclude]
            added += self.publish(missing)
            seq = rows[-1][0]
        if lost:
            self._call(self.r.set, self.epoch_key, epoch)
        return added

    def length(self) -> int:
        return int(self._call(self.r.xlen, self.key))


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
            if wake or len(self._queue) >= _CHUNK:
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
                if len(self._queue) < _CHUNK and not self._stop:
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
