"""The sync wire protocol: length-prefixed JSON frames over a byte stream.

A frame is a 4-byte big-endian length, then that many bytes of UTF-8 JSON (an
object with a type ``t``). The same frames run over SSH and over a local
subprocess's stdin/stdout. A truncated frame ends the session with a
ProtocolError (exit 4); a malformed one, or one over a receiver's limits
(below), with a BadFrame (exit 2). Nothing from the batch it carried is applied.

Session (the caller speaks first):

    caller → hello   {v, speaks, release, node, action: push|pull, clock, yours, held?,
                      cursor?, log?}
    callee → welcome {v, release?, node, clock, yours, held?, log?}  or  refused {rule}
                     or  error {msg}

``yours`` is what the sender holds of the other side's origins ({origin: the
highest change of it held, as sent}): a node restored from a backup learns from it that
the fleet holds later changes of its own (incarnation.py).

Versions are negotiated, so agents of neighbouring releases sync during a
rollout: the hello lists the versions the caller speaks (``speaks``; ``v`` is
the oldest of them, which is all a release before negotiation reads) and the
callee answers in the newest both speak (the welcome's ``v``). A peer with no
version in common is refused with a line naming both sides' versions. Version
2 carries signed changes (signing.py); 3 adds each side's release (``release``),
which the link history keeps (history.py). 4 adds fork evidence (forks.py):
the side that receives changes states ``chains`` ({origin: [n, chain value,
n', chain value', …]}, checkpoints back from its held marks) and ``forks`` ({origin: [F, the
winner's chain value]}) in its hello (pull) or welcome (push), and the sending
side opens with a batch of the changes that show it a fork it cannot see.
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

from . import __version__
from .errors import BadInput, Refused, SyncError

# The protocol versions this release speaks: OLDEST to VERSION.
VERSION = 4
OLDEST = 2
# What each protocol version brought, for the line that refuses a mismatch.
VERSIONS = {
    1: "unsigned changes",
    2: "changes signed by their origin",
    3: "each side names its release",
    4: "the receiving side states its chain checkpoints and the forks it knows",
}
# A release name as a peer may state it.
_RELEASE = re.compile(r"[0-9A-Za-z.+-]{1,40}")

# Limits every receiver enforces, whatever the sender does: they bound what one
# frame can cost a receiver in memory (tests/integration/test_faults.py
# measures it) before anything in it is looked at.
# A batch carries at most this many bytes of change bodies (a single change is
# never larger: the store refuses to write one that is), ...
MAX_BATCH_BYTES = 4 * 1024 * 1024
# ... and at most this many changes (the largest batch_size a config may set).
MAX_BATCH_CHANGES = 10_000
# A frame is a batch and its envelope.
MAX_FRAME = MAX_BATCH_BYTES + 64 * 1024
# JSON objects and arrays in one frame: two per change (the change and its
# data) and a few for the envelope. Counted before the frame is parsed.
MAX_CONTAINERS = 2 * MAX_BATCH_CHANGES + 64
_HEADER = struct.Struct(">I")
# A JSON string (one left open runs to the end, so a hostile unterminated one
# costs one linear pass, not one per quote).
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)


class ProtocolError(SyncError):
    """The session broke: the peer closed it, or a frame was cut short."""


class PeerError(SyncError):
    """The peer ended the session with an error frame (``frame``)."""

    def __init__(self, text: str, frame: dict):
        super().__init__(text)
        self.frame = frame


class BadFrame(BadInput):
    """The peer sent a frame that is not valid or is over a receiver's limit;
    nothing from it was applied."""


def body_bytes(body: str) -> int:
    """The UTF-8 size of an encoded change (cheap for ASCII, the usual case)."""
    return len(body) if body.isascii() else len(body.encode())


def write_frame(out: BinaryIO, message: dict | bytes) -> None:
    data = message if isinstance(message, bytes) else json.dumps(message).encode()
    if len(data) > MAX_FRAME:
        raise BadFrame(f"frame of {len(data)} bytes exceeds the {MAX_FRAME}-byte limit")
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
    """Read one frame; raise ProtocolError if it is truncated, BadFrame if it is
    oversized, malformed, or not one of the ``expect``ed types."""
    header = _read_exact(inp, 4)
    if not header:
        raise ProtocolError("connection closed by peer")
    if len(header) < 4:
        raise ProtocolError("truncated frame header")
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise BadFrame(f"oversized frame: {size} bytes (limit {MAX_FRAME})")
    data = _read_exact(inp, size)
    if len(data) < size:
        raise ProtocolError(f"truncated frame: got {len(data)} of {size} bytes")
    _check_containers(data)
    try:
        message = json.loads(data)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, huge numbers, deep nesting
        raise BadFrame(f"malformed frame: {str(exc)[:200]}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise BadFrame("malformed frame: not an object with a type")
    if message["t"] == "error":
        said = " ".join(str(message.get("msg")).split())[:500]  # one line, whatever it sent
        raise PeerError(f"peer error: {said}", message)
    if expect is not None and message["t"] not in expect:
        raise BadFrame(
            f"malformed frame: unexpected {message['t'][:40]!r} (expected {', '.join(expect)})"
        )
    if message["t"] == "batch":
        changes = message.get("changes")
        if not isinstance(changes, list):
            raise BadFrame("malformed batch: expected a list of changes")
        if len(changes) > MAX_BATCH_CHANGES:
            raise BadFrame(f"oversized batch: {len(changes)} changes (limit {MAX_BATCH_CHANGES})")
    return message


def containers(data: bytes, limit: int) -> int:
    """How many JSON objects and arrays ``data`` opens, counted without
    parsing it; exact when above ``limit`` (braces inside strings are text)."""
    found = data.count(b"{") + data.count(b"[")
    if found <= limit:
        return found  # the usual case, counted at memory speed
    outside = _STRINGS.sub(b"", data)
    return outside.count(b"{") + outside.count(b"[")


def _check_containers(data: bytes) -> None:
    """Refuse a frame of more JSON objects and arrays than a batch can hold,
    before parsing it: parsed, each costs a receiver 50 times its bytes."""
    found = containers(data, MAX_CONTAINERS)
    if found > MAX_CONTAINERS:
        raise BadFrame(f"oversized frame: {found} JSON objects and arrays (limit {MAX_CONTAINERS})")


def speaks() -> list[int]:
    return list(range(OLDEST, VERSION + 1))


def hello(node: str, action: str, clock: int, yours: dict, **pull) -> dict:
    """The caller's opening: the versions it speaks, who it says it is (the
    receiver believes the key, not this), what it wants, its clock, what it
    holds of the receiver's origins; a puller adds held, cursor, dry_run."""
    return {"t": "hello", "v": OLDEST, "speaks": speaks(), "release": __version__,
            "node": node, "action": action, "clock": clock, "yours": yours, **pull}  # fmt: skip


def welcome(
    node: str,
    clock: int,
    yours: dict,
    held: dict | None = None,
    log: str | None = None,
    v: int = VERSION,
) -> dict:
    """The receiver's answer when it accepts, in the version it chose, with what
    it holds of the caller's origins; a receiver of a push says what it holds of
    every origin, a puller's peer names its log (the puller's cursor counts only
    in that log)."""
    msg = {"t": "welcome", "v": v, "node": node, "clock": clock, "yours": yours}
    if v >= 3:
        msg["release"] = __version__
    if log is not None:
        msg["log"] = log
    if held is not None:
        msg["held"] = held
    return msg


def _versions(msg: dict) -> list[int]:
    """The versions a hello offers: its ``speaks``, or its ``v`` alone (a release
    before negotiation)."""
    offered = msg.get("speaks", [msg.get("v")])
    if (
        not isinstance(offered, list)
        or not 1 <= len(offered) <= 64
        or any(type(x) is not int or not 0 <= x <= 999_999 for x in offered)
    ):
        raise BadFrame("malformed frame: no protocol version in hello")
    return offered


def choose(peer: str, msg: dict) -> int:
    """The callee's choice for a hello: the newest version both sides speak."""
    offered = _versions(msg)
    common = set(offered) & set(speaks())
    if not common:
        raise gap(peer, offered)
    return max(common)


def accepted(peer: str, reply: dict) -> int:
    """The version of a welcome, which must be one the caller offered."""
    v = reply.get("v")
    if type(v) is not int:
        raise BadFrame("malformed frame: welcome without a protocol version")
    if v not in speaks():
        raise gap(peer, [v])
    return v


def release_of(msg: dict, v: int) -> str | None:
    """The release a peer names (protocol 3 on), if it names a plausible one."""
    release = msg.get("release") if v >= 3 else None
    return release if isinstance(release, str) and _RELEASE.fullmatch(release) else None


def _span(versions) -> str:
    versions = sorted(set(versions))
    low, high = versions[0], versions[-1]
    if low == high:
        return str(low) + (f" ({VERSIONS[low]})" if low in VERSIONS else "")
    if versions == list(range(low, high + 1)):
        return f"{low}-{high}"
    return ", ".join(map(str, versions[:8])) + (" …" if len(versions) > 8 else "")


def gap(peer: str, theirs) -> Refused:
    """The refusal of a peer with no protocol version in common with this agent."""
    return Refused(
        f"refused: {peer} speaks sync protocol {_span(theirs)}; this agent speaks "
        f"{_span(speaks())}: update the older side (a rollout keeps neighbouring releases "
        f"in step)"
    )


def refusal(node: str, mine: list[int]) -> dict:
    """The error frame callee ``node`` sends a caller it has no version in common
    with: the versions it speaks, for the caller to name."""
    return {"t": "error", "msg": f"{node} has no sync protocol in common (it speaks "
            f"{_span(mine)})", "speaks": mine}  # fmt: skip


def gap_in(peer: str, exc: PeerError) -> Refused | None:
    """A peer's error frame that refuses the session for want of a common
    protocol version, as this agent's refusal naming both sides' versions."""
    theirs = exc.frame.get("speaks")
    if isinstance(theirs, list) and theirs and all(type(v) is int for v in theirs[:64]):
        return gap(peer, theirs[:64])
    return None


def refused(rule: str) -> dict:
    return {"t": "refused", "rule": rule}


def ack(
    applied: int, conflicts: int = 0, skipped: int = 0, deferred: int = 0, rule: str | None = None
) -> dict:
    """A batch is committed on the receiving side; ``deferred`` of its changes
    were over the receiver's quota (quotas.py), which ``rule`` names."""
    msg = {"t": "ack", "applied": applied, "conflicts": conflicts, "skipped": skipped}
    if deferred:
        msg.update(deferred=deferred, rule=rule)
    return msg


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
