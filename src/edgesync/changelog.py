"""The change log: every change this node holds, in the order it was logged,
and what follows from it: which changes of each origin are held, this node's
own numbering, and how far each peer has synced.

``_changes.seq`` numbers the log here (1, 2, 3 …); a change keeps its origin's
own number (``origin_seq``) wherever it travels. ``held`` (per origin, the
highest sequence held with nothing missing below it) is what a session opens
with, so nothing the other side holds is sent again. Cursors are positions in
a log: a pusher's in its own, a puller's in the peer's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from .changes import encode
from .db import Database
from .errors import Refused
from .signing import node_of

# (seq, body) of a change logged here, as the relay queues it.
Entry = tuple[int, str]


def take_unheld(held: dict[str, int], origin: str, n: int) -> bool:
    """True when a holder of ``held`` lacks change ``origin``:``n``; then counts it
    as sent to that holder (``held`` moves on, so later changes of the origin follow).

    The mark moves on only by one, so a change logged out of order here
    (possible when batches arrived out of order) is still sent after a later
    one from the same origin.
    """
    mark = held.get(origin, 0)
    if n <= mark:
        return False
    if n == mark + 1:
        held[origin] = n
    return True


class ChangeLog:
    def __init__(self, db: Database, node: str):
        self.db = db
        self.node = node

    # -- this node's origin and chain (signing.py) ------------------------------

    def origin(self) -> str:
        """The origin this node's changes carry: its name, or NAME.INCARNATION
        once it started again after a restore."""
        row = self.db.execute("SELECT origin FROM _signing").fetchone()
        return row[0] if row else self.node

    def signing_state(self) -> tuple[str, str, int]:
        """(origin, chain head, confirmed) of this node."""
        return self.db.execute("SELECT origin, head, confirmed FROM _signing").fetchone()

    def own_chain(self, n: int) -> str | None:
        row = self.db.execute("SELECT chain FROM _own WHERE n = ?", (n,)).fetchone()
        return row[0] if row else None

    def confirm(self, n: int) -> None:
        self.db.execute("UPDATE _signing SET confirmed = max(confirmed, ?)", (n,))

    def heads_of(self, node: str) -> dict[str, str]:
        """{origin: body}: the highest change held here of each origin of
        ``node`` (its name, NAME.INCARNATION after a restore)."""
        rows = self.db.execute(
            "SELECT origin, body FROM _heads WHERE origin = ? OR origin LIKE ?",
            (node, node + ".%"),
        )
        return dict(rows)

    def save_heads(self, heads: dict[str, tuple[int, str]]) -> None:
        """Remember each origin's highest change held here: (n, body)."""
        self.db.executemany(
            "INSERT INTO _heads VALUES (?, ?, ?) ON CONFLICT(origin) DO UPDATE SET"
            " n = excluded.n, body = excluded.body WHERE excluded.n > n",
            [(o, n, body) for o, (n, body) in heads.items()],
        )

    # -- this node's clock and numbering -------------------------------------

    def clock(self) -> tuple[str | None, int]:
        """(last HLC stamp, last own sequence) of this node."""
        return self.db.execute("SELECT stamp, own_seq FROM _clock").fetchone()

    def set_clock(self, stamp: str, own_seq: int) -> None:
        self.db.execute("UPDATE _clock SET stamp = ?, own_seq = ?", (stamp, own_seq))

    def set_stamp(self, stamp: str) -> None:
        self.db.execute("UPDATE _clock SET stamp = ?", (stamp,))

    # -- appending ---------------------------------------------------------------

    def append_own(self, change: dict, body: str, value: str) -> Entry:
        """Log one of this node's fresh, signed changes (never a duplicate) with
        its chain value, which becomes the head of this node's chain."""
        cur = self.db.execute(
            "INSERT INTO _changes(origin, origin_seq, body) VALUES (?, ?, ?)",
            (change["o"], change["n"], body),
        )
        self.db.execute("INSERT INTO _own VALUES (?, ?, ?)", (change["n"], cur.lastrowid, value))
        self.db.execute("UPDATE _signing SET head = ?", (value,))
        return cur.lastrowid, body

    def append(self, new: list[dict], bodies: list[str] | None = None) -> list[Entry]:
        """Log changes from elsewhere; seqs follow on from the last one, as the
        log's INTEGER PRIMARY KEY numbers them inside our exclusive transaction."""
        if bodies is None:
            bodies = [encode(ch) for ch in new]
        first = self.max_seq() + 1
        self.db.executemany(
            "INSERT INTO _changes(origin, origin_seq, body) VALUES (?, ?, ?)",
            [(ch["o"], ch["n"], body) for ch, body in zip(new, bodies, strict=True)],
        )
        return list(zip(range(first, first + len(new)), bodies, strict=True))

    # -- what is held ------------------------------------------------------------

    def held(self) -> dict[str, int]:
        """For every origin, the highest sequence held with nothing missing below it."""
        held = dict(self.db.execute("SELECT origin, held FROM _origins"))
        own = self.clock()[1]
        if own:  # this node's own changes are numbered by _clock, without gaps
            held[self.origin()] = own
        return held

    def unheld(
        self, batch: list[dict], held: dict[str, int], max_early: int | None = None
    ) -> tuple[list, dict]:
        """The changes of ``batch`` not held here yet, and each origin's new held
        mark. Records early arrivals in _early (inside the open transaction).

        A change at or below its origin's mark is held. One just above moves
        the mark (and past any early arrivals it joins up with). One further
        ahead is new unless recorded in _early, where it is then recorded; an
        origin may keep at most ``max_early`` there (Refused beyond).
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
            if max_early is not None:
                self._check_early(early_here, max_early)
            self.db.executemany("INSERT INTO _early VALUES (?, ?)", sorted(early_here))
        return new, marks

    def _check_early(self, adding: set[tuple[str, int]], most: int) -> None:
        """Counted per node: its incarnations (NODE.XXXXXXXX) are any number its
        key may sign."""
        by_node: dict[str, int] = {}
        for origin, _n in adding:
            by_node[node_of(origin)] = by_node.get(node_of(origin), 0) + 1
        for node, count in sorted(by_node.items()):
            kept = self.db.execute(
                "SELECT count(*) FROM _early WHERE origin = ? OR (origin > ? AND origin < ?)",
                (node, node + ".", node + "/"),
            ).fetchone()[0]
            if kept + count > most:
                raise Refused(
                    f"refused: {kept + count} changes of {node} would wait here for an "
                    f"earlier one still missing (max_early is {most}); they are taken once "
                    f"the gap is filled"
                )

    def save_marks(self, marks: dict[str, int], held: dict[str, int]) -> None:
        """Store the held marks that moved (this node's own are kept by _clock)."""
        for origin, mark in marks.items():
            if mark != held.get(origin, 0) and origin != self.origin():
                self.db.execute(
                    "INSERT INTO _origins(origin, held) VALUES (?, ?)"
                    " ON CONFLICT(origin) DO UPDATE SET held = excluded.held",
                    (origin, mark),
                )

    # -- reading -----------------------------------------------------------------

    def max_seq(self) -> int:
        return self.db.execute("SELECT coalesce(max(seq), 0) FROM _changes").fetchone()[0]

    def changes_after(self, seq: int, limit: int) -> list[tuple[int, str, str, int]]:
        """(seq, body, origin, origin_seq) of logged changes after ``seq``, in log order."""
        return self.db.execute(
            "SELECT seq, body, origin, origin_seq FROM _changes WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        ).fetchall()

    def count_unheld(self, after: int, held: dict[str, int]) -> int:
        """How many changes logged after ``after`` a holder of ``held`` lacks (reads only;
        ``held`` is a copy the count may change)."""
        count, seq = 0, after
        while rows := self.changes_after(seq, 10_000):
            for _seq, _body, origin, n in rows:
                count += take_unheld(held, origin, n)
            seq = rows[-1][0]
        return count

    # -- by origin and number (forks.py) -------------------------------------------

    def body_at(self, origin: str, n: int) -> str | None:
        """The body of change ``origin``:``n`` as logged here, if it is."""
        row = self.db.execute(
            "SELECT body FROM _changes WHERE origin = ? AND origin_seq = ? LIMIT 1", (origin, n)
        ).fetchone()
        return row[0] if row else None

    def of_origin(self, origin: str, low: int, high: int) -> list[tuple[int, int, str]]:
        """(seq, n, body) of the logged changes of ``origin`` numbered ``low`` to
        ``high``, in number order."""
        return self.db.execute(
            "SELECT seq, origin_seq, body FROM _changes WHERE origin = ?"
            " AND origin_seq BETWEEN ? AND ? ORDER BY origin_seq",
            (origin, low, high),
        ).fetchall()

    def first_after(self, origin: str, n: int) -> int | None:
        """The log position of the first change of ``origin`` numbered above ``n``."""
        return self.db.execute(
            "SELECT min(seq) FROM _changes WHERE origin = ? AND origin_seq > ?", (origin, n)
        ).fetchone()[0]

    def drop(self, origin: str, seqs: list[int]) -> None:
        """Take changes of ``origin`` out of the log (they are kept elsewhere):
        its held mark falls below the first of them, and its head is the
        highest change of it the log still holds."""
        if not seqs:
            return
        first = self.db.execute(
            f"SELECT min(origin_seq) FROM _changes WHERE seq IN ({','.join('?' * len(seqs))})",
            seqs,
        ).fetchone()[0]
        self.db.executemany("DELETE FROM _changes WHERE seq = ?", [(s,) for s in seqs])
        self.db.execute("DELETE FROM _early WHERE origin = ? AND origin_seq >= ?", (origin, first))
        self.db.execute(
            "UPDATE _origins SET held = ? WHERE origin = ? AND held >= ?",
            (first - 1, origin, first),
        )
        self.db.execute("DELETE FROM _heads WHERE origin = ?", (origin,))
        row = self.db.execute(
            "SELECT origin_seq, body FROM _changes WHERE origin = ? ORDER BY origin_seq DESC"
            " LIMIT 1",
            (origin,),
        ).fetchone()
        if row:
            self.save_heads({origin: (row[0], row[1])})

    # -- cursors -----------------------------------------------------------------

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

    def log_id(self) -> str | None:
        """The token naming this log; a new one after a new incarnation."""
        return self.db.meta("log_id")

    def pull_cursor(self, peer: str) -> tuple[int, str | None, list | None]:
        """(cursor, the peer's log_id it counts in, [origin, n] of the change the
        peer had at the cursor) for pulling from ``peer``."""
        at = self.db.meta(f"at:{peer}")
        return self.cursor(peer, "pull"), self.db.meta(f"log_id:{peer}"), at and json.loads(at)

    def set_pull_at(self, peer: str, at: list | None) -> None:
        self.db.execute(
            "INSERT INTO _meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (f"at:{peer}", json.dumps(at)),
        )

    def at_of(self, seq: int) -> list | None:
        """[origin, n] of the change logged at ``seq``: what a puller's cursor
        there stands on, so a log that went back in time is noticed."""
        row = self.db.execute(
            "SELECT origin, origin_seq FROM _changes WHERE seq = ?", (seq,)
        ).fetchone()
        return list(row) if row else None

    def restart_pull(self, peer: str, log_id: str) -> None:
        """The peer's log is another than the one the cursor counts in: start over
        in it (held marks keep what is held from being sent again)."""
        self.db.execute("DELETE FROM _cursors WHERE peer = ? AND direction = 'pull'", (peer,))
        self.db.execute("DELETE FROM _meta WHERE key = ?", (f"at:{peer}",))
        self.db.execute(
            "INSERT INTO _meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (f"log_id:{peer}", log_id),
        )

    def push_held(self, peer: str) -> dict[str, int]:
        """What ``peer`` held after this node's last push to it."""
        saved = self.db.meta(f"held:{peer}")
        return json.loads(saved) if saved else {}

    def set_push_held(self, peer: str, held: dict[str, int]) -> None:
        self.db.execute(
            "INSERT INTO _meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (f"held:{peer}", json.dumps(held)),
        )

    def cursors(self) -> list[dict]:
        return [
            {"peer": p, "direction": d, "seq": s}
            for p, d, s in self.db.execute("SELECT peer, direction, seq FROM _cursors")
        ]

    def pending(self, targets: Iterable[str]) -> int:
        """Changes in the log not yet acknowledged by every push target (none
        when there are no push targets: nothing waits for a push then)."""
        targets = list(targets)
        if not targets:
            return 0
        acked = min(self.cursor(t, "push") for t in targets)
        return self.db.execute("SELECT count(*) FROM _changes WHERE seq > ?", (acked,)).fetchone()[
            0
        ]
