"""Slug settlement: which record holds which slug, the same on every node.

A record wants the slug its slug columns and its code make (slugs.wanted). A
local write picks a code whose slug is free here (``free_code``). Records from
different nodes may still want the same slug; after every applied batch the
touched records are settled (``settle``): one holds the slug, the others fall
back to ``…-<code>-<random part of their ID>``. Which one, the masters decide:

- A master keeps a slug with the record that holds it there (the first it
  saw); when several arrive together, the smallest ID. Whenever it settles a
  clash it writes a *claim*: an edit of the winning record, signed by the
  master, carrying ``_claim`` (changes.CLAIM), which travels like any change.
  Only masters' changes may carry one (changes.check_claims).
- Every host gives a slug to the record a master's claim names (the latest
  claim by stamp, so two masters end alike); without a claim, the smallest ID
  holds it, provisionally.

So a record made later, whatever ID it carries (a made-up small one in its own
name, by a stolen key), never takes a slug a master already holds for another:
the master keeps it and its claim moves it back wherever it went.

Whenever a record's slug moves (its slug columns were edited, or it lost a
clash), the slug it held is kept in ``_slug_history`` so its old URL answers
301 to the current one (``reads.moved``). A node that never held a record's
first slug (its creation and an edit arrived together) still learns it: the
record's signed creation names its slug columns and code, so the slug it was
born with is the same on every node, whatever the order changes arrive in.
"""

from __future__ import annotations

import hashlib
import time

from . import slugs
from .changes import CODE_COLUMN
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


def settle(
    db: Database,
    spec: TableSpec,
    ids: list[str],
    born: dict[str, dict] | None = None,
    claimed: set[str] | frozenset = frozenset(),
    master: bool = False,
) -> list[tuple[str, str]]:
    """Recompute the wanted slugs of the touched records, then settle every
    group of records wanting the same slug (and the groups of the slugs in
    ``claimed``, newly claimed): the record a master's claim names holds it;
    without one, on a ``master`` the record holding it already, else the
    smallest ID. ``born``: the data of the creations among the changes applied
    (record ID: its "new" change's data), whose first slugs are kept when they
    differ. Returns (slug, record) of the clashes a master settled that no
    claim names yet: the claims it is to write."""
    t = q(spec.name)
    cols = ", ".join(q(c) for c in spec.slug)
    groups: set[str] = set(claimed)
    unclaimed: list[tuple[str, str]] = []
    for i in range(0, len(ids), IN_CHUNK):
        part = ids[i : i + IN_CHUNK]
        marks = ",".join("?" * len(part))
        rows = db.execute(
            f"SELECT id, _deleted, _code, _want, slug, {cols} FROM {t} WHERE id IN ({marks})",
            part,
        ).fetchall()
        for rid, deleted, code, old_want, held, *values in rows:
            want = None
            if not deleted:
                want = slugs.wanted(values, code or code_of(rid), spec.name)
                first = born.get(rid) if born else None
                if first is not None:
                    _remember_birth(db, spec, rid, first, (code, *values), want)
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
                if held is not None and held != want:
                    remember(db, spec, [(held, rid)])
    for want in sorted(groups):
        members = db.execute(
            f"SELECT id, slug FROM {t} WHERE _want = ? AND _deleted = 0 ORDER BY id", (want,)
        ).fetchall()
        if not members:
            continue
        winner = _winner(db, spec, want, members, master)
        if master and len(members) > 1 and winner != _claimed(db, spec, want):
            unclaimed.append((want, winner))
        members.sort(key=lambda m: m[0] != winner)  # the winner first, the rest by ID
        # Every member's slug: the winner holds the one wanted, the others fall
        # back. Two IDs may share their random part (a node makes its IDs as it
        # likes): the later one then adds a digest of its whole ID.
        targets: dict[str, str] = {}
        taken: set[str] = set()
        for k, (rid, _slug) in enumerate(members):
            fb = want if k == 0 else slugs.fallback(want, random_of(rid))
            if fb in taken:
                fb = slugs.fallback(fb, hashlib.sha256(rid.encode()).hexdigest()[:12])
            targets[rid] = fb
            taken.add(fb)
        moving = [(targets[rid], rid) for rid, slug in members if slug != targets[rid]]
        # Free the slugs that move first, so no two rows hold one for a moment.
        db.executemany(f"UPDATE {t} SET slug = NULL WHERE id = ?", [(r,) for _s, r in moving])
        db.executemany(f"UPDATE {t} SET slug = ? WHERE id = ?", moving)
        left = [(slug, rid) for rid, slug in members if slug not in (None, targets[rid])]
        remember(db, spec, left)
    return unclaimed


def _claimed(db: Database, spec: TableSpec, want: str) -> str | None:
    row = db.execute(
        "SELECT id FROM _slug_claims WHERE tbl = ? AND slug = ?", (spec.name, want)
    ).fetchone()
    return row[0] if row else None


def _winner(db: Database, spec: TableSpec, want: str, members: list, master: bool) -> str:
    """Who of ``members`` ((id, slug) in ID order) holds ``want``."""
    claim = _claimed(db, spec, want)
    if any(rid == claim for rid, _slug in members):
        return claim
    if master:
        holder = next((rid for rid, slug in members if slug == want), None)
        if holder is not None:
            return holder
    return members[0][0]


def claim(db: Database, spec: TableSpec, slug: str, rid: str, stamp: str) -> None:
    """Keep a master's claim (the latest by stamp wins)."""
    db.execute(
        "INSERT INTO _slug_claims VALUES (?, ?, ?, ?) ON CONFLICT(tbl, slug) DO UPDATE"
        " SET id = excluded.id, stamp = excluded.stamp WHERE excluded.stamp > stamp",
        (spec.name, slug, rid, stamp),
    )


def _remember_birth(
    db: Database, spec: TableSpec, rid: str, data: dict, state: tuple, now: str
) -> None:
    """Keep the slug a record was born with, if it is not the one it wants now
    (``state``: its code and slug columns now)."""
    values = [data.get(c) for c in spec.slug]
    code = data.get(CODE_COLUMN) or code_of(rid)
    if (code, *values) == (state[0] or code_of(rid), *state[1:]):
        return  # the usual case: nothing about its slug changed since
    first = slugs.wanted(values, code, spec.name)
    if first != now:
        db.execute(
            "INSERT OR IGNORE INTO _slug_history VALUES (?, ?, ?, ?)",
            (spec.name, first, rid, int(time.time())),
        )


def remember(db: Database, spec: TableSpec, moved: list[tuple[str, str]]) -> None:
    """Keep the slugs records held before they moved: (old slug, record ID).
    A slug held again later by another record answers with that record (reads
    look at the slugs held now first)."""
    if moved:
        now = int(time.time())
        db.executemany(
            "INSERT OR REPLACE INTO _slug_history VALUES (?, ?, ?, ?)",
            [(spec.name, slug, rid, now) for slug, rid in moved],
        )
