"""The Redis outbox: a stream of logged changes, one consumer group per push target.

Redis is the delivery queue, not the truth. Every entry carries the change's
local log sequence (``seq``) and its body (``c``), so a pusher can send straight
from the stream, and the stream can always be rebuilt from the SQLite log.
Entries are trimmed only once every consumer group has acknowledged them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from .store import Store

_CHUNK = 1000


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
        """XADD each (seq, body); returns how many were added."""
        entries = list(entries)
        for i in range(0, len(entries), _CHUNK):
            pipe = self.r.pipeline(transaction=False)
            for seq, body in entries[i : i + _CHUNK]:
                pipe.xadd(self.key, {"seq": seq, "c": body})
            self._call(pipe.execute)
        return len(entries)

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
                seq = int(fields[b"seq"])
                if seq >= low:
                    found.add(seq)
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
