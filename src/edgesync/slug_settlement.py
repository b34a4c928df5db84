"""Slug settlement: which record holds which slug, the same on every node.

A record wants the slug its slug columns and its code make (slugs.wanted). A
local write picks a code whose slug is free here (``free_code``). Records from
different nodes may still want the same slug; after every applied batch the
touched records are settled (``settle``): the smallest ID holds the slug, the
others fall back to ``…-<code>-<random part of their ID>``. The rule depends only
on the records, so every node that holds them settles them alike.
"""

from __future__ import annotations

from . import slugs
from .config import TableSpec
from .db import IN_CHUNK, Database, q
from .errors import BadInput
from .ids import code_of, new_code, random_of


def free_code(db: Database, spec: TableSpec, rid: str, merged: dict, current: dict | None) -> str:
    """The record's slug code: its current one (or its ID's NNLL), unless the
    slug it makes is held here by another record; then a fresh one."""
    code = (current or {}).get("_code") or code_of(rid)
    values = [merged.get(c) for c in spec.slug]
    t = q(spec.name)
    for _ in range(1000):
        want = slugs.wanted(values, code, spec.name)
        # Two queries, so each can use its partial index.
        taken = (
            db.execute(
                f"SELECT 1 FROM {t} WHERE _want = ? AND _deleted = 0 AND id != ? LIMIT 1",
                (want, rid),
            ).fetchone()
            or db.execute(
                f"SELECT 1 FROM {t} WHERE slug = ? AND _deleted = 0 AND id != ? LIMIT 1",
                (want, rid),
            ).fetchone()
        )
        if not taken:
            return code
        code = new_code()
    raise BadInput(f"no free slug code for {spec.name} {slugs.words(values, spec.name)!r}")


def settle(db: Database, spec: TableSpec, ids: list[str]) -> None:
    """Recompute the wanted slugs of the touched records, then settle every
    group of records wanting the same slug: the smallest ID holds it."""
    t = q(spec.name)
    cols = ", ".join(q(c) for c in spec.slug)
    groups: set[str] = set()
    for i in range(0, len(ids), IN_CHUNK):
        part = ids[i : i + IN_CHUNK]
        marks = ",".join("?" * len(part))
        rows = db.execute(
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
                db.execute(f"UPDATE {t} SET _want = NULL WHERE id = ?", (rid,))
                continue
            # Nobody else wants it (the usual case): take it at once.
            rivals = db.execute(
                f"SELECT 1 FROM {t} WHERE _want = ? AND _deleted = 0 LIMIT 1", (want,)
            ).fetchone()
            if rivals:
                db.execute(f"UPDATE {t} SET _want = ? WHERE id = ?", (want, rid))
                groups.add(want)
            else:
                db.execute(f"UPDATE {t} SET _want = ?, slug = ? WHERE id = ?", (want, want, rid))
    for want in sorted(groups):
        members = db.execute(
            f"SELECT id, slug FROM {t} WHERE _want = ? AND _deleted = 0 ORDER BY id", (want,)
        ).fetchall()
        # Losers first, so the winner's slug is free when it takes it.
        for rid, slug in members[1:]:
            fb = slugs.fallback(want, random_of(rid))
            if slug != fb:
                db.execute(f"UPDATE {t} SET slug = ? WHERE id = ?", (fb, rid))
        if members and members[0][1] != want:
            db.execute(f"UPDATE {t} SET slug = ? WHERE id = ?", (want, members[0][0]))
