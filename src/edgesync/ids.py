"""Global record IDs: ``EDGENODE-LOC-NNLL-RRRRRRRR-DDMMYYYYHHMMSS``.

Every record is born with an ID no other node can make: the node name and
location are unique per node, and the NNLL code plus eight random characters
(80+ bits from the OS's cryptographic source) separate records made in the same
second. Rowids never identify a record.
"""

from __future__ import annotations

import os
import re
import time

ID_RE = re.compile(r"^[A-Z0-9]{1,16}-[A-Z0-9]{2,8}-[0-9]{2}[A-Z]{2}-[A-Z0-9]{8}-[0-9]{14}\Z")
NODE_NAME_RE = re.compile(r"^[A-Z0-9]{1,16}\Z")
LOCATION_RE = re.compile(r"^[A-Z0-9]{2,8}\Z")
CODE_RE = re.compile(r"^[0-9]{2}[A-Z]{2}\Z")

_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CODES = 100 * 26 * 26  # NN * LL
_RANDOMS = 36**8
_SPACE = _CODES * _RANDOMS
# Largest multiple of _SPACE below 2**64: draws at or above it are rejected so
# every (code, random) pair is equally likely.
_LIMIT = (2**64 // _SPACE) * _SPACE


def _draw() -> tuple[str, str]:
    while True:
        n = int.from_bytes(os.urandom(8), "big")
        if n < _LIMIT:
            break
    n %= _SPACE
    n, code_n = divmod(n, _CODES)
    rand = []
    for _ in range(8):
        n, r = divmod(n, 36)
        rand.append(_ALNUM[r])
    nn, ll = divmod(code_n, 676)
    code = f"{nn:02d}{_LETTERS[ll // 26]}{_LETTERS[ll % 26]}"
    return code, "".join(rand)


def stamp(now: float | None = None) -> str:
    """UTC ``DDMMYYYYHHMMSS`` for ``now`` (seconds since the epoch)."""
    return time.strftime("%d%m%Y%H%M%S", time.gmtime(time.time() if now is None else now))


def new_id(node: str, location: str, now: float | None = None) -> str:
    """A new global ID for a record made on ``node`` at ``location``."""
    code, rand = _draw()
    return f"{node}-{location}-{code}-{rand}-{stamp(now)}"


def new_code() -> str:
    """A fresh random NNLL code (used when a slug clashes)."""
    return _draw()[0]


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_RE.match(value) is not None


def code_of(record_id: str) -> str:
    """The NNLL part of an ID."""
    return record_id.split("-")[2]


def random_of(record_id: str) -> str:
    """The eight random characters of an ID."""
    return record_id.split("-")[3]
