"""The database: one SQLite file per node, how it is opened, and its schema.

Bookkeeping tables (names begin with ``_``)::

    _meta(key, value)                    schema_version, stream_epoch, stream_gap_from,
                                         log_id (names this log; pullers' cursors
                                         count only for the log_id they saw), log_id:PEER,
                                         at:PEER (what stood at a pull cursor), held:PEER
                                         (what a push target held after the last push)
    _clock(one, stamp, own_seq)          this node's last HLC stamp and own sequence
    _signing(one, origin, head, confirmed)  this node's origin (its name, or NAME.INCARNATION
                                         after a restore), chain head, and the highest own
                                         sequence a peer was seen to hold unchanged
    _own(n, seq, chain)                  this origin's changes: log position and chain value
    _heads(origin, n, body)              per other origin, its highest change held here
    _changes(seq, origin, origin_seq, body)   the change log (see changelog.py)
    _early(origin, origin_seq)           changes logged ahead of their origin's held mark
    _origins(origin, held)               per origin, the highest sequence held without gaps
    _cursors(peer, direction, seq)       sync positions per peer
    _refusals(at, peer, action, rule)    sessions refused by the policy
    _links(peer, action, initiated, ...)  sync sessions with each peer (history.py)

Each synced table ``T`` is stored as::

    T(id PRIMARY KEY, <columns>, _code, _want, slug, _deleted,
      _v_<column> ..., _v__code)

``_v_*`` hold the stamp of the change that last set each column; ``_want`` is
the slug the record asks for and ``slug`` the one it holds after clashes are
settled (see slug_settlement.py). Rowids, where SQLite keeps them, never leave
the node.

The schema version is written at ``init`` and read at every open: a database
made by another release is refused rather than misread; ``edgesync migrate``
moves it between versions (migrations.py).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import migrations
from .config import Config, TableSpec
from .errors import BadInput
from .signing import GENESIS

SCHEMA_VERSION = migrations.SCHEMA
# Measured by benchmarks/bench_store.py: see README ("Storage layout").
WITHOUT_ROWID = False
IN_CHUNK = 500  # ids per "IN (...)" query: far below SQLite's limit on parameters


def q(name: str) -> str:
    """An SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


# WAL pages after which a commit checkpoints.
AUTOCHECKPOINT = 20_000
# How often checkpoints_apart's thread checkpoints (seconds).
CHECKPOINT_EVERY_S = 0.2

# Seconds a write waits for another process's transaction before it fails
# ("database is locked": exit 5).
LOCK_WAIT = 60.0


class Database:
    """The node's SQLite connection (WAL) and its schema."""

    def __init__(self, config: Config):
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False: the relay's publisher thread never touches
        # the database, but the connection may be closed from another thread.
        self.conn = sqlite3.connect(
            config.db_path, isolation_level=None, timeout=60, check_same_thread=False
        )
        self.execute = self.conn.execute
        self.executemany = self.conn.executemany
        self.execute("PRAGMA journal_mode=WAL")
        self.synchronous = "FULL" if config.durability == "full" else "NORMAL"
        self.execute(f"PRAGMA synchronous={self.synchronous}")
        # A write waits for another process's transaction LOCK_WAIT seconds in
        # all, a second at a time inside SQLite (see transaction()).
        self.execute("PRAGMA busy_timeout=1000")
        self.execute("PRAGMA cache_size=-16000")
        # Checkpoints every 1,000 pages (the default) cost a third of the write rate.
        self.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT}")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def checkpoints_apart(self) -> Iterator[None]:
        """For a session that applies batch after batch: a thread with a
        connection of its own moves the WAL into the database every
        CHECKPOINT_EVERY_S, syncing as this connection would (PASSIVE: it never
        waits for a writer), so the checkpoint a commit makes at AUTOCHECKPOINT
        pages finds little left to copy, and the WAL starts over from there as
        it always does (its size stays bounded).

        At a million changes checkpoints are most of a session's commit time
        (random record IDs touch a page of the ID index per change, and each
        checkpoint writes and syncs them); beside the session they overlap the
        next batch's work (SQLite runs without the GIL).
        benchmarks/bench_store.py. Without its connection, commits checkpoint
        alone, as outside a session."""
        worker = None
        stop = threading.Event()
        uri = f"{self.config.db_path.resolve().as_uri()}?mode=rw"  # never makes a file
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=0,
                                   check_same_thread=False)  # fmt: skip
        except sqlite3.Error:
            conn = None

        def checkpoint() -> None:
            try:
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
                while not stop.wait(CHECKPOINT_EVERY_S):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error:
                pass  # busy, interrupted, or worse: the commits checkpoint alone
            finally:
                conn.close()

        if conn is not None:
            worker = threading.Thread(target=checkpoint, name="edgesync-checkpoint", daemon=True)
            try:
                worker.start()
            except RuntimeError:  # no thread to be had
                conn.close()
                worker = None
        try:
            yield
        finally:
            if worker is not None:
                stop.set()
                conn.interrupt()  # a checkpoint under way ends now, whatever the disk does
                worker.join(CHECKPOINT_EVERY_S * 10)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; rolls back on any error, a failed COMMIT's too.

        Waiting for another process's write lock returns to Python every second,
        so a session's deadline (a signal, deadlines.py) can end the wait."""
        waited_until = time.monotonic() + LOCK_WAIT
        while True:
            try:
                self.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= waited_until:
                    raise
        try:
            yield self.conn
            self.execute("COMMIT")
        except BaseException:
            # Also when COMMIT itself failed (a full disk, an I/O error): SQLite
            # may or may not have rolled back already, and a transaction left
            # open would carry the failed change's chain head into the next.
            if self.conn.in_transaction:
                self.execute("ROLLBACK")
            raise

    def backup(self, path: str | os.PathLike | None = None) -> dict:
        """A consistent copy of the database (SQLite's online backup: writers
        go on meanwhile), written beside its place and renamed into it, so a
        half-made copy never stands under the name (and none is left behind
        when it fails). Refuses an existing file."""
        version = migrations.version_of(self)
        if version is None:
            raise BadInput(f"database not initialised: run `edgesync init` ({self.config.db_path})")
        if path is None:
            now = time.time()
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{now % 1:.6f}"[1:]
            path = self.config.data_dir / "backups" / f"edgesync-schema{version}-{stamp}Z.db"
        path = Path(path)
        if path.is_dir():
            raise BadInput(f"backup {path} is a directory: name a file")
        if path.exists():
            raise BadInput(f"backup {path} already exists: name another file")
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        leftovers = (part, part.with_name(part.name + "-journal"))
        try:
            target = sqlite3.connect(part)
            try:
                self.conn.backup(target)
            finally:
                target.close()
            with open(part, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(part, path)
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except BaseException:
            for leftover in leftovers:
                leftover.unlink(missing_ok=True)
            raise
        return {"backup": str(path), "schema": version, "bytes": path.stat().st_size}

    @staticmethod
    def check_backup(path: str | os.PathLike, name: str | None = None,
                     limit_s: float = 600.0) -> dict:  # fmt: skip
        """A backup's copy, checked where it arrived: SQLite's ``PRAGMA
        integrity_check`` answers ``ok``, and it is an edgesync database (its
        schema version, change log and origin are tables and readable) of node
        ``name`` when given (a copy of another host would sign as that one).
        The file came from a host: opened read-only, no lock, no -wal made,
        the schema's own code never run (trusted_schema off, only tables
        read), and the whole check stopped after ``limit_s``. Raises BadInput
        naming what is wrong."""
        path = Path(path)
        if not path.is_file():
            raise BadInput(f"backup {path}: no such file")
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        except sqlite3.Error as exc:
            raise BadInput(f"backup {path}: cannot be opened: {exc}") from None
        deadline = time.monotonic() + limit_s
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 100_000)
        try:
            try:
                conn.execute("PRAGMA trusted_schema = OFF")
                found = [row[0] for row in conn.execute("PRAGMA integrity_check")]
                tables = {r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")}  # fmt: skip
            except sqlite3.DatabaseError as exc:
                if time.monotonic() > deadline:
                    raise BadInput(f"backup {path}: its check took over {limit_s:.0f} s") from None
                raise BadInput(f"backup {path}: damaged, or not a database: {exc}") from None
            if found != ["ok"]:
                raise BadInput(f"backup {path}: integrity_check failed: {str(found[0])[:200]}")
            missing = [t for t in ("_meta", "_changes", "_signing") if t not in tables]
            if missing:
                raise BadInput(f"backup {path}: not an edgesync database: no table {missing[0]}")
            try:
                row = conn.execute(
                    "SELECT value FROM _meta WHERE key = 'schema_version'"
                ).fetchone()
                changes = conn.execute("SELECT count(*) FROM _changes").fetchone()[0]
                origin = conn.execute("SELECT origin FROM _signing").fetchone()
            except sqlite3.DatabaseError as exc:
                raise BadInput(f"backup {path}: not an edgesync database: {exc}") from None
        finally:
            conn.close()
        try:
            schema = int(row[0]) if row is not None else None
        except (TypeError, ValueError):
            schema = None
        if schema is None:
            raise BadInput(f"backup {path}: not an edgesync database: no schema version")
        origin = origin[0] if origin and isinstance(origin[0], str) else ""
        node = origin.split(".", 1)[0]
        if name is not None and node != name:
            raise BadInput(f"backup {path}: a copy of {node[:40] or 'no node'!r}, not of {name}")
        return {"backup": str(path), "integrity": "ok", "schema": schema, "node": node,
                "changes": changes, "bytes": path.stat().st_size}  # fmt: skip

    def prune_backups(self, keep: int) -> list[str]:
        """Remove all but the ``keep`` newest backups in DATA_DIR/backups (the
        ones ``backup`` names itself; nothing else there is touched). Returns
        the paths removed."""
        if keep < 1:
            raise BadInput(f"--keep {keep}: keep at least 1 backup")
        where = self.config.data_dir / "backups"
        if not where.is_dir():
            return []
        # Their names sort by time (a fixed-width UTC stamp after the schema).
        ours = sorted((p for p in where.glob("edgesync-schema*-*Z.db") if p.is_file()),
                      key=lambda p: p.name.split("-", 2)[2])  # fmt: skip
        gone = ours[: max(0, len(ours) - keep)]
        for p in gone:
            p.unlink(missing_ok=True)
        return [str(p) for p in gone]

    # -- _meta ----------------------------------------------------------------

    def meta(self, key: str):
        row = self.execute("SELECT value FROM _meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # -- schema ---------------------------------------------------------------

    def init_schema(self) -> None:
        """Create the schema; harmless to run again. New columns in the config
        are added to existing tables."""
        with self.transaction():
            ex = self.execute
            ex("CREATE TABLE IF NOT EXISTS _meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID")
            self._check_version()
            fresh = self.meta("schema_version") is None
            ex(
                "CREATE TABLE IF NOT EXISTS _clock(one INTEGER PRIMARY KEY CHECK (one = 1),"
                " stamp TEXT, own_seq INTEGER NOT NULL)"
            )
            ex("INSERT OR IGNORE INTO _clock VALUES (1, NULL, 0)")
            ex(
                "CREATE TABLE IF NOT EXISTS _signing(one INTEGER PRIMARY KEY CHECK (one = 1),"
                " origin TEXT NOT NULL, head TEXT NOT NULL, confirmed INTEGER NOT NULL)"
            )
            ex(
                "INSERT OR IGNORE INTO _signing VALUES (1, ?, ?, 0)",
                (self.config.name, GENESIS),
            )
            ex(
                "CREATE TABLE IF NOT EXISTS _own(n INTEGER PRIMARY KEY, seq INTEGER NOT NULL,"
                " chain TEXT NOT NULL)"
            )
            ex(
                "CREATE TABLE IF NOT EXISTS _heads(origin TEXT PRIMARY KEY, n INTEGER NOT NULL,"
                " body TEXT NOT NULL) WITHOUT ROWID"
            )
            ex(
                "CREATE TABLE IF NOT EXISTS _changes(seq INTEGER PRIMARY KEY,"
                " origin TEXT NOT NULL, origin_seq INTEGER NOT NULL, body TEXT NOT NULL)"
            )
            # With _origins this is all duplicate detection needs; the log's one
            # other index (schema 5, migrations.py) finds a change by origin
            # and number, for fork detection (forks.py).
            ex(
                "CREATE TABLE IF NOT EXISTS _early(origin TEXT NOT NULL,"
                " origin_seq INTEGER NOT NULL, PRIMARY KEY (origin, origin_seq)) WITHOUT ROWID"
            )
            ex(
                "CREATE TABLE IF NOT EXISTS _origins(origin TEXT PRIMARY KEY,"
                " held INTEGER NOT NULL) WITHOUT ROWID"
            )
            ex(
                "CREATE TABLE IF NOT EXISTS _cursors(peer TEXT NOT NULL, direction TEXT NOT NULL,"
                " seq INTEGER NOT NULL, PRIMARY KEY (peer, direction)) WITHOUT ROWID"
            )
            ex(
                "CREATE TABLE IF NOT EXISTS _refusals(at TEXT NOT NULL, peer TEXT NOT NULL,"
                " action TEXT NOT NULL, rule TEXT NOT NULL)"
            )
            # A new database is made at this release's schema; an existing one
            # is at it already (_check_version).
            for version in range(migrations.OLDEST + 1, SCHEMA_VERSION + 1 if fresh else 0):
                for sql in migrations.STEPS[version].up:
                    ex(sql)
            ex("INSERT OR IGNORE INTO _meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            ex("INSERT OR IGNORE INTO _meta VALUES ('log_id', ?)", (os.urandom(8).hex(),))
            for spec in self.config.tables.values():
                self._create_table(spec)

    def check_schema(self) -> None:
        """Refuse a database that was never initialised or that a newer release made."""
        row = self.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='_changes'"
        ).fetchone()
        if not row:
            raise BadInput(f"database not initialised: run `edgesync init` ({self.config.db_path})")
        self._check_version()

    def _check_version(self) -> None:
        version = migrations.version_of(self)
        if version is None or version == SCHEMA_VERSION:
            return
        path = self.config.db_path
        migrations.known(version, path)
        raise BadInput(
            f"database schema version {version} is older than this edgesync's "
            f"{SCHEMA_VERSION} ({migrations.describe(SCHEMA_VERSION)}): back it up and run "
            f"`edgesync migrate`: {path}"
        )

    def _create_table(self, spec: TableSpec) -> None:
        t = q(spec.name)
        exists = self.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (spec.name,)
        ).fetchone()
        if not exists:
            cols = ", ".join(q(c) for c in spec.columns)
            vers = ", ".join(f"{q('_v_' + c)} TEXT" for c in spec.columns)
            suffix = " WITHOUT ROWID" if WITHOUT_ROWID else ""
            self.execute(
                f"CREATE TABLE {t}(id TEXT PRIMARY KEY NOT NULL, {cols}, _code TEXT,"
                f" _want TEXT, slug TEXT, _deleted INTEGER NOT NULL DEFAULT 0, {vers},"
                f" _v__code TEXT){suffix}"
            )
        else:
            have = {r[1] for r in self.execute(f"PRAGMA table_info({t})")}
            for c in spec.columns:
                if c not in have:
                    self.execute(f"ALTER TABLE {t} ADD COLUMN {q(c)}")
                    self.execute(f"ALTER TABLE {t} ADD COLUMN {q('_v_' + c)} TEXT")
        self.execute(
            f"CREATE UNIQUE INDEX IF NOT EXISTS {q(spec.name + '_slug')} ON {t}(slug)"
            " WHERE _deleted = 0 AND slug IS NOT NULL"
        )
        self.execute(
            f"CREATE INDEX IF NOT EXISTS {q(spec.name + '_want')} ON {t}(_want)"
            " WHERE _want IS NOT NULL"
        )
