"""Quotas: how much of one node's changes a receiver takes per interval.

A stolen key can sign as many changes as it likes in its own name, under as
many incarnations of it as it likes; each receiver takes at most
``quota_changes`` changes and ``quota_bytes`` bytes of change bodies per node
(an origin and all its incarnations) in each ``quota_interval_s`` window
(config; 0: no limit), counted over the changes it did not hold yet. The rest
of a batch is taken as usual; a node's changes past its quota are *deferred*: not logged,
so the receiver's held mark for that origin stays below them, and the sending
side sends them again in a later session (a pusher sees the receiver hold
less than it sent and goes back in its log to the first change it lacks; a
puller keeps its cursor where the session found it). Nothing genuine is lost:
it arrives at the rate the quota allows. Every deferral is a refusal in the
receiver's status, and the session ends with one line naming the quota.
"""

from __future__ import annotations

import time

from .config import Config
from .db import Database
from .protocol import body_bytes
from .signing import node_of


def take(
    db: Database,
    config: Config,
    batch: list[dict],
    bodies: list[str],
    held: dict[str, int],
    now: float | None = None,
) -> tuple[list[dict], list[str], dict[str, int]]:
    """Inside the open transaction: the changes of ``batch`` within their
    origins' quotas (changes at or below a held mark are free: they are
    skipped anyway) and {node: changes deferred}, counted per node (all its
    incarnations together). Each origin's new
    changes are taken in number order, so its held mark stays whole."""
    most, most_bytes, every = config.quota_changes, config.quota_bytes, config.quota_interval_s
    if not (most or most_bytes):
        return batch, bodies, {}
    window = int((time.time() if now is None else now) // every)
    order = sorted(
        (i for i, ch in enumerate(batch) if ch["n"] > held.get(ch["o"], 0)),
        key=lambda i: (batch[i]["o"], batch[i]["n"]),
    )
    used: dict[str, list[int]] = {}
    dropped: set[int] = set()
    deferred: dict[str, int] = {}
    for i in order:
        # Counted per node: an origin's incarnations (NODE.XXXXXXXX) are any
        # number its key may sign, so a quota per origin would bind nothing.
        origin = node_of(batch[i]["o"])
        if origin not in used:
            row = db.execute(
                "SELECT window, changes, bytes FROM _quota WHERE origin = ?", (origin,)
            ).fetchone()
            used[origin] = [row[1], row[2]] if row and row[0] == window else [0, 0]
        count, size = used[origin]
        cost = body_bytes(bodies[i])
        if (
            deferred.get(origin)
            or (most and count + 1 > most)
            or (most_bytes and size + cost > most_bytes)
        ):
            dropped.add(i)
            deferred[origin] = deferred.get(origin, 0) + 1
            continue
        used[origin] = [count + 1, size + cost]
    db.executemany(
        "INSERT INTO _quota VALUES (?, ?, ?, ?, ?) ON CONFLICT(origin) DO UPDATE SET"
        " window = excluded.window, changes = excluded.changes, bytes = excluded.bytes,"
        " deferred = CASE WHEN window = excluded.window THEN deferred + excluded.deferred"
        " ELSE excluded.deferred END",
        [(o, window, c, b, deferred.get(o, 0)) for o, (c, b) in used.items()],
    )
    if not dropped:
        return batch, bodies, {}
    keep = [i for i in range(len(batch)) if i not in dropped]
    return [batch[i] for i in keep], [bodies[i] for i in keep], deferred


def rule(config: Config, deferred: dict[str, int]) -> str:
    """The one line that names what was deferred and the quota."""
    parts = ", ".join(f"{n} of {o}" for o, n in sorted(deferred.items()))
    limits = " and ".join(
        x for x in (f"{config.quota_changes} changes" if config.quota_changes else "",
                    f"{config.quota_bytes} bytes" if config.quota_bytes else "") if x
    )  # fmt: skip
    return (
        f"changes over {config.name}'s quota per node ({limits} per "
        f"{config.quota_interval_s} s): {parts} deferred; sent again once it allows"
    )


def summary(db: Database, config: Config, now: float | None = None) -> dict:
    """For the status: the quota, and per origin its use in this window and the
    changes deferred in it."""
    if not (config.quota_changes or config.quota_bytes):
        return {"changes": 0, "bytes": 0, "interval_s": config.quota_interval_s, "origins": {}}
    window = int((time.time() if now is None else now) // config.quota_interval_s)
    origins = {
        o: {"changes": c, "bytes": b, "deferred": d}
        for o, c, b, d in db.execute(
            "SELECT origin, changes, bytes, deferred FROM _quota WHERE window = ?", (window,)
        )
    }
    return {"changes": config.quota_changes, "bytes": config.quota_bytes,
            "interval_s": config.quota_interval_s, "origins": origins}  # fmt: skip
