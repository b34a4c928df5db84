"""The store behind the HTTP face: reads, the one writer, bookmarks.

Reads run on the event loop over a read-only connection of their own: WAL
lets them run beside any writer (this process's, a sync session's). An
indexed read takes tens of microseconds; handing it to a thread pool and back
would add about as much again (a hop of that kind, granian's request-body
read, cost 15-45 us per request in benchmarks/bench_latency.py's runs) and,
under the GIL, run no faster. So the pool of read connections is one per
process: ``workers`` processes give ``workers`` readers.

Writes go through the store's one write path (``Store.put``: signed change,
change log, outbox) on one thread that owns the Store, so a write that waits
for a sync session's lock never stops reads. A pull made for a bookmark runs
on a thread of its own, with a Store of its own.

A bookmark, ``ORIGIN:SEQ``, names a write: a host holds it once it holds
that origin's changes up to SEQ (``ChangeLog.held``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from .. import agent, migrations
from ..changelog import ChangeLog
from ..config import Config
from ..errors import EdgesyncError
from ..store import Store
from ..sync import sync

T = TypeVar("T")
BOOKMARK_RE = re.compile(r"^([A-Z0-9][A-Za-z0-9.]{0,63}):([0-9]{1,15})$")


class ReadOnly:
    """A connection that only reads: what reads.py and ChangeLog need of a Database."""

    def __init__(self, config: Config):
        self.config = config
        self.conn = sqlite3.connect(config.db_path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA query_only=1")
        self.conn.execute("PRAGMA busy_timeout=1000")
        self.execute = self.conn.execute

    def meta(self, key: str):
        row = self.execute("SELECT value FROM _meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.conn.close()


class _Owned:
    """One thread that owns one Store, opened on it at first use."""

    def __init__(self, config: Config, name: str):
        self.config = config
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.store: Store | None = None

    def _call(self, fn: Callable[[Store], T]) -> T:
        if self.store is None:
            self.store = agent.open_store(self.config)
        return fn(self.store)

    async def run(self, fn: Callable[[Store], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._call, fn)

    def close(self) -> None:
        def closing(store: Store) -> None:
            store.close()

        if self.store is not None:
            self.pool.submit(closing, self.store).result()
        self.pool.shutdown()


class Backend:
    def __init__(self, config: Config):
        self.config = config
        self.read = ReadOnly(config)
        self.log = ChangeLog(self.read, config.name)  # type: ignore[arg-type]
        self.writer = _Owned(config, "edgesync-writer")
        self.puller = _Owned(config, "edgesync-pull")
        self._pulling: asyncio.Future | None = None
        self.pulls = 0
        self.pull_failures = 0

    async def open(self) -> None:
        """Open the writer's and the puller's stores now, not at the first
        request that needs them (a bookmark's wait is short)."""
        await self.writer.run(lambda store: None)
        if self.config.role == "edge":
            await self.puller.run(lambda store: None)

    async def aclose(self) -> None:
        """Stop at shutdown: let a pull under way finish, then close the stores."""
        if self._pulling is not None:
            with contextlib.suppress(Exception):
                await self._pulling
        self.close()

    def close(self) -> None:
        self.writer.close()
        self.puller.close()
        self.read.close()

    async def write(self, fn: Callable[[Store], T]) -> T:
        return await self.writer.run(fn)

    # -- readiness ---------------------------------------------------------------

    def schema_problem(self) -> str | None:
        """Why this store cannot serve now, or None."""
        try:
            version = migrations.version_of(self.read)
        except (sqlite3.Error, EdgesyncError) as exc:
            return f"store unreadable: {exc}"
        if version is None:
            return "store not initialised"
        if version != migrations.SCHEMA:
            return f"schema {version}, this release reads {migrations.SCHEMA}"
        return None

    # -- bookmarks ---------------------------------------------------------------

    def holds(self, origin: str, seq: int) -> bool:
        return self.log.held().get(origin, 0) >= seq

    def farm_peers(self, origin: str) -> list[str]:
        """The peers a bookmark's write may be pulled from at once: an edge's
        farm peers (the topology lets an edge pull within its farm), the
        origin's own node first."""
        cfg = self.config
        if cfg.role != "edge":
            return []
        peers = [p.name for p in cfg.peers.values() if p.role == "edge" and p.farm == cfg.farm]
        node = origin.split(".")[0]
        return sorted(peers, key=lambda name: name != node)

    async def wait_for(self, bookmark: str, wait_s: float) -> bool:
        """True once this host holds the bookmark; pulls from a farm peer at
        once when it does not, and waits up to ``wait_s`` seconds."""
        origin, seq = bookmark.rsplit(":", 1)
        n = int(seq)
        if self.holds(origin, n):
            return True
        peers = self.farm_peers(origin)
        if peers and self._pulling is None:
            self._pulling = asyncio.ensure_future(self._pull(peers, origin, n))
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.005)
            if self.holds(origin, n):
                return True
        return False

    async def _pull(self, peers: list[str], origin: str, n: int) -> None:
        try:
            for peer in peers:
                self.pulls += 1
                try:
                    await self.puller.run(lambda store, p=peer: sync(store, p, "pull"))
                except EdgesyncError:
                    self.pull_failures += 1
                    continue
                if self.holds(origin, n):
                    return
        finally:
            self._pulling = None
