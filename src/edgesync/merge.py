"""Merging changes into the tables: per-column last-writer-wins by HLC stamp.

Local writes and changes from peers take the same path (``Merger.apply``):
the changes not held yet are logged, then upserted so that each column keeps
the value with the newest stamp (``_v_<column>``; node names break ties, as
they are part of the stamp), deletes become tombstones, and slugs are settled.
Applying a change twice, or the same changes in any order, leaves the same
visible content.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import slug_settlement
from .changelog import ChangeLog, Entry
from .changes import CLAIM, CODE_COLUMN
from .config import Config, TableSpec
from .db import IN_CHUNK, Database, q


@dataclass
class ApplyResult:
    """What applying a batch did: new changes logged, duplicates skipped,
    changes that lost at least one column to a newer stamp (conflicts), and
    changes of a forked origin held back (withheld)."""

    applied: int = 0
    skipped: int = 0
    conflicts: int = 0
    last_stamp: str | None = None
    withheld: int = 0  # changes of a forked origin held back (forks.py)
    deferred: int = 0  # changes over an origin's quota, sent again later (quotas.py)
    rule: str | None = None  # the line that names the quota, when some were deferred


class Merger:
    def __init__(self, db: Database, config: Config, log: ChangeLog):
        self.db = db
        self.config = config
        self.log = log
        self._sql = {spec.name: _statements(spec) for spec in config.tables.values()}
        # Clashes this master settled that no claim names yet: (table, slug, record).
        self.unclaimed: list[tuple[str, str, str]] = []

    def apply(
        self,
        batch: list[dict],
        bodies: list[str],
        chains: list[str] | None = None,
        local: bool = False,
    ) -> tuple[ApplyResult, list[Entry]]:
        """Log and apply changes (validated and proved; ``bodies`` their canonical
        encodings; ``chains``, for this node's own fresh writes, their chain
        values) inside the open transaction;
        returns what it did and the log entries it made.

        ``local`` marks this node's own fresh writes, which cannot be duplicates
        or conflicts, so their checks are skipped.
        """
        result = ApplyResult()
        if local:
            new = batch
            entries = [
                self.log.append_own(ch, body, value)
                for ch, body, value in zip(batch, bodies, chains, strict=True)
            ]
        else:
            held = self.log.held()
            new, marks = self.log.unheld(batch, held, self.config.max_early)
            result.skipped = len(batch) - len(new)
            if new:
                where = {id(ch): pos for pos, ch in enumerate(batch)}
                picked = [where[id(ch)] for ch in new]
                entries = self.log.append(new, [bodies[p] for p in picked])
                heads: dict[str, tuple[int, str]] = {}
                for p in picked:
                    ch = batch[p]
                    if ch["n"] > heads.get(ch["o"], (0,))[0]:
                        heads[ch["o"]] = (ch["n"], bodies[p])
                self.log.save_heads(heads)
            else:
                entries = []
            self.log.save_marks(marks, held)
        result.applied = len(new)
        if not new:
            return result, entries
        result.last_stamp = max(ch["h"] for ch in new)
        by_table: dict[str, list[dict]] = {}
        for ch in new:
            by_table.setdefault(ch["t"], []).append(ch)
        for table, chs in by_table.items():
            result.conflicts += self._upsert(self.config.tables[table], chs, local)
        return result, entries

    def remerge(self, records: set[tuple[str, str]]) -> None:
        """Merge ``records`` (table, id) again from every change the log holds
        of them, inside the open transaction: after their changes were made
        again with other stamps (incarnation.py), the winners may differ."""
        by_table: dict[str, set[str]] = {}
        for table, rid in records:
            if table in self.config.tables:
                by_table.setdefault(table, set()).add(rid)
        for table, ids in by_table.items():
            spec = self.config.tables[table]
            rows = self.db.execute(
                "SELECT body FROM _changes WHERE json_extract(body, '$.t') = ? ORDER BY seq",
                (table,),
            )
            chs = [ch for (body,) in rows if (ch := json.loads(body))["i"] in ids]
            for rid in ids:
                self.db.execute(f"DELETE FROM {q(table)} WHERE id = ?", (rid,))
            if chs:
                self._upsert(spec, chs, local=True)

    def _upsert(self, spec: TableSpec, chs: list[dict], local: bool) -> int:
        sql = self._sql[spec.name]
        names = sql["names"]
        conflicts = 0
        if not local:
            ids = list({ch["i"] for ch in chs})
            before: dict[str, tuple] = {}
            for i in range(0, len(ids), IN_CHUNK):
                part = ids[i : i + IN_CHUNK]
                query = sql["versions"].replace("?", ",".join("?" * len(part)))
                for row in self.db.execute(query, part):
                    before[row[0]] = row
            for ch in chs:
                old = before.get(ch["i"])
                # A conflict: a column this change sets already holds a newer stamp.
                if old is not None:
                    d, stamp = ch["d"], ch["h"]
                    if any((v := old[k]) is not None and v > stamp for k, c in names if c in d):
                        conflicts += 1
        params = []
        for ch in chs:
            d, stamp = ch["d"], ch["h"]
            row = [ch["i"]]
            for _k, c in names:
                if c in d:
                    row += (d[c], stamp)
                else:
                    row += (None, None)
            row.append(_STATE[ch["k"]])
            params.append(row)
        self.db.executemany(sql["upsert"], params)
        if spec.slug:
            born = {} if local else {ch["i"]: ch["d"] for ch in chs if ch["k"] == "new"}
            claimed = set()
            for ch in chs:
                if CLAIM in ch["d"]:
                    slug_settlement.claim(self.db, spec, ch["d"][CLAIM], ch["i"], ch["h"])
                    claimed.add(ch["d"][CLAIM])
            master = self.config.role == "master"
            ids = list({ch["i"]: None for ch in chs})
            for slug, rid in slug_settlement.settle(self.db, spec, ids, born, claimed, master):
                self.unclaimed.append((spec.name, slug, rid))
        return conflicts


# What each kind of change makes a record it inserts: 0 visible, 1 deleted,
# 2 not born yet (an edit that arrived before its record's "new" change, as
# forged creations stay for good). Only visible rows are read, hashed or slugged.
_STATE = {"new": 0, "put": 2, "del": 1}


def _statements(spec: TableSpec) -> dict:
    t = q(spec.name)
    names = (*spec.columns, CODE_COLUMN)
    insert_cols = ["id"]
    sets = []
    for c in names:
        v = q("_v_" + c)
        insert_cols += [q(c), v]
        newer = f"excluded.{v} > coalesce({t}.{v}, '')"
        sets.append(f"{q(c)} = CASE WHEN {newer} THEN excluded.{q(c)} ELSE {t}.{q(c)} END")
        sets.append(f"{v} = CASE WHEN {newer} THEN excluded.{v} ELSE {t}.{v} END")
    insert_cols.append("_deleted")
    # A delete wins whenever it comes; a record is born by its creator's "new"
    # change, whenever that comes; an edit alone leaves it as it was.
    sets.append(
        f"_deleted = CASE WHEN {t}._deleted = 1 OR excluded._deleted = 1 THEN 1"
        f" WHEN excluded._deleted = 0 THEN 0 ELSE {t}._deleted END"
    )
    marks = ", ".join("?" * len(insert_cols))
    upsert = (
        f"INSERT INTO {t}({', '.join(insert_cols)}) VALUES ({marks})"
        f" ON CONFLICT(id) DO UPDATE SET {', '.join(sets)}"
    )
    version_cols = ", ".join(q("_v_" + c) for c in names)
    return {
        "upsert": upsert,
        "versions": f"SELECT id, {version_cols} FROM {t} WHERE id IN (?)",
        # (position in a versions row, column name)
        "names": tuple((k + 1, c) for k, c in enumerate(names)),
    }
