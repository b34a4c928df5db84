"""Forks: two changes of one origin, each signed with the origin's key, that no
single chain holds.

An honest node never makes two changes with one number. A stolen key can: it
signs one history for one neighbour and another for the next, and each
receiver, holding a number already, would take the other's change for a
duplicate and keep its own for ever. This module finds such pairs, keeps them
as proof and settles them the same way on every host.

**Finding.** Every session, the side that receives changes states, for each
origin it holds, its chain value at a few numbers back from its held mark
(``checkpoints``: n, n-1, n-3, n-7 … 1). The sending side compares them with
its own log; where they differ it sends its own changes of that origin from
the last number both agree on up to the first they do not
(``evidence_for``), whatever the receiver holds. The receiver compares every
change it already holds a number of with its own copy (``clashes``): two
different chain values at one number, each signed by the origin's key, are a
proof anyone can check with that key (``proves_fork``).

**The rule.** For each origin, the lowest number at which a proof exists is
its fork point F. Of the changes known at F, the one with the earliest clock
stamp wins (a tie, which only a key's holder can make, goes to the lower chain
value). Every host keeps, of that origin, its changes below F and the winner
at F; the other changes at F and every change of it above F are withheld:
kept in ``_withheld`` as they arrived, neither applied nor sent on. The origin
is quarantined until an operator acts (its key revoked or replaced through
the inventory); the status names it and F.

**Spreading.** Each side also states the forks it knows ({origin: [F, the
winner's chain value]}); the other sends the two changes of any fork it knows
at a lower number or with another winner, so the proof reaches every host,
each of which then settles the same way.

**The node itself.** A node shown another change in its own name and number
goes on under a new origin (incarnation.py), making again every change of
its own from the fork on, so no write it acknowledged depends on which branch
the rule keeps; its status then names the new origin. It makes again only
what it made itself (what its database holds as its own): changes of its old
origin it only received may be a thief's, and making them again would let a
thief's branch past the quarantine.

**A restore is not a fork.** A node restored from an old backup reuses its
own numbers too, but a session shows it the fleet's later changes of its
origin before it sends any (incarnation.py): it goes on under a new origin
and no host ever holds two changes at one number, so no fork is recorded and
no origin is held back; the status shows the new incarnation only. (If a
restored node does hand a reused number to a peer that lacked the original,
the pair is a fork like any other, settled by the same rule; the node's new
origin holds its writes made again, and the status names it.)
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator

from .changelog import ChangeLog
from .changes import MAX_SEQ
from .db import Database
from .protocol import BadFrame
from .signing import CHAIN_RE, KeyRing, b64, chain, content_of, node_of, proves

# Checkpoints stated per origin at most (n, n-1, n-3, … reaches back 2**40).
MAX_POINTS = 40
# A sending side's search for a fork: at most this many changes of one origin
# per session, read PAGE at a time.
SEARCH = 1000
PAGE = 64
# Origins a side may state checkpoints or forks for.
MAX_ORIGINS = 10_000
# What a side states at most, well inside MAX_ORIGINS and a frame's limits:
# a key's holder may sign for any number of incarnations (NODE.XXXXXXXX), so a
# node may hold more origins than that. Over it, a random choice of them is
# stated each session, so every origin is compared in time.
MAX_STATED = 2_000
MAX_STATED_POINTS = 16_000


def value_of(body: str) -> str:
    """The chain value after a change, from its canonical body."""
    return b64(chain(json.loads(body)["p"], content_of(body)))


def _value(ch: dict, body: str) -> str:
    return b64(chain(ch["p"], content_of(body)))


def signed(ch: dict, body: str, keys: KeyRing) -> bool:
    """True when a change carries its origin's signature on its own chain
    value (a change inside a run is otherwise proved by its successor's)."""
    key = keys.get(node_of(ch["o"]))
    return key is not None and proves(key, _value(ch, body), ch["s"])


def proves_fork(a: str, b: str, keys: KeyRing) -> tuple[str, int] | None:
    """(origin, n) when bodies ``a`` and ``b`` are two changes of one origin and
    number with different chain values, each signed by the origin's key: a
    proof of a fork. None when they prove nothing."""
    try:
        ca, cb = json.loads(a), json.loads(b)
    except ValueError:
        return None
    if not (isinstance(ca, dict) and isinstance(cb, dict)):
        return None
    if (ca.get("o"), ca.get("n")) != (cb.get("o"), cb.get("n")) or value_of(a) == value_of(b):
        return None
    if not (signed(ca, a, keys) and signed(cb, b, keys)):
        return None
    return ca["o"], ca["n"]


def rank(body: str) -> tuple[str, str]:
    """The order of the rule: the earliest stamp wins, then the lower chain value."""
    return json.loads(body)["h"], value_of(body)


# -- what a receiving side states ---------------------------------------------------


def checkpoints(log: ChangeLog, held: dict[str, int]) -> dict[str, list]:
    """{origin: [n, chain value, n', chain value', …]} at n, n-1, n-3, n-7 … 1
    below each held mark (numbers this log holds), flat: one JSON array per
    origin, as a frame's count of containers is bounded (protocol.py)."""
    out: dict[str, list] = {}
    budget = MAX_STATED_POINTS
    for origin, mark in _some(list(held.items())):
        if budget <= 0:
            break
        points, step = [], 1
        n = mark
        while n >= 1 and len(points) < MAX_POINTS:
            body = log.body_at(origin, n)
            if body is not None:
                points.append((n, value_of(body)))
            n = mark - (2**step - 1)
            step += 1
        if points and points[-1][0] != 1 and len(points) < MAX_POINTS:
            body = log.body_at(origin, 1)
            if body is not None:
                points.append((1, value_of(body)))
        if points:
            out[origin] = [x for point in points for x in point]
            budget -= len(points)
    return out


def _some(items: list) -> list:
    """``items``, or a random MAX_STATED of them when there are more."""
    return items if len(items) <= MAX_STATED else random.sample(items, MAX_STATED)


def stated(db: Database) -> dict[str, list]:
    """The forks this node knows, as it states them: {origin: [F, winner's value]}
    (at most MAX_STATED, chosen at random when it knows more)."""
    return {o: [n, value_of(w)] for o, n, w, _other in _some(known(db))}


def check_stated(chains: object, forks: object) -> tuple[dict, dict]:
    """A peer's checkpoints and fork list, checked (absent: empty); the
    checkpoints as {origin: [[n, value], …]}."""
    chains = {} if chains is None else chains
    forks = {} if forks is None else forks
    if not isinstance(chains, dict) or len(chains) > MAX_ORIGINS:
        raise BadFrame("malformed frame: chains is not {origin: [n, value, ...]}")
    pairs = {}
    for origin, flat in chains.items():
        if not isinstance(flat, list) or not 0 < len(flat) <= 2 * MAX_POINTS or len(flat) % 2:
            raise BadFrame("malformed frame: chains is not {origin: [n, value, ...]}")
        pairs[origin] = [flat[i : i + 2] for i in range(0, len(flat), 2)]
        for point in pairs[origin]:
            _point(point, "chains")
    if not isinstance(forks, dict) or len(forks) > MAX_ORIGINS:
        raise BadFrame("malformed frame: forks is not {origin: [n, value]}")
    for point in forks.values():
        _point(point, "forks")
    return pairs, forks


def _point(point: object, what: str) -> None:
    if not (
        isinstance(point, list)
        and len(point) == 2
        and type(point[0]) is int
        and 0 < point[0] <= MAX_SEQ
        and isinstance(point[1], str)
        and CHAIN_RE.match(point[1])
    ):
        raise BadFrame(f"malformed frame: {what} holds {str(point)[:60]!r}, not [n, value]")


# -- what a sending side sends --------------------------------------------------------


def evidence_for(log: ChangeLog, db: Database, chains: dict, forks: dict) -> Iterator[str]:
    """The change bodies a receiver that stated ``chains`` and ``forks`` lacks
    to see a fork this node can show it: the two changes of each fork it knows
    better, and this node's changes of each origin between the last checkpoint
    both agree on and the first they do not; at most SEARCH of those per
    origin (the highest), read a page at a time. A fork further down is found
    over later sessions, each settling lower (the lowest proof wins)."""
    mine = {o: (n, w, other) for o, n, w, other in known(db)}
    for origin, (n, winner, other) in mine.items():
        if forks.get(origin) != [n, value_of(winner)]:
            yield winner
            yield other
    for origin, points in chains.items():
        if origin in mine:
            continue
        agree, differ = 0, None
        for n, value in sorted(points):
            body = log.body_at(origin, n)
            if body is None:
                continue
            if value_of(body) == value:
                agree = n if differ is None else agree
            elif differ is None or n < differ:
                differ = n
        if differ is None or differ <= agree:
            continue
        low = max(agree + 1, differ - SEARCH + 1)
        while low <= differ:
            high = min(differ, low + PAGE - 1)
            for _seq, _n, body in log.of_origin(origin, low, high):
                yield body
            low = high + 1


# -- what a receiving side finds -------------------------------------------------------


def clashes(
    log: ChangeLog, db: Database, batch: list[dict], bodies: list[str], held: dict, keys: KeyRing
) -> dict[str, tuple[int, set[str]]]:
    """{origin: (n, bodies)}: for each origin, the lowest number at which the
    batch and what this node holds (its log, or a fork's winner) show two
    signed changes with different chain values, and those changes."""
    found: dict[str, tuple[int, set[str]]] = {}
    seen: dict[tuple[str, int], str] = {}
    winners = {o: (n, w) for o, n, w, _other in known(db)}
    for ch, body in zip(batch, bodies, strict=True):
        key = (ch["o"], ch["n"])
        others = []
        if key in seen:
            others.append(seen[key])
        else:
            seen[key] = body
        if ch["n"] <= held.get(ch["o"], 0):
            own = log.body_at(*key)
            if own is not None:
                others.append(own)
        fork = winners.get(ch["o"])
        if fork is not None and fork[0] == ch["n"]:
            others.append(fork[1])
        value = None
        for other in others:
            if other == body:
                continue
            value = value or _value(ch, body)
            if (
                value_of(other) != value
                and signed(ch, body, keys)
                and signed(json.loads(other), other, keys)
            ):
                n, pair = found.get(ch["o"], (MAX_SEQ + 1, set()))
                if ch["n"] < n:
                    found[ch["o"]] = (ch["n"], {body, other})
                elif ch["n"] == n:
                    pair |= {body, other}
    return found


# -- what is kept ----------------------------------------------------------------------


def known(db: Database) -> list[tuple[str, int, str, str]]:
    """(origin, F, winner, other) of every fork this node knows."""
    return db.execute("SELECT origin, n, winner, other FROM _forks ORDER BY origin").fetchall()


def record(db: Database, origin: str, n: int, bodies: set[str]) -> bool:
    """Keep the proof of a fork of ``origin`` at ``n`` (``bodies``: two or more
    signed changes there): the lowest number known wins, and at one number the
    winner by the rule among every change seen. True when what is kept changed."""
    row = db.execute("SELECT n, winner, other FROM _forks WHERE origin = ?", (origin,)).fetchone()
    if row is not None and row[0] < n:
        return False
    pool = set(bodies)
    if row is not None and row[0] == n:
        pool |= {row[1], row[2]}
    ranked = sorted(pool, key=rank)
    winner = ranked[0]
    values = {value_of(winner)}
    # The other half of the proof: the one kept before if it still differs.
    other = row[2] if row is not None and row[0] == n and row[2] != winner else ranked[1]
    if value_of(other) in values:
        other = next(b for b in ranked[1:] if value_of(b) not in values)
    if row is not None and tuple(row) == (n, winner, other):
        return False
    db.execute(
        "INSERT INTO _forks VALUES (?, ?, ?, ?, ?) ON CONFLICT(origin) DO UPDATE SET"
        " n = excluded.n, winner = excluded.winner, other = excluded.other, found = excluded.found",
        (origin, n, winner, other, int(time.time())),
    )
    return True


def withhold(db: Database, items: list[tuple[dict, str]]) -> list[tuple[dict, str]]:
    """Keep changes of forked origins as they arrived, neither applied nor sent
    on; returns those not kept before."""
    now = int(time.time())
    fresh = []
    for ch, body in items:
        if db.execute(
            "INSERT OR IGNORE INTO _withheld VALUES (?, ?, ?, ?, ?)",
            (ch["o"], ch["n"], _value(ch, body), body, now),
        ).rowcount:
            fresh.append((ch, body))
    return fresh


def summary(db: Database) -> list[dict]:
    """The forks this node knows, for its status: the origin, its fork point,
    the winner's stamp, how many of its changes are withheld here, and, once
    its node has gone on under another origin that made a change at the fork
    again (incarnation.py: it noticed), that origin (``went_on_as``)."""
    out = []
    counts = dict(db.execute("SELECT origin, count(*) FROM _withheld GROUP BY origin"))
    for origin, n, winner, other, found in db.execute(
        "SELECT origin, n, winner, other, found FROM _forks ORDER BY origin"
    ):
        again = _made_again(db, origin, [json.loads(winner), json.loads(other)])
        out.append({
            "origin": origin, "n": n,
            "winner": json.loads(winner)["h"], "withheld": counts.get(origin, 0),
            "found": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(found)),
            **({"went_on_as": again} if again else {}),
        })  # fmt: skip
    return out


def _made_again(db: Database, origin: str, changes: list[dict]) -> str | None:
    """The other incarnation of ``origin``'s node that made one of ``changes``
    again (same record and stamp), if one did."""
    node = node_of(origin)
    for ch in changes:
        row = db.execute(
            "SELECT origin FROM _changes WHERE (origin = ? OR (origin > ? AND origin < ?))"
            " AND origin != ? AND json_extract(body, '$.h') = ? AND json_extract(body, '$.i') = ?"
            " LIMIT 1",
            (node, node + ".", node + "/", origin, ch["h"], ch["i"]),
        ).fetchone()
        if row:
            return row[0]
    return None
