"""Schema versions, and the steps between them.

A database carries its schema version (``_meta.schema_version``). A release
reads exactly one version, ``SCHEMA``; it migrates every older one it knows
(from ``OLDEST``) forward, and back again for a rollback, each move in one
transaction: a migration that fails leaves the database as it was. A version
newer than ``SCHEMA`` is refused, never guessed at.

Steps only add or drop bookkeeping of their own; they never rewrite the
records or the change log, so a session of the previous release still running
while a rollout migrates under it writes nothing the new schema misreads.

    2  signed changes (the first schema a release reads; 1 predates signing)
    3  _links: the history of sync sessions with each peer (history.py)
    4  _slug_history: the slugs records held before (an old slug answers 301);
       _requests: the answers to writes that carried an Idempotency-Key;
       _sessions: the content editor's signed-in sessions (web/)
    5  forks (forks.py): _forks, the proof of each origin's fork; _withheld,
       the changes of a forked origin kept but not applied; an index of the
       log by origin and number, which fork detection compares against;
       _quota, what each origin used of this node's quota (quotas.py);
       _slug_claims, the slugs masters settled (slug_settlement.py)
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BadInput

SCHEMA = 5
OLDEST = 2


@dataclass(frozen=True)
class Step:
    """What moving from ``version - 1`` to ``version`` does, and undoes."""

    version: int
    brings: str
    up: tuple[str, ...]
    down: tuple[str, ...]


LINKS = (
    "CREATE TABLE _links(peer TEXT NOT NULL, action TEXT NOT NULL,"
    " initiated INTEGER NOT NULL, ok INTEGER NOT NULL DEFAULT 0,"
    " failed INTEGER NOT NULL DEFAULT 0, sent INTEGER NOT NULL DEFAULT 0,"
    " received INTEGER NOT NULL DEFAULT 0, last_ok INTEGER, last_failed INTEGER,"
    " last_error TEXT, peer_release TEXT, protocol INTEGER,"
    " PRIMARY KEY (peer, action, initiated)) WITHOUT ROWID"
)

# A slug a record held before, kept so its old URL answers 301 to the current
# one. Each node records the slugs its records held (slug_settlement.py).
SLUG_HISTORY = (
    "CREATE TABLE _slug_history(tbl TEXT NOT NULL, slug TEXT NOT NULL, id TEXT NOT NULL,"
    " at INTEGER NOT NULL, PRIMARY KEY (tbl, slug)) WITHOUT ROWID"
)
# The first answer to a write that carried an Idempotency-Key: a retry gets it again.
REQUESTS = (
    "CREATE TABLE _requests(key TEXT PRIMARY KEY, at INTEGER NOT NULL,"
    " fingerprint TEXT NOT NULL, answer TEXT NOT NULL) WITHOUT ROWID"
)
SESSIONS = (
    "CREATE TABLE _sessions(id TEXT PRIMARY KEY, name TEXT NOT NULL,"
    " expires INTEGER NOT NULL) WITHOUT ROWID"
)

# Two signed changes of one origin that no single chain holds (forks.py): the
# lowest number at which this node knows such a pair, the winner there by the
# fleet's rule and another change signed at that number.
FORKS = (
    "CREATE TABLE _forks(origin TEXT PRIMARY KEY, n INTEGER NOT NULL,"
    " winner TEXT NOT NULL, other TEXT NOT NULL, found INTEGER NOT NULL) WITHOUT ROWID"
)
# The changes of a forked origin this node holds back: the losing branch and
# everything after the fork, kept as they arrived (value: their chain value).
WITHHELD = (
    "CREATE TABLE _withheld(origin TEXT NOT NULL, n INTEGER NOT NULL, value TEXT NOT NULL,"
    " body TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (origin, n, value)) WITHOUT ROWID"
)
LOG_BY_ORIGIN = "CREATE INDEX _changes_origin ON _changes(origin, origin_seq)"
# Which record holds a slug many want, as a master settled it (slug_settlement.py):
# the latest claim (by its change's stamp) of any master.
SLUG_CLAIMS = (
    "CREATE TABLE _slug_claims(tbl TEXT NOT NULL, slug TEXT NOT NULL, id TEXT NOT NULL,"
    " stamp TEXT NOT NULL, PRIMARY KEY (tbl, slug)) WITHOUT ROWID"
)
# What each origin used of this node's quota in the current window (quotas.py).
QUOTA = (
    "CREATE TABLE _quota(origin TEXT PRIMARY KEY, window INTEGER NOT NULL,"
    " changes INTEGER NOT NULL, bytes INTEGER NOT NULL, deferred INTEGER NOT NULL) WITHOUT ROWID"
)

STEPS = {
    3: Step(3, "per-link sync history (_links)", up=(LINKS,), down=("DROP TABLE _links",)),
    4: Step(
        4,
        "slug history, idempotent writes and editor sessions (_slug_history, _requests, _sessions)",
        up=(SLUG_HISTORY, REQUESTS, SESSIONS),
        down=("DROP TABLE _slug_history", "DROP TABLE _requests", "DROP TABLE _sessions"),
    ),
    5: Step(
        5,
        "fork proofs, withheld changes, quotas and slug claims (_forks, _withheld, _quota, "
        "_slug_claims, an index of the log by origin)",
        up=(FORKS, WITHHELD, LOG_BY_ORIGIN, QUOTA, SLUG_CLAIMS),
        down=(
            "DROP TABLE _forks",
            "DROP TABLE _withheld",
            "DROP INDEX _changes_origin",
            "DROP TABLE _quota",
            "DROP TABLE _slug_claims",
        ),  # fmt: skip
    ),
}


def describe(version: int) -> str:
    return STEPS[version].brings if version in STEPS else "signed changes"


def version_of(db) -> int | None:
    """The schema version of an open database; None when it was never initialised."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='_meta'").fetchone():
        return None
    value = db.meta("schema_version")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        raise BadInput(f"database schema version {str(value)[:40]!r} is not a number") from None


def known(version: int, path) -> None:
    """Refuse a version this release cannot migrate, naming what it reads."""
    if version > SCHEMA:
        raise BadInput(
            f"database schema version {version} is newer than this edgesync knows "
            f"(it reads versions {OLDEST} to {SCHEMA}): {path}"
        )
    if version < OLDEST:
        raise BadInput(
            f"database schema version {version} was made before changes were signed "
            f"(this edgesync reads versions {OLDEST} to {SCHEMA}); sync its changes away "
            f"with the old release, then init a new one: {path}"
        )


def migrate(db, to: int = SCHEMA) -> tuple[int, int]:
    """Move the database's schema to ``to`` in one transaction, forward or back;
    returns (from, to). Nothing happens when it is there already."""
    path = db.config.db_path
    if not OLDEST <= to <= SCHEMA:
        raise BadInput(
            f"cannot migrate to schema {to}: this edgesync knows versions {OLDEST} to {SCHEMA}"
        )
    with db.transaction():
        now = version_of(db)
        if now is None:
            raise BadInput(f"database not initialised: run `edgesync init` ({path})")
        known(now, path)
        for version in range(now + 1, to + 1):
            for sql in STEPS[version].up:
                db.execute(sql)
        for version in range(now, to, -1):
            for sql in STEPS[version].down:
                db.execute(sql)
        if now != to:
            db.execute("UPDATE _meta SET value = ? WHERE key = 'schema_version'", (to,))
    return now, to
