"""The local store: SQLite is the source of truth.

Every write stores the row and its change record in one transaction. Local
writes and changes from peers take the same path (``_apply``): a per-column
last-writer-wins upsert ordered by HLC stamps, deletes as tombstones, and the
change appended to the log so it can be forwarded. Applying a change twice, or
the same changes in any order, leaves the same visible content.

Each synced table ``T`` is stored as::

    T(id PRIMARY KEY, <columns>, _code, _want, slug, _deleted,
      _v_<column> ..., _v__code)

``_v_*`` hold the stamp of the change that last set each column; ``_want`` is
the slug the record asks for and ``slug`` the one it holds after clashes are
resolved (see slugs.py). Rowids, where SQLite keeps them, never leave the node.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from . import hlc, slugs
from .changes import CODE_COLUMN, check_value, encode, validate_batch
from .config import Config, TableSpec
from .errors import BadInput, NotFound
from .ids import code_of, is_valid_id, new_code, new_id, random_of
from .outbox import Publisher

SCHEMA_VERSION = 1
# Measured by benchmarks/bench_store.py: see README ("Storage layout").
WITHOUT_ROWID = False
_CHUNK = 500  # ids per IN (...) query


@dataclass
class ApplyResult:
    """What applying a batch did: new changes logged, duplicates skipped,
    and changes that lost at least one column to a newer stamp (conflicts)."""

    applied: int = 0
    skipped: int = 0
    conflicts: int = 0
    last_stamp: str | None = None


class Store:
    """One node's database. Not thread-safe; one Store per process or thread."""

    def __init__(self, config: Config, outbox=None, warn: Callable[[str], None] | None = None):
        self.config = config
        self.outbox = outbox
        self.warn = warn or (lambda msg: None)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(
            config.db_path, isolation_level=None, timeout=60, check_same_thread=False
        )
        self.db.execute("PRAGMA journal_mode=WAL")
        sync = "FULL" if config.durability == "full" else "NORMAL"
        self.db.execute(f"PRAGMA synchronous={sync}")
        self.db.execute("PRAGMA busy_timeout=60000")
        self.db.execute("PRAGMA cache_size=-16000")
        self.db.execute("PRAGMA wal_autocheckpoint=20000")
        self._sql: dict[str, dict[str, str]] = {}
        for spec in config.tables.values():
            self._sql[spec.name] = _statements(spec)
        self._outbox_checked = False
        self._publisher = None
        self._retry_at = 0.0
        self._unpublished: list[tuple[int, str]] = []
        # Peers this node pushes to: one consumer group each on the stream.
        self.push_targets: tuple[str, ...] = ()

    def close(self) -> None:
        """Finish queuing changes on Redis, then close the database."""
        self.flush()
        if self._publisher is not None:
            self._publisher.stop()
            self._publisher = None
        self.db.close()

    # -- schema -------------------------------------------------------------

    def init(self) -> None:
        """Create the schema; harmless to run again. New columns in the config
        are added to existing tables."""
        with self.transaction():
            ex = self.db.execute
            ex("CREATE TABLE IF NOT EXISTS _meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID")
            ex(
                "CREATE TABLE IF NOT EXISTS _clock(one INTEGER PRIMARY KEY CHECK (one = 1),"
                " stamp TEXT, own_seq INTEGER NOT NULL)"
            )
            ex("INSERT OR IGNORE INTO _clock VALUES (1, NULL, 0)")
            ex(
                "CREATE TABLE IF NOT EXISTS _changes(seq INTEGER PRIMARY KEY,"
                " origin TEXT NOT NULL, origin_seq INTEGER NOT NULL, body TEXT NOT NULL)"
            )
            # Changes logged ahead of their origin's held mark (they arrived out of
            # order); with _origins this is all duplicate detection needs, so the
            # log itself carries no index but its seq.
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
            ex("INSERT OR IGNORE INTO _meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            for spec in self.config.tables.values():
                self._create_table(spec)

    def _create_table(self, spec: TableSpec) -> None:
        t = _q(spec.name)
        exists = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (spec.name,)
        ).fetchone()
        if not exists:
            cols = ", ".join(_q(c) for c in spec.columns)
            vers = ", ".join(f"{_q('_v_' + c)} TEXT" for c in spec.columns)
            suffix = " WITHOUT ROWID" if WITHOUT_ROWID else ""
            self.db.execute(
                f"CREATE TABLE {t}(id TEXT PRIMARY KEY NOT NULL, {cols}, _code TEXT,"
                f" _want TEXT, slug TEXT, _deleted INTEGER NOT NULL DEFAULT 0, {vers},"
                f" _v__code TEXT){suffix}"
            )
        else:
            have = {r[1] for r in self.db.execute(f"PRAGMA table_info({t})")}
            for c in spec.columns:
                if c not in have:
                    self.db.execute(f"ALTER TABLE {t} ADD COLUMN {_q(c)}")
                    self.db.execute(f"ALTER TABLE {t} ADD COLUMN {_q('_v_' + c)} TEXT")
        self.db.execute(
            f"CREATE UNIQUE INDEX IF NOT EXISTS {_q(spec.name + '_slug')} ON {t}(slug)"
            " WHERE _deleted = 0 AND slug IS NOT NULL"
        )
        self.db.execute(
            f"CREATE INDEX IF NOT EXISTS {_q(spec.name + '_want')} ON {t}(_want)"
            " WHERE _want IS NOT NULL"
        )

    def check_schema(self) -> None:
        row = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='_changes'"
        ).fetchone()
        if not row:
            raise BadInput(f"database not initialised: run `edgesync init` ({self.config.db_path})")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; rolls back on any error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            self._unpublished.clear()
            raise
        self.db.execute("COMMIT")

    # -- local writes -------------------------------------------------------

    def put(self, table: str, data: object) -> dict:
        """Create a record, or update one when ``data`` carries an existing ``id``."""
        spec = self._spec(table)
        if not isinstance(data, dict):
            raise BadInput(f"data for {table} must be a JSON object")
        values = dict(data)
        rid = values.pop("id", None)
        if rid is not None and not is_valid_id(rid):
            raise BadInput(
                f"invalid id {rid!r}: expected EDGENODE-LOC-NNLL-RRRRRRRR-DDMMYYYYHHMMSS"
            )
        for col, value in values.items():
            if col not in spec.columns:
                raise BadInput(f"unknown column {table}.{col}")
            check_value(table, col, value, self.config.max_value_bytes)
        with self.transaction():
            if rid is None:
                rid = new_id(self.config.name, self.config.location)
                d = {c: values.get(c) for c in spec.columns}
                current = None
            else:
                current = self._row(spec, rid)
                if current is None:
                    raise NotFound(f"not found: {table} {rid}")
                d = {c: v for c, v in values.items() if current[c] != v}
            if spec.slug and (current is None or any(c in d for c in spec.slug)):
                code = self._free_code(spec, rid, {**(current or {}), **d}, current)
                if current is None or code != current["_code"]:
                    d[CODE_COLUMN] = code
            if d:
                self._write_local(spec.name, rid, "put", d)
            record = self._record(spec, rid)
        self._publish_pending()
        return record

    def delete(self, table: str, rid: str) -> None:
        spec = self._spec(table)
        if not is_valid_id(rid):
            raise BadInput(
                f"invalid id {rid!r}: expected EDGENODE-LOC-NNLL-RRRRRRRR-DDMMYYYYHHMMSS"
            )
        with self.transaction():
            if self._row(spec, rid) is None:
                raise NotFound(f"not found: {table} {rid}")
            self._write_local(spec.name, rid, "del", {})
        self._publish_pending()

    def _free_code(self, spec: TableSpec, rid: str, merged: dict, current: dict | None) -> str:
        """The record's slug code: its current one (or its ID's NNLL), unless the
        slug it makes is held here by another record; then a fresh one."""
        code = (current or {}).get("_code") or code_of(rid)
        values = [merged.get(c) for c in spec.slug]
        for _ in range(1000):
            want = slugs.wanted(values, code, spec.name)
            # Two queries, so each can use its partial index.
            taken = (
                self.db.execute(
                    f"SELECT 1 FROM {_q(spec.name)} WHERE _want = ? AND _deleted = 0 AND id != ?"
                    " LIMIT 1",
                    (want, rid),
                ).fetchone()
                or self.db.execute(
                    f"SELECT 1 FROM {_q(spec.name)} WHERE slug = ? AND _deleted = 0 AND id != ?"
                    " LIMIT 1",
                    (want, rid),
                ).fetchone()
            )
            if not taken:
                return code
            code = new_code()
        raise BadInput(f"no free slug code for {spec.name} {slugs.words(values, spec.name)!r}")

    def _write_local(self, table: str, rid: str, kind: str, d: dict) -> None:
        last, own_seq = self.db.execute("SELECT stamp, own_seq FROM _clock").fetchone()
        stamp = hlc.tick(last, self.config.name)
        own_seq += 1
        change = {
            "o": self.config.name,
            "n": own_seq,
            "h": stamp,
            "t": table,
            "i": rid,
            "k": kind,
            "d": d,
        }
        self._apply([change], local=True)
        self.db.execute("UPDATE _clock SET stamp = ?, own_seq = ?", (stamp, own_seq))

    # -- changes from elsewhere --------------------------------------------

    def apply_changes(
        self, changes: object, cursor: tuple[str, str, int] | None = None
    ) -> ApplyResult:
        """Apply a batch of change records from another node in one transaction.

        The batch is validated first and rejected whole (BadBatch) if any
        change is malformed. Changes already held are skipped. ``cursor``
        (peer, direction, seq) is moved in the same transaction.
        """
        batch = validate_batch(changes, self.config)
        with self.transaction():
            result = self._apply(batch)
            if cursor is not None:
                self.set_cursor(*cursor)
            if result.last_stamp is not None:
                last = self.db.execute("SELECT stamp FROM _clock").fetchone()[0]
                newest = hlc.later(last, result.last_stamp)
                if newest != last:
                    self.db.execute("UPDATE _clock SET stamp = ?", (newest,))
        self._publish_pending()
        return result

    def _apply(self, batch: list[dict], local: bool = False) -> ApplyResult:
        """Log and apply changes (already validated) inside the open transaction.

        ``local`` marks this node's own fresh writes, which cannot be duplicates
        or conflicts, so their checks are skipped.
        """
        result = ApplyResult()
        if local:
            held: dict[str, int] = {}
            new = batch
            for ch in batch:
                body = encode(ch)
                cur = self.db.execute(
                    "INSERT INTO _changes(origin, origin_seq, body) VALUES (?, ?, ?)",
                    (ch["o"], ch["n"], body),
                )
                self._unpublished.append((cur.lastrowid, body))
        else:
            held = self.held()
            new, marks = self._dedupe(batch, held)
            result.skipped = len(batch) - len(new)
            if new:
                self._log(new)
            for origin, mark in marks.items():
                if mark != held.get(origin, 0) and origin != self.config.name:
                    self.db.execute(
                        "INSERT INTO _origins(origin, held) VALUES (?, ?)"
                        " ON CONFLICT(origin) DO UPDATE SET held = excluded.held",
                        (origin, mark),
                    )
        result.applied = len(new)
        if not new:
            return result
        result.last_stamp = max(ch["h"] for ch in new)
        by_table: dict[str, list[dict]] = {}
        touched: dict[str, set[int]] = {}
        for ch in new:
            by_table.setdefault(ch["t"], []).append(ch)
            touched.setdefault(ch["o"], set()).add(ch["n"])
        for table, chs in by_table.items():
            result.conflicts += self._upsert(self.config.tables[table], chs, local)
        own = touched.get(self.config.name)
        if own and not local:
            # Our own changes came back (say, after this database was restored
            # from a backup): never number a new write like one already made.
            self.db.execute("UPDATE _clock SET own_seq = max(own_seq, ?)", (max(own),))
        return result

    def _dedupe(self, batch: list[dict], held: dict[str, int]) -> tuple[list, dict]:
        """The changes of ``batch`` not held here yet, and each origin's new held mark.

        A change at or below its origin's mark is held. One just above moves
        the mark (and past any early arrivals it joins up with). One further
        ahead is new unless recorded in _early, where it is then recorded.
        """
        marks: dict[str, int] = {}
        has_early: dict[str, bool] = {}
        early_here: set[tuple[str, int]] = set()
        new = []
        ex = self.db.execute
        for ch in batch:
            origin, n = ch["o"], ch["n"]
            mark = marks.get(origin)
            if mark is None:
                mark = marks[origin] = held.get(origin, 0)
                has_early[origin] = bool(
                    ex("SELECT 1 FROM _early WHERE origin = ? LIMIT 1", (origin,)).fetchone()
                )
            if n <= mark:
                continue
            if n == mark + 1:
                new.append(ch)
                mark = n
                while has_early[origin] or early_here:
                    nxt = (origin, mark + 1)
                    if nxt in early_here:
                        early_here.discard(nxt)
                    elif not (
                        has_early[origin]
                        and ex(
                            "DELETE FROM _early WHERE origin = ? AND origin_seq = ?", nxt
                        ).rowcount
                    ):
                        break
                    mark += 1
                marks[origin] = mark
                continue
            key = (origin, n)
            if key in early_here or (
                has_early[origin]
                and ex("SELECT 1 FROM _early WHERE origin = ? AND origin_seq = ?", key).fetchone()
            ):
                continue
            early_here.add(key)
            new.append(ch)
        if early_here:
            self.db.executemany("INSERT INTO _early VALUES (?, ?)", sorted(early_here))
        return new, marks

    def _log(self, new: list[dict]) -> None:
        """Append changes to the log; seqs follow on from the last one, as the
        log's INTEGER PRIMARY KEY numbers them inside our exclusive transaction."""
        bodies = [encode(ch) for ch in new]
        first = self.max_seq() + 1
        self.db.executemany(
            "INSERT INTO _changes(origin, origin_seq, body) VALUES (?, ?, ?)",
            [(ch["o"], ch["n"], body) for ch, body in zip(new, bodies, strict=True)],
        )
        self._unpublished.extend(zip(range(first, first + len(new)), bodies, strict=True))

    def _upsert(self, spec: TableSpec, chs: list[dict], local: bool) -> int:
        sql = self._sql[spec.name]
        names = sql["names"]
        conflicts = 0
        if not local:
            ids = list({ch["i"] for ch in chs})
            before: dict[str, tuple] = {}
            for i in range(0, len(ids), _CHUNK):
                part = ids[i : i + _CHUNK]
                query = sql["versions"].replace("?", ",".join("?" * len(part)))
                for row in self.db.execute(query, part):
                    before[row[0]] = row
            for ch in chs:
                old = before.get(ch["i"])
                # A conflict: a column this change sets already holds a newer stamp.
                if old is not None:
                    d, stamp = ch["d"], ch["h"]
                    if any((v := old[k]) is not None and v > stamp for k, c in names if c in d):
                        conflicts += 1
        params = []
        for ch in chs:
            d, stamp = ch["d"], ch["h"]
            row = [ch["i"]]
            for _k, c in names:
                if c in d:
                    row += (d[c], stamp)
                else:
                    row += (None, None)
            row.append(1 if ch["k"] == "del" else 0)
            params.append(row)
        self.db.executemany(sql["upsert"], params)
        if spec.slug:
            self._resolve_slugs(spec, list({ch["i"]: None for ch in chs}))
        return conflicts

    def _resolve_slugs(self, spec: TableSpec, ids: list[str]) -> None:
        """Recompute wanted slugs of the touched records, then settle every
        group of records wanting the same slug: the smallest ID holds it."""
        t = _q(spec.name)
        cols = ", ".join(_q(c) for c in spec.slug)
        groups: set[str] = set()
        for i in range(0, len(ids), _CHUNK):
            part = ids[i : i + _CHUNK]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(
                f"SELECT id, _deleted, _code, _want, {cols} FROM {t} WHERE id IN ({marks})", part
            ).fetchall()
            for rid, deleted, code, old_want, *values in rows:
                want = None
                if not deleted:
                    want = slugs.wanted(values, code or code_of(rid), spec.name)
                if want == old_want:
                    continue
                if old_want is not None:
                    groups.add(old_want)
                if want is None:
                    self.db.execute(f"UPDATE {t} SET _want = NULL WHERE id = ?", (rid,))
                    continue
                # Nobody else wants it (the usual case): take it at once.
                rivals = self.db.execute(
                    f"SELECT 1 FROM {t} WHERE _want = ? AND _deleted = 0 LIMIT 1", (want,)
                ).fetchone()
                if rivals:
                    self.db.execute(f"UPDATE {t} SET _want = ? WHERE id = ?", (want, rid))
                    groups.add(want)
                else:
                    self.db.execute(
                        f"UPDATE {t} SET _want = ?, slug = ? WHERE id = ?", (want, want, rid)
                    )
        for want in sorted(groups):
            members = self.db.execute(
                f"SELECT id, slug FROM {t} WHERE _want = ? AND _deleted = 0 ORDER BY id", (want,)
            ).fetchall()
            # Losers first, so the winner's slug is free when it takes it.
            for rid, slug in members[1:]:
                fb = slugs.fallback(want, random_of(rid))
                if slug != fb:
                    self.db.execute(f"UPDATE {t} SET slug = ? WHERE id = ?", (fb, rid))
            if members and members[0][1] != want:
                self.db.execute(f"UPDATE {t} SET slug = ? WHERE id = ?", (want, members[0][0]))

    # -- reads --------------------------------------------------------------

    def _spec(self, table: str) -> TableSpec:
        spec = self.config.tables.get(table)
        if spec is None:
            known = ", ".join(sorted(self.config.tables)) or "none"
            raise BadInput(f"unknown table {table!r} (configured: {known})")
        return spec

    def _row(self, spec: TableSpec, rid: str) -> dict | None:
        cur = self.db.execute(
            f"SELECT * FROM {_q(spec.name)} WHERE id = ? AND _deleted = 0", (rid,)
        )
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def _record(self, spec: TableSpec, rid: str) -> dict:
        row = self._row(spec, rid)
        if row is None:
            raise NotFound(f"not found: {spec.name} {rid}")
        return _public(spec, row)

    def get(self, table: str, rid: str) -> dict:
        spec = self._spec(table)
        if not is_valid_id(rid):
            raise BadInput(
                f"invalid id {rid!r}: expected EDGENODE-LOC-NNLL-RRRRRRRR-DDMMYYYYHHMMSS"
            )
        return self._record(spec, rid)

    def get_by_slug(self, table: str, slug: str) -> dict:
        spec = self._spec(table)
        if not spec.slug:
            raise BadInput(f"table {table!r} has no slug")
        row = self.db.execute(
            f"SELECT id FROM {_q(table)} WHERE slug = ? AND _deleted = 0", (slug,)
        ).fetchone()
        if row is None:
            raise NotFound(f"not found: {table} slug {slug!r}")
        return self._record(spec, row[0])

    def rows(self, table: str) -> int:
        spec = self._spec(table)
        return self.db.execute(
            f"SELECT count(*) FROM {_q(spec.name)} WHERE _deleted = 0"
        ).fetchone()[0]

    def digest(self) -> str:
        """A hex digest of the visible content of every synced table.

        Rows are hashed in ID order, so the digest depends only on which
        records (with which values and slugs) are visible, not on write order.
        """
        import hashlib

        h = hashlib.sha256()
        for name in sorted(self.config.tables):
            spec = self.config.tables[name]
            cols = ", ".join(_q(c) for c in spec.columns)
            h.update(json.dumps(["table", name, list(spec.columns)]).encode())
            for row in self.db.execute(
                f"SELECT id, {cols}, slug FROM {_q(name)} WHERE _deleted = 0 ORDER BY id"
            ):
                h.update(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode())
                h.update(b"\n")
        return h.hexdigest()

    # -- the change log -----------------------------------------------------

    def max_seq(self) -> int:
        return self.db.execute("SELECT coalesce(max(seq), 0) FROM _changes").fetchone()[0]

    def changes_after(self, seq: int, limit: int) -> list[tuple[int, str, str, int]]:
        """(seq, body, origin, origin_seq) of logged changes after ``seq``, in log order."""
        return self.db.execute(
            "SELECT seq, body, origin, origin_seq FROM _changes WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()

    def held(self) -> dict[str, int]:
        """For every origin, the highest sequence held with nothing missing below it."""
        held = dict(self.db.execute("SELECT origin, held FROM _origins"))
        own = self.db.execute("SELECT own_seq FROM _clock").fetchone()[0]
        if own:  # this node's own changes are numbered by _clock, without gaps
            held[self.config.name] = own
        return held

    def cursor(self, peer: str, direction: str) -> int:
        row = self.db.execute(
            "SELECT seq FROM _cursors WHERE peer = ? AND direction = ?", (peer, direction)
        ).fetchone()
        return row[0] if row else 0

    def set_cursor(self, peer: str, direction: str, seq: int) -> None:
        self.db.execute(
            "INSERT INTO _cursors VALUES (?, ?, ?) ON CONFLICT(peer, direction)"
            " DO UPDATE SET seq = max(seq, excluded.seq)",
            (peer, direction, seq),
        )

    def outbox_pending(self, targets: Iterable[str]) -> int:
        """Changes in the log not yet acknowledged by every push target."""
        targets = list(targets)
        acked = min((self.cursor(t, "push") for t in targets), default=0)
        return self.db.execute("SELECT count(*) FROM _changes WHERE seq > ?", (acked,)).fetchone()[
            0
        ]

    # -- the Redis outbox ---------------------------------------------------

    def _publish_pending(self) -> None:
        """Queue changes logged by the last transaction on the Redis stream.

        Redis failing never fails a write: the change is safe in SQLite, the
        gap is remembered there, and the stream is caught up from the log the
        next time Redis answers. The first write of a process catches up
        synchronously; later ones go through the background publisher.
        """
        entries, self._unpublished = self._unpublished, []
        if self.outbox is None or not entries:
            return
        self._check_publisher()
        if self._outbox_checked and len(entries) < 100:
            self._publisher.submit(entries)
            return
        if self._outbox_checked:
            # A whole batch is one stream entry: send it now rather than have
            # the publisher thread pack it while this one applies the next.
            self._publisher.flush()
            try:
                self.outbox.publish(entries)
            except self.outbox.Unavailable as exc:
                self._outbox_down(entries[0][0], str(exc))
            return
        if time.monotonic() < self._retry_at:
            return  # down a moment ago; the gap recorded then covers these
        try:
            self.catch_up_outbox(exclude={seq for seq, _body in entries})
            self.outbox.publish(entries)
        except self.outbox.Unavailable as exc:
            self._outbox_down(entries[0][0], str(exc))

    def _check_publisher(self) -> None:
        if self._publisher is not None:
            failed = self._publisher.take_failure()
            if failed is not None:
                self._outbox_down(*failed)

    def _outbox_down(self, first_seq: int, error: str) -> None:
        self._outbox_checked = False
        self._retry_at = time.monotonic() + 1.0
        self._remember_gap(first_seq)
        self.warn(f"warning: redis unavailable ({error}); change kept in SQLite, queued later")

    def flush(self) -> None:
        """Wait until every committed change has been queued on Redis (or the
        failure recorded)."""
        if self._publisher is not None:
            self._publisher.flush()
            self._check_publisher()

    def catch_up_outbox(self, exclude: set[int] | frozenset = frozenset()) -> int:
        """Bring the Redis stream level with the change log; returns changes queued."""
        gap = self.gap_from()
        added = self.outbox.catch_up(self, gap, self.push_targets, set(exclude))
        if gap is not None:
            with self.transaction():
                self.db.execute(
                    "DELETE FROM _meta WHERE key = 'stream_gap_from' AND value = ?", (gap,)
                )
        self._outbox_checked = True
        if self._publisher is None:
            self._publisher = Publisher(self.outbox)
        return added

    def _remember_gap(self, seq: int) -> None:
        try:
            with self.transaction():
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
        row = self.db.execute("SELECT value FROM _meta WHERE key = 'stream_epoch'").fetchone()
        if row:
            return row[0]
        with self.transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO _meta VALUES ('stream_epoch', ?)", (os.urandom(8).hex(),)
            )
        return self.db.execute("SELECT value FROM _meta WHERE key = 'stream_epoch'").fetchone()[0]

    def gap_from(self) -> int | None:
        """The first change that may be missing from the Redis stream, if any."""
        row = self.db.execute("SELECT value FROM _meta WHERE key = 'stream_gap_from'").fetchone()
        return row[0] if row else None

    def stream_feed(self, peer: str):
        """The peer's consumer group on the outbox, or None without Redis."""
        if self.outbox is None or peer not in self.push_targets:
            return None
        self.flush()
        try:
            if not self._outbox_checked:
                self.catch_up_outbox()
            return self.outbox.feed(peer)
        except self.outbox.Unavailable as exc:
            self.warn(f"warning: redis unavailable ({exc}); pushing from the SQLite log")
            return None

    def trim_outbox(self) -> None:
        if self.outbox is None:
            return
        with suppress(self.outbox.Unavailable):
            self.outbox.trim(self.push_targets)

    def record_refusal(self, peer: str, action: str, rule: str) -> None:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self.transaction():
            self.db.execute("INSERT INTO _refusals VALUES (?, ?, ?, ?)", (at, peer, action, rule))

    def refusals(self, last: int = 20) -> dict:
        count = self.db.execute("SELECT count(*) FROM _refusals").fetchone()[0]
        rows = self.db.execute(
            "SELECT at, peer, action, rule FROM _refusals ORDER BY rowid DESC LIMIT ?", (last,)
        ).fetchall()
        return {
            "count": count,
            "last": [dict(zip(("at", "peer", "action", "rule"), r, strict=True)) for r in rows],
        }

    # -- status -------------------------------------------------------------

    def status(self) -> dict:
        self.flush()
        redis = "down"
        if self.outbox is not None:
            try:
                self.outbox.ping()
                redis = "ok"
            except self.outbox.Unavailable:
                redis = "down"
        return {
            "node": self.config.name,
            "location": self.config.location,
            "role": self.config.role,
            "farm": self.config.farm,
            "rows": {t: self.rows(t) for t in sorted(self.config.tables)},
            "changes": self.max_seq(),
            "outbox_pending": self.outbox_pending(self.push_targets),
            "redis": redis,
            "held": self.held(),
            "refusals": self.refusals(),
            "cursors": [
                {"peer": p, "direction": d, "seq": q}
                for p, d, q in self.db.execute("SELECT peer, direction, seq FROM _cursors")
            ],
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _public(spec: TableSpec, row: dict) -> dict:
    out = {"id": row["id"]}
    for c in spec.columns:
        out[c] = row[c]
    if spec.slug:
        out["slug"] = row["slug"]
    return out


def _statements(spec: TableSpec) -> dict[str, str]:
    t = _q(spec.name)
    names = (*spec.columns, CODE_COLUMN)
    insert_cols = ["id"]
    sets = []
    for c in names:
        v = _q("_v_" + c)
        insert_cols += [_q(c), v]
        newer = f"excluded.{v} > coalesce({t}.{v}, '')"
        sets.append(f"{_q(c)} = CASE WHEN {newer} THEN excluded.{_q(c)} ELSE {t}.{_q(c)} END")
        sets.append(f"{v} = CASE WHEN {newer} THEN excluded.{v} ELSE {t}.{v} END")
    insert_cols.append("_deleted")
    sets.append(f"_deleted = max({t}._deleted, excluded._deleted)")
    marks = ", ".join("?" * len(insert_cols))
    upsert = (
        f"INSERT INTO {t}({', '.join(insert_cols)}) VALUES ({marks})"
        f" ON CONFLICT(id) DO UPDATE SET {', '.join(sets)}"
    )
    version_cols = ", ".join(_q("_v_" + c) for c in names)
    return {
        "upsert": upsert,
        "versions": f"SELECT id, {version_cols} FROM {t} WHERE id IN (?)",
        # (position in a versions row, column name)
        "names": tuple((k + 1, c) for k, c in enumerate(names)),
    }
