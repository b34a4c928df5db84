"""The sync wire protocol: length-prefixed JSON frames over a byte stream.

A frame is a 4-byte big-endian length, then that many bytes of UTF-8 JSON (an
object with a type ``t``). The same frames run over SSH and over a local
subprocess's stdin/stdout. A malformed, truncated or oversized frame ends the
session with a ProtocolError; nothing from the batch it carried is applied.

Session (the caller speaks first):

    caller → hello   {v, node, action: push|pull, clock, yours, held?, cursor?, log?}
    callee → welcome {v, node, clock, yours, held?, log?}  or  refused {rule}  or  error {msg}

``yours`` is what the sender holds of the other side's origins ({origin: the
highest change of it held, as sent}): a node restored from a backup learns from it that
the fleet holds later changes of its own (incarnation.py). Version 2 carries
signed changes (signing.py); version 1 agents are refused, naming the gap.
    push:  caller → batch {changes, last}   callee → ack {applied, conflicts, skipped}
           ... caller → done                callee → bye
    pull:  callee → batch {changes, last, at} caller → ack {applied, conflicts, skipped}
           ... callee → done {last, at}

A puller's cursor is a position in the peer's log, valid only in the log it
was made in: the hello names that log (``log``) and what stood at the cursor
(``at``: [origin, n]); a peer whose log is another, or went back in time (a
restore from backup), reads its log to the puller from the start.
"""

from __future__ import annotations

import json
import re
import struct
from typing import BinaryIO

from .errors import Refused, SyncError

VERSION = 2
# What each protocol version brought, for the line that refuses a mismatch.
VERSIONS = {1: "unsigned changes", 2: "changes signed by their origin"}
MAX_FRAME = 64 * 1024 * 1024
# A batch carries at most this many bytes of change bodies (and always at
# least one change, so no change is too big to travel).
MAX_BATCH_BYTES = 8 * 1024 * 1024
_HEADER = struct.Struct(">I")


class ProtocolError(SyncError):
    """The peer sent something that is not a valid frame."""


def write_frame(out: BinaryIO, message: dict | bytes) -> None:
    data = message if isinstance(message, bytes) else json.dumps(message).encode()
    if len(data) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(data)} bytes exceeds the {MAX_FRAME}-byte limit")
    out.write(_HEADER.pack(len(data)))
    out.write(data)
    out.flush()


def _read_exact(inp: BinaryIO, n: int) -> bytes:
    chunks = []
    while n:
        chunk = inp.read(n)
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(inp: BinaryIO, expect: tuple[str, ...] | None = None) -> dict:
    """Read one frame; raise ProtocolError if it is truncated, oversized,
    malformed, or not one of the ``expect``ed types."""
    header = _read_exact(inp, 4)
    if not header:
        raise ProtocolError("connection closed by peer")
    if len(header) < 4:
        raise ProtocolError("truncated frame header")
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ProtocolError(f"oversized frame: {size} bytes (limit {MAX_FRAME})")
    data = _read_exact(inp, size)
    if len(data) < size:
        raise ProtocolError(f"truncated frame: got {len(data)} of {size} bytes")
    try:
        message = json.loads(data)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, huge numbers, deep nesting
        raise ProtocolError(f"malformed frame: {str(exc)[:200]}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("malformed frame: not an object with a type")
    if message["t"] == "error":
        raise SyncError(f"peer error: {message.get('msg')}")
    if expect is not None and message["t"] not in expect:
        raise ProtocolError(f"unexpected frame {message['t']!r} (expected {', '.join(expect)})")
    return message


def hello(node: str, action: str, clock: int, yours: dict, **pull) -> dict:
    """The caller's opening: who it says it is (the receiver believes the key,
    not this), what it wants, its clock, what it holds of the receiver's
    origins; a puller adds held, cursor, dry_run."""
    return {"t": "hello", "v": VERSION, "node": node, "action": action, "clock": clock,
            "yours": yours, **pull}  # fmt: skip


def welcome(
    node: str, clock: int, yours: dict, held: dict | None = None, log: str | None = None
) -> dict:
    """The receiver's answer when it accepts, with what it holds of the caller's
    origins; a receiver of a push says what it holds of every origin, a puller's
    peer names its log (the puller's cursor counts only in that log)."""
    msg = {"t": "welcome", "v": VERSION, "node": node, "clock": clock, "yours": yours}
    if log is not None:
        msg["log"] = log
    if held is not None:
        msg["held"] = held
    return msg


def version_gap(peer: str, text: str) -> Refused | None:
    """The refusal for a peer that speaks another protocol version, if ``text``
    (its hello, welcome or error) names one."""
    found = re.search(r"protocol version (\S+)", text)
    if not found or found.group(1) == str(VERSION):
        return None
    theirs = found.group(1).strip("'\".,:;")
    what = VERSIONS.get(int(theirs)) if re.fullmatch(r"[0-9]{1,6}", theirs) else None
    return Refused(
        f"refused: {peer} speaks sync protocol {theirs}"
        + (f" ({what})" if what else "")
        + f"; this agent speaks {VERSION} ({VERSIONS[VERSION]}): run the same release on both"
    )


def refused(rule: str) -> dict:
    return {"t": "refused", "rule": rule}


def ack(applied: int, conflicts: int = 0, skipped: int = 0) -> dict:
    """A batch is committed on the receiving side."""
    return {"t": "ack", "applied": applied, "conflicts": conflicts, "skipped": skipped}


def batch_frame(bodies: list[str], last: int, at: list | None = None) -> bytes:
    """A batch frame built from already-encoded change bodies (no re-encoding);
    a puller's batch says what stands at ``last`` in the sender's log (``at``)."""
    return (
        b'{"t":"batch","last":'
        + str(last).encode()
        + (b',"at":' + json.dumps(at).encode() if at is not None else b"")
        + b',"changes":['
        + ",".join(bodies).encode()
        + b"]}"
    )
