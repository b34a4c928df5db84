"""Reading records: by ID, by slug, counts, and the digest of visible content.

Only what a user sees leaves here: a record is its ID, its columns and (for
tables with a slug) its slug; tombstoned records are not found.
"""

from __future__ import annotations

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


def record(db: Database, spec: TableSpec, rid: str) -> dict:
    """The record as a user sees it; NotFound if absent or deleted."""
    found = row(db, spec, rid)
    if found is None:
        raise NotFound(f"not found: {spec.name} {rid}")
    out = {"id": found["id"]}
    for c in spec.columns:
        out[c] = found[c]
    if spec.slug:
        out["slug"] = found["slug"]
    return out


def by_slug(db: Database, spec: TableSpec, slug: str) -> dict:
    if not spec.slug:
        raise BadInput(f"table {spec.name!r} has no slug")
    found = db.execute(
        f"SELECT id FROM {q(spec.name)} WHERE slug = ? AND _deleted = 0", (slug,)
    ).fetchone()
    if found is None:
        raise NotFound(f"not found: {spec.name} slug {slug!r}")
    return record(db, spec, found[0])


def count(db: Database, spec: TableSpec) -> int:
    return db.execute(f"SELECT count(*) FROM {q(spec.name)} WHERE _deleted = 0").fetchone()[0]


def digest(db: Database, config: Config) -> str:
    """A hex digest of the visible content of every synced table.

    Rows are hashed in ID order, so the digest depends only on which records
    (with which values and slugs) are visible, not on write order.
    """
    h = hashlib.sha256()
    for name in sorted(config.tables):
        spec = config.tables[name]
        cols = ", ".join(q(c) for c in spec.columns)
        h.update(json.dumps(["table", name, list(spec.columns)]).encode())
        for found in db.execute(
            f"SELECT id, {cols}, slug FROM {q(name)} WHERE _deleted = 0 ORDER BY id"
        ):
            h.update(json.dumps(found, ensure_ascii=False, separators=(",", ":")).encode())
            h.update(b"\n")
    return h.hexdigest()
