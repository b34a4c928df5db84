"""Sessions this node refused, by whom, for what, under which rule: kept in the
database so that ``status --json`` can show them. A refusal's rule is kept to
RULE_CHARS characters and only the newest KEPT refusals are kept, with a count
of all of them, so a peer refused over and over cannot fill the disk."""

from __future__ import annotations

import time

from .db import Database

RULE_CHARS = 500
KEPT = 1000


def record(db: Database, peer: str, action: str, rule: str) -> None:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if len(rule) > RULE_CHARS:
        rule = rule[: RULE_CHARS - 1] + "…"
    with db.transaction():
        db.execute("INSERT INTO _refusals VALUES (?, ?, ?, ?)", (at, peer, action, rule))
        db.execute(
            "INSERT INTO _meta SELECT 'refusals', count(*) FROM _refusals WHERE true"
            " ON CONFLICT(key) DO UPDATE SET value = value + 1"
        )
        db.execute(
            "DELETE FROM _refusals WHERE rowid <= (SELECT max(rowid) FROM _refusals) - ?",
            (KEPT,),
        )


def summary(db: Database, last: int = 20) -> dict:
    """How many refusals there were, and the ``last`` ones, newest first."""
    count = db.meta("refusals") or db.execute("SELECT count(*) FROM _refusals").fetchone()[0]
    rows = db.execute(
        "SELECT at, peer, action, rule FROM _refusals ORDER BY rowid DESC LIMIT ?", (last,)
    ).fetchall()
    return {
        "count": count,
        "last": [dict(zip(("at", "peer", "action", "rule"), r, strict=True)) for r in rows],
    }
