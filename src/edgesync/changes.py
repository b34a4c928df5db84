"""Change records: the unit that is logged, queued, sent and applied.

A change is a dict, sent and stored as compact JSON in this key order:

    {"o": origin (the node, or NODE.INCARNATION after a restore; signing.py),
     "n": origin sequence (1, 2, 3 … per origin),
     "h": HLC stamp, "t": table, "i": record ID,
     "k": "new" | "put" | "del", "d": {column: value, ...},
     "p": the origin's chain value before it, "s": the origin's signature}

``d`` holds only the columns the change sets (a put that edits one column
carries one column), so concurrent edits to different columns both survive.
The pseudo-column ``_code`` carries the record's slug code when it is set.
"""

from __future__ import annotations

import json
import math
import re

from . import hlc
from .config import Config
from .errors import BadBatch, BadInput, a
from .hlc import HLC_RE
from .ids import CODE_RE, ID_RE
from .signing import CHAIN_RE, SIG_RE, Forged, node_of
from .slugs import MAX_WANTED_LEN, WANTED_RE

# new: creates a record (only its ID's node may); put: edits one; del: deletes it.
KINDS = ("new", "put", "del")
CODE_COLUMN = "_code"
# A master's claim, carried by a change of the record that holds a slug: "this
# record holds this slug" (slug_settlement.py). Only masters' changes carry it.
CLAIM = "_claim"
MAX_INT = 2**63 - 1
# Origin sequences stay far inside SQLite's integers (and JSON's exact ones), so
# no peer can push a counter to where adding one fails.
MAX_SEQ = 2**53 - 1
ORIGIN_RE = re.compile(r"^[A-Z0-9]{1,16}(\.[A-Z0-9]{8})?\Z")
ORDER = ("o", "n", "h", "t", "i", "k", "d", "p", "s")


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode(change: dict) -> str:
    return _ENCODER.encode(change)


def origin_seq(body: str) -> tuple[str, int]:
    """(origin, n) of an encoded change, read from its canonical prefix."""
    if body.startswith('{"o":"'):
        end = body.find('"', 6)
        if body.startswith(',"n":', end + 1):
            comma = body.find(",", end + 6)
            try:
                return body[6:end], int(body[end + 6 : comma])
            except ValueError:
                pass
    change = json.loads(body)
    return change["o"], change["n"]


def check_stamps(changes: object, max_skew_ms: int) -> None:
    """Refuse a batch stamped further in the future than the allowed clock skew,
    instead of letting it drag every clock forward."""
    if not isinstance(changes, list):
        raise BadBatch("malformed batch: expected a list of changes")
    limit = hlc.wall_ms() + max_skew_ms
    for ch in changes:
        stamp = ch.get("h") if isinstance(ch, dict) else None
        if hlc.is_valid(stamp) and hlc.decode(stamp)[0] > limit:
            raise BadBatch(
                f"malformed batch: change {ch.get('o')!r}:{ch.get('n')!r} is stamped "
                f"{hlc.decode(stamp)[0] - hlc.wall_ms()} ms in the future "
                f"(max_clock_skew_ms is {max_skew_ms})"
            )


def check_creators(batch: list[dict]) -> None:
    """A record is created only by the node its ID names: a "new" change in
    another node's name is refused (Forged), so no origin can make records in
    another's name or win a slug with a made-up ID."""
    for ch in batch:
        if ch["k"] == "new":
            named = ch["i"].split("-", 1)[0]
            if named != node_of(ch["o"]):
                raise Forged(
                    f"refused: change {ch['o']}:{ch['n']} creates {ch['t']} {ch['i']}, an ID "
                    f"in {named}'s name; records are created only by the node their ID names"
                )


def check_claims(batch: list[dict], masters: set[str]) -> None:
    """Slugs are settled by masters: a change carrying a slug claim from any
    other origin is refused (Forged), so no edge can take a slug by claiming it."""
    for ch in batch:
        if CLAIM in ch["d"] and node_of(ch["o"]) not in masters:
            raise Forged(
                f"refused: change {ch['o']}:{ch['n']} claims slug {ch['d'][CLAIM]!r} for "
                f"{ch['t']} {ch['i']}; only masters settle slugs"
            )


def check_text(where: str, text: str) -> None:
    """Raise BadInput unless ``text`` is valid Unicode (JSON's ``\\ud800`` escapes
    can make lone surrogates, which no UTF-8 database or peer can store)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadInput(
                f"not valid Unicode: {where} holds {text[exc.start]!r} (a lone surrogate)"
            ) from None


def check_value(table: str, column: str, value: object, max_bytes: int) -> None:
    """Raise BadInput unless ``value`` is a storable scalar within the size limit."""
    where = f"{table}.{column}"
    if value is None:
        return
    if isinstance(value, bool):
        # SQLite has no booleans: storing one would read back as 0 or 1.
        raise BadInput(f"not storable: {where} is a boolean; store 0/1 or a string")
    if isinstance(value, str):
        check_text(where, value)
        # A UTF-8 character is at most 4 bytes: only encode when it could matter.
        if len(value) * 4 > max_bytes and len(value.encode("utf-8")) > max_bytes:
            raise BadInput(
                f"value too large: {where} is {len(value.encode('utf-8'))} bytes "
                f"(max_value_bytes is {max_bytes})"
            )
        return
    if isinstance(value, int):
        if not -MAX_INT - 1 <= value <= MAX_INT:
            raise BadInput(f"integer out of range: {where} = {value}")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadInput(f"not a finite number: {where} = {value}")
        return
    raise BadInput(f"not a scalar: {where} is {a(type(value).__name__)}; values must be scalars")


def validate_batch(changes: object, config: Config) -> tuple[list[dict], list[str]]:
    """Check every change in a batch from a peer; raise BadBatch naming the first bad one.

    Nothing is applied unless every change passes, so a malformed record
    rejects the whole batch. Returns the changes with their keys in canonical
    order, and their canonical bodies (what is hashed, logged and forwarded).
    """
    if not isinstance(changes, list):
        raise BadBatch("malformed batch: expected a list of changes")
    out = []
    for pos, ch in enumerate(changes):
        try:
            _validate_change(ch, config)
        except BadInput as exc:
            raise BadBatch(f"malformed batch: change {pos}: {exc}") from None
        out.append(ch if tuple(ch) == ORDER else {k: ch[k] for k in ORDER})
    bodies = [encode(ch) for ch in out]
    for pos, body in enumerate(bodies):
        try:
            check_text(f"change {pos}", body)  # a surrogate in any field, key or value
        except BadInput as exc:
            raise BadBatch(f"malformed batch: {exc}") from None
    return out, bodies


_KEYS = frozenset(ORDER)


def _validate_change(ch: object, config: Config) -> None:
    if not isinstance(ch, dict):
        raise BadInput("not an object")
    if ch.keys() != _KEYS:
        raise BadInput(f"wrong keys {sorted(ch)}")
    origin, seq, stamp = ch["o"], ch["n"], ch["h"]
    if type(origin) is not str or not ORIGIN_RE.match(origin):
        raise BadInput(f"bad origin {origin!r}")
    if type(seq) is not int or not 0 < seq <= MAX_SEQ:
        raise BadInput(f"bad origin sequence {seq!r} (1 to {MAX_SEQ})")
    if type(ch["p"]) is not str or not CHAIN_RE.match(ch["p"]):
        raise BadInput(f"bad chain value {ch['p']!r}")
    if type(ch["s"]) is not str or not SIG_RE.match(ch["s"]):
        raise BadInput(f"bad signature {ch['s']!r}")
    if type(stamp) is not str or not HLC_RE.match(stamp):
        raise BadInput(f"bad clock stamp {stamp!r}")
    if stamp.rsplit(".", 1)[1] != node_of(origin):
        # A stamp names its node: no two origins can make equal stamps.
        raise BadInput(f"clock stamp {stamp!r} is not {node_of(origin)}'s")
    spec = config.tables.get(ch["t"]) if type(ch["t"]) is str else None
    if spec is None:
        raise BadInput(f"unknown table {ch['t']!r}")
    rid = ch["i"]
    if type(rid) is not str or not ID_RE.match(rid):
        raise BadInput(f"bad record id {rid!r}")
    kind = ch["k"]
    if kind not in KINDS:
        raise BadInput(f"bad kind {kind!r}")
    data = ch["d"]
    if type(data) is not dict:
        raise BadInput("d is not an object")
    if kind == "del" and data:
        raise BadInput("a delete carries no data")
    columns = spec.columns
    quick = config.max_value_bytes // 4  # a string this short cannot be too large
    for col, value in data.items():
        if type(value) is str and len(value) <= quick and col in columns:
            continue
        if col == CODE_COLUMN:
            if type(value) is not str or not CODE_RE.match(value):
                raise BadInput(f"bad slug code {value!r}")
            continue
        if col == CLAIM and spec.slug:
            if type(value) is not str or len(value) > MAX_WANTED_LEN or not WANTED_RE.match(value):
                raise BadInput(f"bad slug claim {str(value)[:80]!r}")
            if kind != "put":
                raise BadInput("a slug claim is an edit of the record it names")
            continue
        if col not in columns:
            raise BadInput(f"unknown column {spec.name}.{col}")
        check_value(spec.name, col, value, config.max_value_bytes)
