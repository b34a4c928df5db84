"""Hybrid logical clock stamps, encoded as strings that sort in clock order.

A stamp is ``WWWWWWWWWWWW.CCCC.NODE``: wall-clock milliseconds and a counter in
fixed-width hex, then the node name, so plain string comparison orders stamps by
(time, counter, node) and the node name breaks ties.
"""

from __future__ import annotations

import re
import time

HLC_RE = re.compile(r"^[0-9a-f]{12}\.[0-9a-f]{4}\.[A-Z0-9]{1,16}\Z")
_MAX_COUNTER = 0xFFFF


def encode(ms: int, counter: int, node: str) -> str:
    return f"{ms:012x}.{counter:04x}.{node}"


def decode(stamp: str) -> tuple[int, int, str]:
    ms, counter, node = stamp.split(".", 2)
    return int(ms, 16), int(counter, 16), node


def is_valid(stamp: object) -> bool:
    return isinstance(stamp, str) and HLC_RE.match(stamp) is not None


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def tick(last: str | None, node: str, now_ms: int | None = None) -> str:
    """The next stamp for a local event, after ``last`` (the newest stamp seen)."""
    now = wall_ms() if now_ms is None else now_ms
    if last is None:
        return encode(now, 0, node)
    last_ms, last_counter, _ = decode(last)
    if now > last_ms:
        return encode(now, 0, node)
    if last_counter >= _MAX_COUNTER:
        return encode(last_ms + 1, 0, node)
    return encode(last_ms, last_counter + 1, node)


def later(a: str | None, b: str | None) -> str | None:
    """The later of two stamps (None counts as earliest)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a > b else b
