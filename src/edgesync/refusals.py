"""Sessions this node refused, by whom, for what, under which rule: kept in the
database so that ``status --json`` can show them."""

from __future__ import annotations

import time

from .db import Database


def record(db: Database, peer: str, action: str, rule: str) -> None:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with db.transaction():
        db.execute("INSERT INTO _refusals VALUES (?, ?, ?, ?)", (at, peer, action, rule))


def summary(db: Database, last: int = 20) -> dict:
    """How many refusals there were, and the ``last`` ones, newest first."""
    count = db.execute("SELECT count(*) FROM _refusals").fetchone()[0]
    rows = db.execute(
        "SELECT at, peer, action, rule FROM _refusals ORDER BY rowid DESC LIMIT ?", (last,)
    ).fetchall()
    return {
        "count": count,
        "last": [dict(zip(("at", "peer", "action", "rule"), r, strict=True)) for r in rows],
    }
