"""The relay: committed changes from the SQLite log onto the Redis outbox.

The store hands every committed batch of log entries to ``Relay.committed``
(its only hook into delivery). Redis failing never fails a write: the change is
safe in SQLite, the gap is remembered there (``_meta.stream_gap_from``), and
the stream is caught up from the log the next time Redis answers; a stream whose
epoch token differs from the database's (Redis lost its data) is rebuilt from
the log. The first batch of a process catches up synchronously; later small
ones go through the outbox's background publisher, whole applied batches
straight onto the stream.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from contextlib import suppress

from .changelog import ChangeLog, Entry
from .db import Database
from .outbox import Feed, Outbox, Publisher, Unavailable

_SMALL = 100  # batches below this many changes go through the publisher thread
_RETRY = 1.0  # seconds before trying Redis again after it failed


class Relay:
    def __init__(
        self,
        db: Database,
        log: ChangeLog,
        outbox: Outbox,
        push_targets: tuple[str, ...],
        warn: Callable[[str], None],
    ):
        self.db = db
        self.log = log
        self.outbox = outbox
        # One consumer group on the stream per peer this node pushes to on a
        # schedule; with none, nothing reads a stream, so none is kept.
        self.push_targets = push_targets
        self.warn = warn
        self._caught_up = False
        self._publisher: Publisher | None = None
        self._retry_at = 0.0

    def close(self) -> None:
        """Finish queuing committed changes on Redis; stop the publisher."""
        self.flush()
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None

    # -- the hook ------------------------------------------------------------

    def committed(self, entries: list[Entry]) -> None:
        """Queue the log entries of a transaction that has just committed."""
        if not entries:
            return
        if not self.push_targets:
            if not self._caught_up and time.monotonic() >= self._retry_at:
                try:
                    self.catch_up()  # drops a stream left from when there were targets
                except Unavailable as exc:
                    self._retry_at = time.monotonic() + _RETRY
                    self.warn(f"warning: redis unavailable ({exc})")
            return
        self._take_publisher_failure()
        if self._caught_up and len(entries) < _SMALL:
            self._publisher.submit(entries)
            return
        if self._caught_up:
            # A whole batch is one stream entry: send it now rather than have
            # the publisher thread pack it while this one applies the next.
            self._publisher.flush()
            try:
                self.outbox.publish(entries)
            except Unavailable as exc:
                self._down(entries[0][0], str(exc))
            return
        if time.monotonic() < self._retry_at:
            return  # down a moment ago; the gap recorded then covers these
        try:
            self.catch_up(exclude={seq for seq, _body in entries})
            self.outbox.publish(entries)
        except Unavailable as exc:
            self._down(entries[0][0], str(exc))

    def flush(self) -> None:
        """Wait until every committed change has been queued on Redis (or the
        failure recorded)."""
        if self._publisher is not None:
            self._publisher.flush()
            self._take_publisher_failure()

    def restart(self) -> None:
        """The log was rewritten under the stream (a new incarnation): rebuild
        the stream before it is read or written again."""
        self.flush()
        self._caught_up = False

    def _take_publisher_failure(self) -> None:
        if self._publisher is not None:
            failed = self._publisher.take_failure()
            if failed is not None:
                self._down(*failed)

    def _down(self, first_seq: int, error: str) -> None:
        self._caught_up = False
        self._retry_at = time.monotonic() + _RETRY
        self._remember_gap(first_seq)
        self.warn(f"warning: redis unavailable ({error}); change kept in SQLite, queued later")

    # -- catching the stream up with the log -----------------------------------

    def catch_up(self, exclude: set[int] | frozenset = frozenset()) -> int:
        """Queue every logged change the stream lacks; returns how many were queued.

        The stream lacks changes when Redis was down during writes (the gap
        marks the first) or lost its data (its epoch token differs from the
        database's). Changes every push target has acknowledged are not queued
        again; ``exclude`` are the caller's own fresh changes, which it queues
        itself.
        """
        gap = self.gap_from()
        if not self.push_targets:  # nobody to queue for: no stream
            self.outbox.drop()
            self._clear_gap(gap)
            self._caught_up = True
            return 0
        epoch = self.stream_epoch()
        lost = self.outbox.epoch() != epoch.encode()
        if lost:  # not this database's stream (Redis lost it, or the log was renumbered)
            self.outbox.drop()
        # A peer no longer pushed to loses its group (else the stream is never trimmed).
        self.outbox.drop_groups(self.outbox.groups() - set(self.push_targets))
        self.outbox.ensure_groups(self.push_targets)
        floor = min((self.log.cursor(g, "push") for g in self.push_targets), default=0)
        low = floor + 1 if lost else (max(gap, floor + 1) if gap is not None else None)
        added = 0
        if low is not None:
            present = self.outbox.seqs_from(low)
            seq = low - 1
            while rows := self.log.changes_after(seq, 10_000):
                added += self.outbox.publish(
                    [(s, b) for s, b, _o, _n in rows if s not in present and s not in exclude]
                )
                seq = rows[-1][0]
            if lost:
                self.outbox.set_epoch(epoch)
        self._clear_gap(gap)
        self.outbox.trim(self.push_targets)
        self._caught_up = True
        if self._publisher is None:
            self._publisher = Publisher(self.outbox)
        return added

    def _clear_gap(self, gap: int | None) -> None:
        if gap is not None:
            with self.db.transaction():
                self.db.execute(
                    "DELETE FROM _meta WHERE key = 'stream_gap_from' AND value = ?", (gap,)
                )

    def _remember_gap(self, seq: int) -> None:
        try:
            with self.db.transaction():
                self.db.execute(
                    "INSERT INTO _meta VALUES ('stream_gap_from', ?) ON CONFLICT(key)"
                    " DO UPDATE SET value = min(value, excluded.value)",
                    (seq,),
                )
        except sqlite3.Error as exc:
            # The change itself is committed; a push still finds it in the log.
            self.warn(f"warning: could not record the outbox gap: {exc}")

    def stream_epoch(self) -> str:
        """A token naming this database's stream; Redis holds a copy while it
        keeps its data, so a missing or different copy means the stream must
        be rebuilt from the log."""
        epoch = self.db.meta("stream_epoch")
        if epoch is None:
            with self.db.transaction():
                self.db.execute(
                    "INSERT OR IGNORE INTO _meta VALUES ('stream_epoch', ?)", (os.urandom(8).hex(),)
                )
            epoch = self.db.meta("stream_epoch")
        return epoch

    def gap_from(self) -> int | None:
        """The first change that may be missing from the Redis stream, if any."""
        return self.db.meta("stream_gap_from")

    # -- what pushes read ------------------------------------------------------

    def feed(self, peer: str) -> Feed | None:
        """The peer's consumer group on the stream, or None (not a push target,
        or Redis down: the pusher then reads the SQLite log)."""
        if peer not in self.push_targets:
            return None
        self.flush()
        try:
            if not self._caught_up:
                self.catch_up()
            return self.outbox.feed(peer)
        except Unavailable as exc:
            self.warn(f"warning: redis unavailable ({exc}); pushing from the SQLite log")
            return None

    def trim(self) -> None:
        """Drop stream entries every push target has acknowledged (best effort)."""
        with suppress(Unavailable):
            self.outbox.trim(self.push_targets)

    def pending(self) -> int:
        """Changes in the log not yet acknowledged by every push target."""
        return self.log.pending(self.push_targets)

    def stream_length(self) -> int | None:
        """Entries on the stream (None when Redis does not answer)."""
        try:
            return self.outbox.length()
        except Unavailable:
            return None

    def redis_state(self) -> str:
        try:
            self.outbox.ping()
        except Unavailable:
            return "down"
        return "ok"
