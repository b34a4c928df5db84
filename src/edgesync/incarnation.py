"""After a restore from backup: this node starts a new incarnation of its origin.

A database restored from an older copy numbers new writes like changes it had
already made and sent: the fleet would skip them as duplicates. The node
notices when a peer proves (with this node's own signature) that it holds a
change of this node's origin that this database does not have, or has
differently (``diverged``). It then starts again as ``NAME.INCARNATION``:

- every change of the old origin above ``confirmed`` (the highest one a peer
  was seen to hold exactly as made here: all of them are older than the
  backup) is made again under the new origin, with the same table, record,
  data and clock stamp, so applying both copies anywhere changes nothing;
- those old-origin entries leave the log and the Redis stream is rebuilt from
  the log, so the old numbering is never sent again;
- the old origin becomes one this node holds up to ``confirmed``, so the
  fleet's own copies of its later changes (the ones the backup lacked) come
  back by the usual sessions.

The same move heals a clock that ran fast and was set right (``start`` with
``restamp``): changes stamped later than the corrected clock, which every
peer refuses as "in the future", are made again stamped with the present
(after every stamp this node has seen from others), so they travel at once
and count as made now, not at the wrong time they carried; the records they
touched are merged again from the log (``Store.heal_clock``).

Writes made after the restore are delivered and digests converge. A peer that
received a restored node's re-used numbers before any session told it of the
restore keeps that copy; the README says to let a restored node sync with its
node before its farm peers.
"""

from __future__ import annotations

import json
import os

from . import hlc
from .changelog import ChangeLog, Entry
from .changes import ORDER, encode
from .db import Database
from .ids import new_code
from .signing import CHAIN_RE, GENESIS, Signer, b64, chain, content_of, proves, sign_body


def diverged(log: ChangeLog, own_seq: int, head: str, signer: Signer) -> bool:
    """True when a peer's ``head`` (the body of the highest change it holds of
    this node's current origin), signed by this node's own key, is a change
    this database lacks or made otherwise. A head that is not a change of ours
    (malformed, another origin, not our signature) proves nothing: ignored."""
    try:
        change = json.loads(head)
    except (ValueError, RecursionError):
        return False
    if not (isinstance(change, dict) and change.keys() == set(ORDER)):
        return False
    n, prev, sig = change["n"], change["p"], change["s"]
    if change["o"] != log.origin() or type(n) is not int or not isinstance(prev, str):
        return False
    if not CHAIN_RE.match(prev):
        return False
    body = encode({k: change[k] for k in ORDER})
    value = b64(chain(prev, content_of(body)))
    if not proves(signer.public, value, sig):
        return False
    if n > own_seq:
        return True
    mine = log.own_chain(n)
    if mine == value:
        log.confirm(n)
        return False
    return mine is not None


def start(
    db: Database,
    log: ChangeLog,
    signer: Signer,
    node: str,
    restamp: int | None = None,
) -> tuple[list[Entry], set[tuple[str, str]]]:
    """Start a new incarnation inside the open transaction; returns the new log
    entries (the old origin's unconfirmed changes, made again) and the records
    (table, id) of those made again with a new stamp.

    ``restamp`` is now_ms: a change stamped after it is made again stamped after
    both it and every stamp that stays in the log (others' and this node's own
    confirmed ones), so it still wins over all it was made after; the others
    keep theirs. The clock goes on from there."""
    old, _head, confirmed = log.signing_state()
    rows = db.execute(
        "SELECT o.seq, c.body FROM _own o JOIN _changes c ON c.seq = o.seq"
        " WHERE o.n > ? ORDER BY o.n",
        (confirmed,),
    ).fetchall()
    origin = f"{node}.{new_code()}{os.urandom(3).hex().upper()[:4]}"
    db.execute("DELETE FROM _own")
    if confirmed:
        db.execute(
            "INSERT INTO _origins(origin, held) VALUES (?, ?)"
            " ON CONFLICT(origin) DO UPDATE SET held = excluded.held",
            (old, confirmed),
        )
    db.execute("UPDATE _signing SET origin = ?, head = ?, confirmed = 0", (origin, GENESIS))
    db.execute("UPDATE _clock SET own_seq = 0")
    # Peers' logs hold the old origin's later changes behind where this node
    # stopped reading them: read every peer's log again (held marks skip the rest).
    db.execute("DELETE FROM _cursors WHERE direction = 'pull'")
    # And this log is another than the one peers' cursors count in.
    db.execute("UPDATE _meta SET value = ? WHERE key = 'log_id'", (os.urandom(8).hex(),))
    # The stream holds the old numbering: a new epoch makes the relay rebuild it.
    db.execute(
        "INSERT INTO _meta VALUES ('stream_epoch', ?) ON CONFLICT(key) DO UPDATE"
        " SET value = excluded.value",
        (os.urandom(8).hex(),),
    )
    # What this node made under the old origin and keeps in the log: its own
    # changes, should a fork of that origin withhold some of them (make_again).
    db.execute(
        "INSERT INTO _meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (f"made:{old}", confirmed),
    )
    touched: set[tuple[str, str]] = set()
    olds = [(seq, json.loads(body)) for seq, body in rows]
    later = {seq for seq, was in olds if restamp is not None and hlc.decode(was["h"])[0] > restamp}
    stamp = _newest_stamp(db, later) if later else None
    for seq, was in olds:
        if seq in later:
            was["h"] = stamp = hlc.tick(stamp, node, restamp)
            touched.add((was["t"], was["i"]))
    entries = make_again(log, signer, [was for _seq, was in olds])
    # Only now, so the new entries are logged after every old position.
    db.executemany("DELETE FROM _changes WHERE seq = ?", [(seq,) for seq, _b in rows])
    if later:
        db.execute("UPDATE _clock SET stamp = ?", (stamp,))
    return entries, touched


def make_again(log: ChangeLog, signer: Signer, olds: list[dict]) -> list[Entry]:
    """Make ``olds`` (changes this node made under an earlier origin) again
    under its current origin, same table, record, data and stamp, so applying
    both copies anywhere changes nothing. Inside the open transaction."""
    origin, prev, _confirmed = log.signing_state()
    n = log.clock()[1]
    entries = []
    for was in olds:
        n += 1
        change = {"o": origin, "n": n, **{k: was[k] for k in "htikd"}}
        signed, value = sign_body(signer, prev, encode(change))
        prev = b64(value)
        entries.append(log.append_own(change, signed, prev))
    log.db.execute("UPDATE _clock SET own_seq = ?", (n,))
    return entries


def made_here(db: Database, origin: str) -> int:
    """Up to which number the changes of ``origin``, an earlier origin of this
    node, that the log holds were made here (0: none)."""
    return int(db.meta(f"made:{origin}") or 0)


def _newest_stamp(db: Database, leaving: set[int]) -> str | None:
    """The newest clock stamp in the log but those of ``leaving`` (log
    positions about to be made again): a scan of the whole log, for the rare
    moment a clock is set right."""
    newest = None
    for seq, stamp in db.execute("SELECT seq, json_extract(body, '$.h') FROM _changes"):
        if seq not in leaving and (newest is None or stamp > newest):
            newest = stamp
    return newest
