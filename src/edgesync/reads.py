"""Reading records: by ID, by slug, counts, and the digest of visible content
(in total, per table, and per bucket of records for narrowing a difference).

Only what a user sees leaves here: a record is its ID, its columns and (for
tables with a slug) its slug; tombstoned records are not found.
"""

from __future__ import annotations

import functools
import hashlib
import json

from .config import Config, TableSpec
from .db import Database, q
from .errors import BadInput, NotFound
from .ids import is_valid_id


def spec_of(config: Config, table: str) -> TableSpec:
    """The configured table ``table``; BadInput naming it otherwise."""
    spec = config.tables.get(table)
    if spec is None:
        known = ", ".join(sorted(config.tables)) or "none"
        raise BadInput(f"unknown table {table!r} (configured: {known})")
    return spec


def check_id(rid: object) -> str:
    if not is_valid_id(rid):
        raise BadInput(f"invalid id {rid!r}: expected EDGENODE-LOC-NNLL-RRRRRRRR-DDMMYYYYHHMMSS")
    return rid  # type: ignore[return-value]


def row(db: Database, spec: TableSpec, rid: str) -> dict | None:
    """The stored row (bookkeeping columns included), or None if absent or deleted."""
    cur = db.execute(f"SELECT * FROM {q(spec.name)} WHERE id = ? AND _deleted = 0", (rid,))
    found = cur.fetchone()
    if found is None:
        return None
    return dict(zip([d[0] for d in cur.description], found, strict=True))


@functools.cache
def _shown(spec: TableSpec) -> tuple[str, tuple[str, ...]]:
    """The columns a user sees, in the order a record shows them: the SELECT
    list and the names (made once per table)."""
    names = ("id", *spec.columns, *(("slug",) if spec.slug else ()))
    return ", ".join(q(c) for c in names), names


@functools.cache
def _one_sql(spec: TableSpec, where: str) -> str:
    return f"SELECT {_shown(spec)[0]} FROM {q(spec.name)} WHERE {where} = ? AND _deleted = 0"


def _one(db: Database, spec: TableSpec, where: str, arg: str) -> dict | None:
    found = db.execute(_one_sql(spec, where), (arg,)).fetchone()
    return None if found is None else dict(zip(_shown(spec)[1], found, strict=True))


def record(db: Database, spec: TableSpec, rid: str) -> dict:
    """The record as a user sees it; NotFound if absent or deleted."""
    found = _one(db, spec, "id", rid)
    if found is None:
        raise NotFound(f"not found: {spec.name} {rid}")
    return found


def by_slug(db: Database, spec: TableSpec, slug: str) -> dict:
    if not spec.slug:
        raise BadInput(f"table {spec.name!r} has no slug")
    found = _one(db, spec, "slug", slug)
    if found is None:
        raise NotFound(f"not found: {spec.name} slug {slug!r}")
    return found


def moved(db: Database, spec: TableSpec, slug: str) -> str | None:
    """The slug now held by the record that once held ``slug`` (which no
    visible record holds now), or None: the record is gone, or never held it."""
    found = db.execute(
        f"SELECT r.slug FROM _slug_history h JOIN {q(spec.name)} r ON r.id = h.id"
        " WHERE h.tbl = ? AND h.slug = ? AND r._deleted = 0 AND r.slug IS NOT NULL",
        (spec.name, slug),
    ).fetchone()
    return found[0] if found and found[0] != slug else None


def page(db: Database, spec: TableSpec, after: str | None, limit: int) -> list[dict]:
    """Up to ``limit`` visible records in ID order, after the ID ``after``: a
    page of a listing whose position is an ID, so writes meanwhile neither skip
    nor repeat a record that was there before."""
    cols, names = _shown(spec)
    rows = db.execute(
        f"SELECT {cols} FROM {q(spec.name)} WHERE _deleted = 0 AND id > ? ORDER BY id LIMIT ?",
        (after or "", limit),
    ).fetchall()
    return [dict(zip(names, r, strict=True)) for r in rows]


def count(db: Database, spec: TableSpec) -> int:
    return db.execute(f"SELECT count(*) FROM {q(spec.name)} WHERE _deleted = 0").fetchone()[0]


# A bucket this small is answered with its records rather than split further.
RECORDS_AT_MOST = 32
_HEX = frozenset("0123456789abcdef")


def _visible(db: Database, spec: TableSpec):
    """The visible rows of ``spec`` in ID order, as digest() hashes them: ID,
    the configured columns, slug."""
    cols = ", ".join(q(c) for c in spec.columns)
    return db.execute(f"SELECT id, {cols}, slug FROM {q(spec.name)} WHERE _deleted = 0 ORDER BY id")


def _row_bytes(found) -> bytes:
    """A row's canonical form: the one copy, so that the total digest, the
    per-table digests and the row hashes all agree on what a row is."""
    return json.dumps(found, ensure_ascii=False, separators=(",", ":")).encode()


def row_hash(found) -> str:
    """The hash of one visible row (as _visible gives it): equal rows hash equal
    on every node."""
    return hashlib.sha256(_row_bytes(found)).hexdigest()


def digest_tables(db: Database, config: Config) -> dict:
    """The total digest and, per table, the digest of that table's part of it
    and its visible rows: ``{"digest": hex, "tables": {name: {"digest", "rows"}}}``.

    Rows are hashed in ID order, so the digests depend only on which records
    (with which values and slugs) are visible, not on write order. A table's
    digest hashes exactly the bytes it adds to the total, so the controller can
    tell which tables make two totals differ.
    """
    total = hashlib.sha256()
    tables = {}
    for name in sorted(config.tables):
        spec = config.tables[name]
        part = hashlib.sha256()
        header = json.dumps(["table", name, list(spec.columns)]).encode()
        total.update(header)
        part.update(header)
        rows = 0
        for found in _visible(db, spec):
            line = _row_bytes(found) + b"\n"
            total.update(line)
            part.update(line)
            rows += 1
        tables[name] = {"digest": part.hexdigest(), "rows": rows}
    return {"digest": total.hexdigest(), "tables": tables}


def digest(db: Database, config: Config) -> str:
    """A hex digest of the visible content of every synced table (see digest_tables)."""
    return digest_tables(db, config)["digest"]


def bucket_key(rid: str) -> str:
    """Where a record falls in the digest tree: the hash of its ID, so that
    buckets are even whatever the IDs look like."""
    return hashlib.sha256(rid.encode()).hexdigest()


def check_prefix(prefix: object) -> str:
    """A bucket prefix: lowercase hex, at most as long as a bucket key."""
    if not isinstance(prefix, str) or len(prefix) > 64 or not set(prefix) <= _HEX:
        shown = repr(prefix)[:80]
        raise BadInput(f"invalid prefix {shown}: expected at most 64 lowercase hex digits")
    return prefix


def split(prefix: str, hashes) -> dict[str, dict]:
    """The child buckets of ``prefix`` holding rows, from ``(id, row_hash)``
    pairs: ``{prefix + c: {"digest": hex, "rows": n}}``.

    A bucket's digest hashes its IDs and row hashes in ID order, so it is equal
    on two nodes exactly when they hold the same rows there. Pairs outside
    ``prefix`` are left out; the controller uses this too, to split a node's
    record list the way that node would have split it.
    """
    depth = len(prefix)
    grouped: dict[str, list[tuple[str, str]]] = {}
    for rid, h in hashes:
        key = bucket_key(rid)
        if key.startswith(prefix) and depth < len(key):
            grouped.setdefault(key[: depth + 1], []).append((rid, h))
    out = {}
    for child in sorted(grouped):
        h = hashlib.sha256()
        for rid, rh in sorted(grouped[child]):
            h.update(f"{rid} {rh}\n".encode())
        out[child] = {"digest": h.hexdigest(), "rows": len(grouped[child])}
    return out


def bucket_answer(table: str, prefix: str, hashes) -> dict:
    """A node's answer about the rows of ``table`` under ``prefix``, from all its
    ``(id, row_hash)`` pairs: their child buckets, or the records themselves
    (``{id: row_hash}``) once there are at most RECORDS_AT_MOST of them, where
    comparing records costs less than another round of questions."""
    check_prefix(prefix)
    under = {rid: h for rid, h in hashes if bucket_key(rid).startswith(prefix)}
    out: dict = {"table": table, "prefix": prefix, "rows": len(under)}
    if len(under) <= RECORDS_AT_MOST or len(prefix) == 64:
        out["records"] = dict(sorted(under.items()))
    else:
        out["buckets"] = split(prefix, under.items())
    return out


def buckets(db: Database, spec: TableSpec, prefix: str) -> dict:
    """This node's answer about the visible rows of ``spec`` under ``prefix``
    (see bucket_answer). Only IDs are hashed for rows outside the prefix."""
    check_prefix(prefix)
    under = (
        (found[0], row_hash(found))
        for found in _visible(db, spec)
        if bucket_key(found[0]).startswith(prefix)
    )
    return bucket_answer(spec.name, prefix, under)
