"""The history of sync sessions with each peer (``_links``, schema 3).

One row per peer, action and side (whether this node started the session):
sessions that went well and that failed, changes sent and received, when the
last of each happened, the last error, and the release and protocol version the
peer spoke. ``status`` shows it; the operator reads from it which links are
stale and which peers still run an older release during a rollout.

Writing it never decides a session: it is written after the session, in its own
small transaction, and a database that cannot take it (full, locked, or
migrated back under a running session) leaves the history short, nothing else.
"""

from __future__ import annotations

import sqlite3
import time

from .errors import one_line

# Error lines are kept this long at most.
MAX_ERROR = 300


def record(
    db,
    peer: str,
    action: str,
    initiated: bool,
    *,
    error: str | None = None,
    sent: int = 0,
    received: int = 0,
    peer_release: str | None = None,
    protocol: int | None = None,
) -> None:
    """Count one session with ``peer`` (best effort: see the module's docstring)."""
    now = int(time.time() * 1000)
    ok = error is None
    try:
        # One try: SQLite waits a second for another process's lock, no more.
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO _links(peer, action, initiated, ok, failed, sent, received,"
                " last_ok, last_failed, last_error, peer_release, protocol)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(peer, action, initiated) DO UPDATE SET"
                " ok = ok + excluded.ok, failed = failed + excluded.failed,"
                " sent = sent + excluded.sent, received = received + excluded.received,"
                " last_ok = coalesce(excluded.last_ok, last_ok),"
                " last_failed = coalesce(excluded.last_failed, last_failed),"
                " last_error = coalesce(excluded.last_error, last_error),"
                # What the peer said in this session's handshake, if it got that
                # far (a peer rolled back names no release: that is news too).
                " peer_release = CASE WHEN excluded.protocol IS NULL THEN peer_release"
                " ELSE excluded.peer_release END,"
                " protocol = coalesce(excluded.protocol, protocol)",
                (
                    peer, action, int(initiated), int(ok), int(not ok), sent, received,
                    now if ok else None, None if ok else now,
                    None if ok else one_line(error)[:MAX_ERROR], peer_release, protocol,
                ),
            )  # fmt: skip
            db.execute("COMMIT")
        except BaseException:
            if db.conn.in_transaction:  # a failed COMMIT may leave it open (db.py)
                db.execute("ROLLBACK")
            raise
    except sqlite3.Error:
        pass


def links(db) -> list[dict]:
    """Every link's history, for ``status``; ages in seconds from now."""
    now = time.time()
    out = []
    rows = db.execute(
        "SELECT peer, action, initiated, ok, failed, sent, received, last_ok, last_failed,"
        " last_error, peer_release, protocol FROM _links ORDER BY peer, action, initiated DESC"
    )
    for (peer, action, initiated, ok, failed, sent, received, last_ok, last_failed, error,
         release, protocol) in rows:  # fmt: skip
        out.append({
            "peer": peer,
            "action": action,
            "initiated": bool(initiated),
            "sessions_ok": ok,
            "sessions_failed": failed,
            "sent": sent,
            "received": received,
            "last_ok": _iso(last_ok),
            "last_ok_age_s": None if last_ok is None else round(now - last_ok / 1000, 1),
            "last_failed": _iso(last_failed),
            "last_error": error,
            "peer_release": release,
            "protocol": protocol,
        })  # fmt: skip
    return out


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
