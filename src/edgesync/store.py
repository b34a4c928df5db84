"""The store: one node's data, where local writes and changes from peers enter.

SQLite is the source of truth. A write stores the row and its change record in
one transaction (db.py), stamped by this node's hybrid logical clock (hlc.py)
and numbered in the change log (changelog.py); changes from peers are
validated whole, then take the same path through the merge (merge.py). Once a
transaction commits, its log entries go to one hook, ``Relay.committed``
(relay.py, when the store has an outbox); the store itself never speaks to
Redis.

Open a store with ``agent.open_store``, which wires the relay and the push
targets from the config.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from . import (
    __version__,
    forks,
    history,
    hlc,
    incarnation,
    migrations,
    protocol,
    quotas,
    reads,
    refusals,
    slug_settlement,
)
from .changelog import ChangeLog, Entry
from .changes import (
    CLAIM,
    CODE_COLUMN,
    MAX_SEQ,
    check_claims,
    check_creators,
    check_value,
    encode,
    validate_batch,
)
from .config import Config, TableSpec
from .config import load as load_config
from .db import Database
from .errors import BadInput, Conflict, NotFound
from .ids import new_id
from .merge import ApplyResult, Merger
from .outbox import Outbox
from .protocol import MAX_BATCH_BYTES, body_bytes, containers
from .relay import Relay
from .signing import (
    KeyRing,
    Signer,
    b64,
    library,
    node_of,
    read_keys_file,
    read_retired_file,
    retired_path,
    sign_body,
    verify_batch,
)

__all__ = ["ApplyResult", "Store"]

# Sees the record as it stands (None: a new one) inside a write's transaction;
# raises to refuse the write.
Precondition = Callable[[dict | None], None]
# How long the answer to a write with an Idempotency-Key is kept (seconds).
REQUEST_KEEP_S = 24 * 3600


class Store:
    """One node's database. One Store per process or thread: the relay's
    publisher thread speaks only to Redis, never to the database."""

    def __init__(
        self,
        config: Config,
        outbox: Outbox | None = None,
        push_targets: tuple[str, ...] = (),
        warn: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.warn = warn or (lambda msg: None)
        self.db = Database(config)
        self.log = ChangeLog(self.db, config.name)
        self.merger = Merger(self.db, config, self.log)
        self.relay = None
        if outbox is not None:
            self.relay = Relay(self.db, self.log, outbox, push_targets, lambda m: self.warn(m))
        self._entries: list[Entry] = []
        self._signer: Signer | None = None
        self._keys: KeyRing | None = None
        self._restarted = False
        # ORIGIN:SEQ of this store's last local write: a host that holds it
        # holds the write (the HTTP face's Edgesync-Bookmark).
        self.bookmark: str | None = None
        # Checking proofs of origin is never turned off but by the benchmark that
        # measures what it costs.
        self.verify = True

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            self._signer = Signer.load(self.config.signing_key)
        return self._signer

    @property
    def keys(self) -> KeyRing:
        """The public keys this node checks changes against."""
        if self._keys is None:
            cfg = self.config
            self._keys = KeyRing(
                (cfg.name, self.signer.public),
                lambda: {**read_keys_file(cfg.keys_file), **cfg.keys},
                self._local_key,
                lambda: read_retired_file(retired_path(cfg.keys_file)),
            )
        return self._keys

    def _local_key(self, name: str) -> str | None:
        """A ``local:`` peer's public key, from the signing_key.pub beside its database."""
        peer = self.config.peers.get(name)
        if peer is None or not peer.url.startswith("local:"):
            return None
        try:
            other = load_config(peer.url[len("local:") :])
            line = other.signing_key.with_name(other.signing_key.name + ".pub").read_text()
        except (BadInput, OSError):
            return None
        parts = line.split()
        return parts[1] if len(parts) == 2 and parts[0] == name else None

    def close(self) -> None:
        """Finish queuing changes on Redis, then close the database."""
        if self.relay is not None:
            self.relay.close()
        self.db.close()

    def init(self, new_incarnation: bool = False) -> None:
        """Create the schema and this node's signing key; harmless to run again.

        ``new_incarnation``: this host is made anew under a name the fleet
        knew (its predecessor was lost with its data). When this init makes
        the signing key, the node starts as a new incarnation of its name
        (``NAME.XXXXXXXX``): nothing it makes is numbered in its
        predecessor's origin, which the fleet holds and sends it back."""
        fresh = not self.config.signing_key.exists()
        self.db.init_schema()
        self._signer = Signer.create(self.config.signing_key, self.config.name)
        if new_incarnation and fresh:
            with self.transaction():
                incarnation.start(self.db, self.log, self.signer, self.config.name)

    def check_schema(self) -> None:
        self.db.check_schema()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction; its log entries reach the relay once it has committed."""
        try:
            with self.db.transaction():
                yield
        except BaseException:
            self._entries.clear()
            self._restarted = False
            raise
        entries, self._entries = self._entries, []
        if self.relay is not None and self._restarted:
            self.relay.restart()
        self._restarted = False
        if self.relay is not None and entries:
            self.relay.committed(entries)

    # -- local writes -----------------------------------------------------------

    def put(self, table: str, data: object, precondition: Precondition | None = None) -> dict:
        """Create a record, or update one when ``data`` carries an existing ``id``.

        ``precondition``, if given, sees the record as it stands (None for a new
        one) inside the write's transaction and may raise to refuse the write
        (an HTTP If-Match)."""
        self.heal_clock()
        spec, rid, values = self._checked(table, data)
        with self.transaction():
            return self._put(spec, rid, values, precondition)

    def put_once(self, table: str, data: object, key: str, fingerprint: str) -> tuple[dict, bool]:
        """``put`` at most once per ``key`` (an HTTP Idempotency-Key): the first
        call writes and keeps its answer, in the same transaction; a later one
        with the same key and ``fingerprint`` (of the request) gets that answer
        again and writes nothing. Returns (answer, replayed). The same key with
        another fingerprint is refused (Conflict)."""
        self.heal_clock()
        spec, rid, values = self._checked(table, data)
        with self.transaction():
            found = self.db.execute(
                "SELECT fingerprint, answer FROM _requests WHERE key = ?", (key,)
            ).fetchone()
            if found is not None:
                if found[0] != fingerprint:
                    raise Conflict(
                        "Idempotency-Key already used for another request: use a new key"
                    )
                return json.loads(found[1]), True
            answer = {"record": self._put(spec, rid, values, None), "bookmark": self.bookmark}
            now = int(time.time())
            self.db.execute(
                "INSERT INTO _requests VALUES (?, ?, ?, ?)",
                (key, now, fingerprint, json.dumps(answer, ensure_ascii=False)),
            )
            self.db.execute("DELETE FROM _requests WHERE at < ?", (now - REQUEST_KEEP_S,))
        return answer, False

    def _checked(self, table: str, data: object) -> tuple[TableSpec, str | None, dict]:
        spec = reads.spec_of(self.config, table)
        if not isinstance(data, dict):
            raise BadInput(f"data for {table} must be a JSON object")
        values = dict(data)
        rid = values.pop("id", None)
        if rid is not None:
            reads.check_id(rid)
        for col, value in values.items():
            if col not in spec.columns:
                raise BadInput(f"unknown column {table}.{col}")
            check_value(table, col, value, self.config.max_value_bytes)
        return spec, rid, values

    def _put(
        self, spec: TableSpec, rid: str | None, values: dict, precondition: Precondition | None
    ) -> dict:
        """Inside the open transaction."""
        table = spec.name
        if rid is None:
            rid = new_id(self.config.name, self.config.location)
            d = {c: values.get(c) for c in spec.columns}
            current = None
        else:
            current = reads.row(self.db, spec, rid)
            if current is None:
                raise NotFound(f"not found: {table} {rid}")
            d = {
                c: v
                for c, v in values.items()
                if current[c] != v or type(current[c]) is not type(v)  # 1 → 1.0 is an edit
            }
        if precondition is not None:
            precondition(None if current is None else reads.record(self.db, spec, rid))
        if spec.slug and (current is None or any(c in d for c in spec.slug)):
            merged = {**(current or {}), **d}
            code = slug_settlement.free_code(self.db, spec, rid, merged, current)
            if current is None or code != current["_code"]:
                d[CODE_COLUMN] = code
        if d:
            self._write_local(spec.name, rid, "new" if current is None else "put", d)
        else:
            self.bookmark = f"{self.log.origin()}:{self.log.clock()[1]}"
        return reads.record(self.db, spec, rid)

    def delete(self, table: str, rid: str, precondition: Precondition | None = None) -> None:
        self.heal_clock()
        spec = reads.spec_of(self.config, table)
        reads.check_id(rid)
        with self.transaction():
            if reads.row(self.db, spec, rid) is None:
                raise NotFound(f"not found: {table} {rid}")
            if precondition is not None:
                precondition(reads.record(self.db, spec, rid))
            self._write_local(spec.name, rid, "del", {})

    def _write_local(self, table: str, rid: str, kind: str, d: dict) -> None:
        signer = self.signer
        last, own_seq = self.log.clock()
        origin, head, _confirmed = self.log.signing_state()
        stamp = hlc.tick(last, self.config.name)
        own_seq += 1
        change = {"o": origin, "n": own_seq, "h": stamp, "t": table, "i": rid,
                  "k": kind, "d": d}  # fmt: skip
        body, value = sign_body(signer, head, encode(change))
        size = body_bytes(body)
        if size > MAX_BATCH_BYTES:  # it could never travel: refuse it here, not at every peer
            raise BadInput(
                f"change too large: {table} {rid} would be {size} bytes; a change travels "
                f"whole in one sync batch of at most {MAX_BATCH_BYTES} bytes"
            )
        _result, entries = self.merger.apply([change], [body], [b64(value)], local=True)
        self._entries += entries
        self.log.set_clock(stamp, own_seq)
        self.bookmark = f"{origin}:{own_seq}"
        self._claim_settled()

    # -- changes from elsewhere ---------------------------------------------------

    def applying(self) -> AbstractContextManager:
        """Around a session's batches: a thread checkpoints beside them, so
        their commits' own checkpoints find little left (Database.checkpoints_apart)."""
        return self.db.checkpoints_apart()

    def apply_changes(
        self,
        changes: object,
        cursor: tuple[str, str, int] | None = None,
        at: list | None = None,
    ) -> ApplyResult:
        """Apply a batch of change records from another node in one transaction.

        The batch is validated first and rejected whole (BadBatch) if any
        change is malformed, then every change's proof of origin is checked
        (signing.py; Forged, refused whole). Changes already held are skipped. ``cursor``
        (peer, direction, seq) is moved in the same transaction; a pull
        cursor with ``at``, what the peer's log holds there.
        """
        batch, bodies = validate_batch(changes, self.config)
        check_creators(batch)
        check_claims(batch, self.masters)
        if self.verify:
            verify_batch(batch, bodies, self.keys, self.log.held())
        with self.transaction():
            origin = self.log.origin()
            own = max((ch["n"] for ch in batch if ch["o"] == origin), default=0)
            if own > self.log.clock()[1]:
                # The fleet holds later changes of ours, proved by our own key:
                # this database went back in time.
                self._start_incarnation()
            # The quota first: what a fork's origin sends on is withheld, kept
            # here too, so it counts as much as what is applied.
            batch, bodies, deferred = quotas.take(
                self.db, self.config, batch, bodies, self.log.held()
            )
            batch, bodies, withheld = self._forks(batch, bodies)
            result, entries = self.merger.apply(batch, bodies)
            result.withheld = withheld
            self._entries += entries
            self._claim_settled()
            if deferred:
                result.deferred = sum(deferred.values())
                result.rule = quotas.rule(self.config, deferred)
                cursor = None  # a puller's cursor stays: what was deferred lies behind it
            if cursor is not None:
                self.log.set_cursor(*cursor)
                if cursor[1] == "pull":
                    self.log.set_pull_at(cursor[0], at)
            if result.last_stamp is not None:
                last = self.log.clock()[0]
                newest = hlc.later(last, result.last_stamp)
                if newest != last:
                    self.log.set_stamp(newest)
        return result

    # -- slugs a master settles (slug_settlement.py) ----------------------------------

    @property
    def masters(self) -> set[str]:
        """The fleet's masters as this node knows them: the only nodes whose
        changes may claim a slug."""
        names = {p.name for p in self.config.peers.values() if p.role == "master"}
        return names | ({self.config.name} if self.config.role == "master" else set())

    def _claim_settled(self) -> None:
        """On a master, inside the open transaction: write a claim for every
        slug clash just settled that no claim names yet."""
        settled, self.merger.unclaimed = self.merger.unclaimed, []
        for table, slug, rid in dict.fromkeys(settled):
            self._write_local(table, rid, "put", {CLAIM: slug})

    # -- forks (forks.py) ---------------------------------------------------------

    def _forks(self, batch: list[dict], bodies: list[str]) -> tuple[list, list, int]:
        """Inside the open transaction: keep the proof of any fork the batch
        shows, settle the origins whose fork moved, and hold back the batch's
        changes the rule withholds. Returns the rest of the batch and how many
        were held back."""
        found = forks.clashes(self.log, self.db, batch, bodies, self.log.held(), self.keys)
        mine = self.log.origin()
        if mine in found:
            # Another change in our own name and number, signed with our key
            # (after a restore, or by a stolen key): this node goes on under a
            # new origin, making again every change of its own from the fork
            # on, so none of them depends on which branch the rule keeps.
            self.db.execute("UPDATE _signing SET confirmed = min(confirmed, ?)",
                            (found[mine][0] - 1,))  # fmt: skip
            self._start_incarnation()
        moved = [o for o, (n, pair) in found.items() if forks.record(self.db, o, n, pair)]
        for origin in moved:
            self._settle(origin)
        rules = {o: (n, forks.value_of(w)) for o, n, w, _other in forks.known(self.db)}
        if not rules:
            return batch, bodies, 0
        keep, kept_bodies, held_back = [], [], []
        for ch, body in zip(batch, bodies, strict=True):
            rule = rules.get(ch["o"])
            if rule is not None and (
                ch["n"] > rule[0] or (ch["n"] == rule[0] and forks.value_of(body) != rule[1])
            ):
                held_back.append((ch, body))
            else:
                keep.append(ch)
                kept_bodies.append(body)
        # A change at or below its origin's held mark was not checked against
        # its signature (signing.verify_batch): anyone may send such junk at a
        # fork point without end, and the fork's proof is kept already.
        marks = self.log.held()
        forks.withhold(self.db, [(ch, b) for ch, b in held_back if ch["n"] > marks.get(ch["o"], 0)])
        return keep, kept_bodies, len(held_back)

    def _settle(self, origin: str) -> None:
        """Make this node's copy of ``origin`` what the rule keeps (forks.py):
        its changes below the fork point and the winner there. Inside the open
        transaction."""
        n, winner, _other = next((f, w, o) for og, f, w, o in forks.known(self.db) if og == origin)
        wins = forks.value_of(winner)
        out = [
            (seq, body)
            for seq, m, body in self.log.of_origin(origin, n, MAX_SEQ)
            if m > n or forks.value_of(body) != wins
        ]
        if out:
            changes = [json.loads(body) for _seq, body in out]
            forks.withhold(self.db, list(zip(changes, [b for _s, b in out], strict=True)))
            self.log.drop(origin, [seq for seq, _b in out])
            if node_of(origin) == self.config.name:
                # Ours, made here under an earlier origin (not what this node
                # received of it since: a thief's, maybe): made again under this
                # one, so no write acknowledged here depends on the branch kept.
                made = incarnation.made_here(self.db, origin)
                again = [ch for ch in changes if ch["n"] <= made]
                self._entries += incarnation.make_again(self.log, self.signer, again)
            self.merger.remerge({(ch["t"], ch["i"]) for ch in changes})
            # The stream may hold what left the log: it is built again from the log.
            self.db.execute(
                "INSERT INTO _meta VALUES ('stream_epoch', hex(randomblob(8)))"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value"
            )
            self._restarted = True
        if self.log.held().get(origin, 0) == n - 1:
            _result, entries = self.merger.apply([json.loads(winner)], [winner])
            self._entries += entries
        self.warn(
            f"warning: {origin} signed two different changes numbered {n} (a fork: its key "
            f"may be in other hands); its changes after {n} are held back until its key is "
            f"revoked or replaced"
        )

    def forks_stated(self) -> dict:
        """What this node states of forks in a session: its checkpoints (for
        the origins it holds) and the forks it knows (forks.py)."""
        return {"chains": forks.checkpoints(self.log, self.log.held()),
                "forks": forks.stated(self.db)}  # fmt: skip

    def evidence_for(self, stated: dict) -> Iterator[str]:
        """The change bodies a peer that stated ``stated`` lacks to see the
        forks this node can show it (only of origins whose keys are known),
        read as they are sent."""
        chains, known = forks.check_stated(stated.get("chains"), stated.get("forks"))
        for body in forks.evidence_for(self.log, self.db, chains, known):
            if self.keys.knows(json.loads(body)["o"]):
                yield body

    # -- restore from backup (incarnation.py) ---------------------------------------

    def heads_of(self, node: str) -> dict[str, str]:
        """The highest change held here of each origin of ``node`` (its name and
        its incarnations), as sent: what a session shows it."""
        return self.log.heads_of(node)

    def check_heads(self, heads: object) -> bool:
        """Given what a peer holds of this node's origins ({origin: the highest
        change held, as sent}), start a new incarnation if it proves this database
        went back in time. Returns True when it did."""
        head = heads.get(self.log.origin()) if isinstance(heads, dict) else None
        if not isinstance(head, str) or len(head) > MAX_BATCH_BYTES:
            return False
        if containers(head.encode(errors="replace"), 2) > 2:  # one change: it and its data
            return False
        with self.transaction():
            if not incarnation.diverged(self.log, self.log.clock()[1], head, self.signer):
                return False
            self._start_incarnation()
        return True

    def _start_incarnation(self) -> None:
        """Inside the open transaction."""
        old = self.log.origin()
        entries, _touched = incarnation.start(self.db, self.log, self.signer, self.config.name)
        self._entries += entries
        self._restarted = True
        self.warn(
            f"warning: {old}'s later changes are held elsewhere (was this database restored "
            f"from a backup?); its changes since go on as {self.log.origin()}"
        )

    # -- a clock set right (incarnation.py) ---------------------------------------

    def heal_clock(self) -> bool:
        """If this node's clock ran fast and was set right (its newest stamp is
        further ahead of the clock than max_clock_skew_ms), make its unconfirmed
        future-stamped changes again, stamped now, and merge the records they
        touched again from the log. Returns True when it did. Runs before every
        local write and every sync session."""
        if not self._clock_set_back(self.log.clock()[0]):
            return False
        with self.transaction():
            last = self.log.clock()[0]
            if not self._clock_set_back(last):  # another process healed it meanwhile
                return False
            old, now = self.log.origin(), hlc.wall_ms()
            entries, touched = incarnation.start(
                self.db, self.log, self.signer, self.config.name, restamp=now
            )
            self._entries += entries
            self._restarted = True
            self.merger.remerge(touched)
        self.warn(
            f"warning: {self.config.name}'s clock ran {hlc.decode(last)[0] - now} ms ahead and "
            f"was set back; {len(touched)} records' unsent changes go on as "
            f"{self.log.origin()} (was {old}), stamped now"
        )
        return True

    def _clock_set_back(self, last: str | None) -> bool:
        return last is not None and (
            hlc.decode(last)[0] > hlc.wall_ms() + self.config.max_clock_skew_ms
        )

    # -- reads --------------------------------------------------------------------

    def get(self, table: str, rid: str) -> dict:
        spec = reads.spec_of(self.config, table)
        return reads.record(self.db, spec, reads.check_id(rid))

    def get_by_slug(self, table: str, slug: str) -> dict:
        return reads.by_slug(self.db, reads.spec_of(self.config, table), slug)

    def rows(self, table: str) -> int:
        return reads.count(self.db, reads.spec_of(self.config, table))

    def digest(self) -> str:
        return reads.digest(self.db, self.config)

    def held(self) -> dict[str, int]:
        return self.log.held()

    def max_seq(self) -> int:
        return self.log.max_seq()

    def changes_after(self, seq: int, limit: int) -> list[tuple[int, str, str, int]]:
        return self.log.changes_after(seq, limit)

    # -- sync bookkeeping -----------------------------------------------------------

    def set_cursor(self, peer: str, direction: str, seq: int) -> None:
        """Move a sync cursor in a transaction of its own."""
        with self.transaction():
            self.log.set_cursor(peer, direction, seq)

    def set_pull_cursor(self, peer: str, seq: int, at: list | None) -> None:
        with self.transaction():
            self.log.set_cursor(peer, "pull", seq)
            self.log.set_pull_at(peer, at)

    def restart_push(self, peer: str, lagging: dict[str, int]) -> None:
        """The peer holds less than it did ({origin: its held mark} where it
        lags: a restore, or changes it deferred): push it this log again from
        the first change it lacks."""
        with self.transaction():
            found = [self.log.first_after(origin, n) for origin, n in lagging.items()]
            found = [seq for seq in found if seq is not None]
            if not found:  # this log holds nothing it lacks (left the log: forks.py)
                return
            self.db.execute("DELETE FROM _cursors WHERE peer = ? AND direction = 'push'", (peer,))
            self.log.set_cursor(peer, "push", min(found) - 1)

    def set_push_held(self, peer: str, held: dict[str, int]) -> None:
        with self.transaction():
            self.log.set_push_held(peer, held)

    def restart_pull(self, peer: str, log_id: str) -> None:
        """The peer's log is not the one this node's cursor counts in: start over."""
        with self.transaction():
            self.log.restart_pull(peer, log_id)

    def record_refusal(self, peer: str, action: str, rule: str) -> None:
        refusals.record(self.db, peer, action, rule)

    def interrupt(self) -> None:
        """Stop whatever SQLite is doing or waiting for (a lock) in this store's
        connection, from another thread: a session's deadline has passed."""
        self.db.conn.interrupt()

    def flush(self) -> None:
        """Wait until every committed change is on Redis (or its gap recorded)."""
        if self.relay is not None:
            self.relay.flush()

    def status(self) -> dict:
        self.flush()
        return {
            "node": self.config.name,
            "version": __version__,
            "schema": migrations.version_of(self.db),
            "protocols": protocol.speaks(),
            "location": self.config.location,
            "role": self.config.role,
            "farm": self.config.farm,
            "rows": {t: self.rows(t) for t in sorted(self.config.tables)},
            "changes": self.log.max_seq(),
            "outbox_pending": self.relay.pending() if self.relay else 0,
            "outbox_stream": self.relay.stream_length() if self.relay else None,
            "push_targets": list(self.relay.push_targets) if self.relay else [],
            "redis": self.relay.redis_state() if self.relay else "down",
            "origin": self.log.origin(),
            "held": self.log.held(),
            "refusals": refusals.summary(self.db),
            "forks": forks.summary(self.db),
            "quota": quotas.summary(self.db, self.config),
            "cursors": self.log.cursors(),
            "links": history.links(self.db),
            "signing": library(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
