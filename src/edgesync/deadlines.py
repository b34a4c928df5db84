"""Deadlines of a sync session: every session ends in bounded time.

Three limits, from the config (seconds):

- ``connect``: from the start of the session until the peer's first byte
  arrives (ssh's own connect, the far side's start-up, its answer to hello);
- ``idle``: the longest the session may wait on the peer without a byte moving
  after that: a peer that stops answering, or stops reading, mid-session;
- ``session``: the whole session, however busy.

A watchdog thread checks them while the session runs. Time the session spends
on its own work (applying a batch, reading the log) never counts as idle, only
time blocked on the peer. When a limit passes, the watchdog calls the session's
``expire`` (the caller kills the transport's process; ``serve`` interrupts its
main thread), and the session ends with a SyncError naming the peer and the
limit: exit 4. A cut session loses nothing: cursors only move once a batch is
committed (sync.py).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from .errors import SyncError

_CHUNK = 64 * 1024  # bytes per write: a moving peer moves the idle clock on


@dataclass(frozen=True)
class Limits:
    connect: float
    idle: float
    session: float

    @classmethod
    def of(cls, config) -> Limits:
        return cls(config.connect_timeout_s, config.idle_timeout_s, config.session_timeout_s)


class Watchdog:
    """Watches one session's blocking reads and writes against its Limits."""

    def __init__(self, peer: str, limits: Limits, expire: Callable[[], None]):
        self.peer = peer
        self.limits = limits
        self.expire = expire
        self.reason: str | None = None  # set once a limit has passed
        self._started = time.monotonic()
        self._blocked_since: float | None = None
        self._answered = False
        self._stop = threading.Event()
        self._tick = min(0.5, max(0.02, min(limits.connect, limits.idle) / 20))
        self._thread = threading.Thread(target=self._run, name="edgesync-deadlines", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            reason = self._overdue(time.monotonic())
            if reason is not None:
                self.reason = reason
                self.expire()
                return

    def _overdue(self, now: float) -> str | None:
        lim = self.limits
        if now - self._started > lim.session:
            return f"the session ran past its {lim.session:g} s (session_timeout_s)"
        since = self._blocked_since
        if since is None:
            return None
        if not self._answered and now - self._started > lim.connect:
            return f"no answer within {lim.connect:g} s of connecting (connect_timeout_s)"
        if self._answered and now - since > lim.idle:
            return f"no progress for {lim.idle:g} s (idle_timeout_s)"
        return None

    def error(self) -> SyncError | None:
        """The session's failure if a limit passed, naming the peer and the limit."""
        if self.reason is None:
            return None
        return SyncError(f"sync with {self.peer} failed: {self.reason}")

    def stream(self, raw: BinaryIO) -> Timed:
        return Timed(raw, self)

    def close(self) -> None:
        """Stop watching; once this returns, ``expire`` is not called any more."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


class Timed:
    """A session's stream, each blocking call watched by the Watchdog."""

    def __init__(self, raw: BinaryIO, watchdog: Watchdog):
        self.raw = raw
        self.wd = watchdog

    def read(self, n: int = -1) -> bytes:
        """At most ``n`` bytes, as soon as any arrive (callers loop for more), so
        a slow but moving peer is never idle."""
        self.wd._blocked_since = time.monotonic()
        try:
            data = self.raw.read1(n) if hasattr(self.raw, "read1") else self.raw.read(n)
        finally:
            self.wd._blocked_since = None
        if data:
            self.wd._answered = True
        return data

    def write(self, data: bytes) -> int:
        """All of ``data``, a chunk at a time, so a slow but reading peer is never idle."""
        view = memoryview(data)
        try:
            for start in range(0, len(view), _CHUNK):
                self.wd._blocked_since = time.monotonic()
                self.raw.write(view[start : start + _CHUNK])
        finally:
            self.wd._blocked_since = None
        return len(view)

    def flush(self) -> None:
        self.wd._blocked_since = time.monotonic()
        try:
            self.raw.flush()
        finally:
            self.wd._blocked_since = None

    def close(self) -> None:
        self.raw.close()


class _Expired(BaseException):
    """Raised in serve's main thread by the watchdog's signal (a BaseException,
    so no ``except Exception`` on the way swallows it)."""


class interrupting:
    """For ``serve``, which blocks on its own stdin: a passed limit interrupts
    the main thread with SIGALRM, whose handler ends the session (SyncError).
    Use as a context manager in the process's main thread."""

    def __init__(self, peer: str, limits: Limits, interrupt: Callable[[], None] = lambda: None):
        """``interrupt`` stops the main thread's SQLite call (a lock wait holds
        it in C, where no signal handler runs) before the signal is sent."""
        self.interrupt = interrupt
        self.watchdog = Watchdog(peer, limits, self._signal)
        self._main = threading.main_thread().ident
        self._previous = None
        self._armed = False

    def _signal(self) -> None:
        self.interrupt()
        signal.pthread_kill(self._main, signal.SIGALRM)

    def _handler(self, _signum, _frame) -> None:
        if self._armed:  # not once the session is over
            raise _Expired

    def __enter__(self) -> Watchdog:
        if threading.current_thread() is not threading.main_thread():
            self.watchdog.close()
            raise RuntimeError("serve's deadlines need the process's main thread")
        self._previous = signal.signal(signal.SIGALRM, self._handler)
        self._armed = True
        return self.watchdog

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._armed = False
        self.watchdog.close()  # joined: no signal comes after this
        signal.signal(signal.SIGALRM, self._previous)
        if exc_type is not None and self.watchdog.reason is not None:
            # Whatever broke once a limit had passed (the signal, an interrupted
            # SQLite call, a closed pipe) broke because of it.
            raise self.watchdog.error() from None
        return False
