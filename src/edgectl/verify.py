"""Proving the fleet converged, and where it did not, which hosts, tables and
records differ: the algorithm of `edgectl verify`, apart from how it asks.

Each host answers questions about its own data (``edgesync digest --json``, and
``edgesync digest --table T --prefix P --json``); the controller compares the
answers and asks again only where they differ. Records fall into buckets by the
hash of their ID, so one differing record in a table of a million rows is
found in one question per hex digit of prefix (five or so), and no row leaves
a host: only digests, row counts, and at the bottom the hashes of a few dozen
rows.

``ask(table, prefix)`` puts one question to every host and returns each host's
answer by name (``table`` None for the totals). A host missing from the answer
did not answer and is reported unreachable, unless the question was about a
table it does not configure (it refuses those; the totals already showed it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable

from edgesync.ids import is_valid_id
from edgesync.reads import RECORDS_AT_MOST, split

Ask = Callable[[str | None, str], dict[str, dict]]


def narrow(ask: Ask, hosts: Iterable[str], max_records: int = 50) -> dict:
    """Compare the hosts' digests and narrow every difference down to records.

    The report (JSON-able): ``agree`` (every host answered, with one digest),
    ``digests`` (host -> total), ``groups`` (hosts sharing a total, biggest
    group first), ``unreachable``, ``tables`` (the tables whose digests differ:
    each host's digest and rows there, None where the table is not configured),
    ``records`` (at most ``max_records`` differing records: table, ID, and each
    host's row hash or None where the record is missing), ``more_records``
    (differing records beyond those), ``complete`` (False when the narrowing
    stopped at ``max_records`` and ``more_records`` is only a lower bound),
    ``queries`` (calls of ``ask``) and ``levels`` (the longest prefix asked).
    """
    hosts = list(hosts)
    walk = _Walk(ask, max_records)
    totals = walk.ask(None, "", hosts)
    digests = {h: totals[h]["digest"] for h in hosts if h in totals}
    groups = _groups(digests)
    report = {
        "agree": not walk.unreachable and not walk.malformed and len(groups) == 1,
        "digests": digests,
        "groups": groups,
        "tables": {},
    }
    if len(groups) > 1:
        for table in _differing_tables(totals):
            report["tables"][table] = _table_view(totals, table)
            _narrow_table(walk, table, totals)
    walk.records.sort(key=lambda r: (r["table"], r["id"]))
    report.update(
        unreachable=sorted(walk.unreachable),
        malformed=walk.malformed,
        records=walk.records,
        more_records=walk.more,
        complete=walk.complete,
        queries=walk.queries,
        levels=walk.levels,
    )
    return report


class _Walk:
    """One narrowing's questions and findings: which hosts stopped answering,
    the differing records found, and what the cap on them left unexplored."""

    def __init__(self, ask: Ask, max_records: int, max_queries: int = 400):
        self._ask = ask
        self.max_records = max_records
        self.max_queries = max_queries
        self.malformed: dict[str, str] = {}
        self.queries = 0
        self.levels = 0
        self.unreachable: set[str] = set()
        self.records: list[dict] = []
        self.more = 0
        self.complete = True

    def ask(self, table: str | None, prefix: str, hosts: list[str]) -> dict[str, dict]:
        """The answers of those of ``hosts`` still answering; the others are
        unreachable from now on."""
        hosts = [h for h in hosts if h not in self.unreachable and h not in self.malformed]
        check_question(table, prefix)
        answers = self._ask(table, prefix)
        self.queries += 1
        self.levels = max(self.levels, len(prefix))
        self.unreachable.update(h for h in hosts if h not in answers)
        good = {}
        for h in hosts:
            if h in answers:
                problem = answer_problem(table, prefix, answers[h])
                if problem:
                    self.malformed[h] = f"{problem} (asked {table or 'totals'} {prefix!r})"
                else:
                    good[h] = answers[h]
        return good

    def spent(self) -> bool:
        """The questions allowed are used up: what is left stays unexplored."""
        return self.queries >= self.max_queries

    def full(self) -> bool:
        return len(self.records) >= self.max_records

    def found(self, records: list[dict]) -> None:
        room = max(self.max_records - len(self.records), 0)
        self.records += records[:room]
        self.more += len(records[room:])

    def skip(self, rows: dict[str, int]) -> None:
        """A differing bucket left unexplored once the cap was reached: it holds
        at least one differing record, and at least as many as its row counts
        differ by."""
        self.complete = False
        self.more += max(1, max(rows.values()) - min(rows.values()))


def _groups(digests: dict[str, str]) -> list[list[str]]:
    """The hosts sharing each total, biggest group first (then by name)."""
    by_digest: dict[str, list[str]] = {}
    for host, d in digests.items():
        by_digest.setdefault(d, []).append(host)
    return sorted((sorted(g) for g in by_digest.values()), key=lambda g: (-len(g), g))


def _differing_tables(totals: dict[str, dict]) -> list[str]:
    """The tables whose digests are not the same on every host that answered
    (a table one host does not configure differs too)."""
    names = sorted({t for answer in totals.values() for t in answer["tables"]})
    return [t for t in names if len(set(_table_view(totals, t)["digests"].values())) > 1]


def _table_view(totals: dict[str, dict], table: str) -> dict:
    """Each host's digest and rows of ``table`` (None where it is not configured)."""
    parts = {h: answer["tables"].get(table) or {} for h, answer in totals.items()}
    return {
        "digests": {h: p.get("digest") for h, p in parts.items()},
        "rows": {h: p.get("rows") for h, p in parts.items()},
    }


def _narrow_table(walk: _Walk, table: str, totals: dict[str, dict]) -> None:
    """Descend the buckets of ``table`` where the hosts' digests differ, depth
    first so that the first differing records come after a few questions.

    Only the answers of hosts configuring the table count (the others refuse
    the question; the table view already shows they lack it). Once the cap on
    records is reached the remaining buckets are counted, not asked about.
    """
    hosts = [h for h, answer in totals.items() if table in answer["tables"]]
    if len({totals[h]["tables"][table]["digest"] for h in hosts}) < 2:
        return  # the hosts holding the table agree on it
    stack = [("", {h: totals[h]["tables"][table]["rows"] for h in hosts})]
    while stack:
        prefix, rows = stack.pop()
        if walk.full() or walk.spent():
            walk.skip(rows)
            continue
        answers = walk.ask(table, prefix, hosts)
        if len(answers) < 2:
            continue
        if all("records" in a for a in answers.values()):
            walk.found(_differing_records(table, {h: a["records"] for h, a in answers.items()}))
            continue
        # Depth first: the smallest child on top of the stack, asked next.
        stack += reversed(_differing_children(prefix, answers))


def _differing_children(prefix: str, answers: dict[str, dict]) -> list[tuple[str, dict]]:
    """The child buckets of ``prefix`` whose digests differ among the hosts (a
    bucket a host lacks is empty there), with each host's rows in it.

    A host that answered with its records (it has few rows there) is split the
    way it would have split them itself, so it compares with hosts that
    answered with buckets.
    """
    children = {
        h: a["buckets"] if "buckets" in a else split(prefix, a["records"].items())
        for h, a in answers.items()
    }
    out = []
    for child in sorted({c for buckets in children.values() for c in buckets}):
        here = {h: buckets.get(child, {}) for h, buckets in children.items()}
        if len({b.get("digest") for b in here.values()}) > 1:
            out.append((child, {h: b.get("rows", 0) for h, b in here.items()}))
    return out


def _differing_records(table: str, records: dict[str, dict[str, str]]) -> list[dict]:
    """The records (in ID order) missing on some hosts or hashing differently."""
    out = []
    for rid in sorted({rid for recs in records.values() for rid in recs}):
        hashes = {h: recs.get(rid) for h, recs in records.items()}
        if len(set(hashes.values())) > 1:
            out.append({"table": table, "id": rid, "hosts": hashes})
    return out


# What an answer may hold. A host's answers are not trusted: an edge stands
# where anyone may hold its key, and whatever it says becomes the controller's
# next question to every host. So a table name, a bucket or a record that is
# not of the agent's own shape makes the whole answer malformed, and that host
# is left out of the rest of the comparison (and named).
_TABLE = re.compile(r"[a-z][a-z0-9_]{0,62}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_MOST_TABLES = 1000


def check_question(table: str | None, prefix: str) -> None:
    """A question edgectl may put to the hosts: a table name and a hex prefix."""
    if table is not None and not _TABLE.fullmatch(table):
        raise ValueError(f"not a table name: {table!r}")
    if not re.fullmatch(r"[0-9a-f]{0,64}", prefix):
        raise ValueError(f"not a bucket prefix: {prefix!r}")


def answer_problem(table: str | None, prefix: str, answer: object) -> str | None:
    """What is wrong with a host's answer to (table, prefix), or None."""
    if not isinstance(answer, dict):
        return "not an object"
    if table is None:
        tables = answer.get("tables")
        if not _digest(answer.get("digest")) or not isinstance(tables, dict):
            return "totals without a digest and tables"
        if len(tables) > _MOST_TABLES:
            return f"{len(tables)} tables"
        for name, part in tables.items():
            if not _TABLE.fullmatch(str(name)) or not _part(part):
                return f"table {str(name)[:40]!r} malformed"
        return None
    if (
        answer.get("table") != table
        or answer.get("prefix") != prefix
        or not _count(answer.get("rows"))
    ):
        return f"an answer about another question than {table} {prefix!r}"
    if "buckets" in answer:
        buckets = answer["buckets"]
        if len(prefix) >= 64 or not isinstance(buckets, dict) or len(buckets) > 16:
            return "buckets below the last level"
        for key, part in buckets.items():
            if not (isinstance(key, str) and len(key) == len(prefix) + 1
                    and key.startswith(prefix) and key[-1] in "0123456789abcdef"
                    and _part(part)):  # fmt: skip
                return f"bucket {str(key)[:70]!r} malformed"
        return None
    records = answer.get("records")
    if not isinstance(records, dict) or (len(records) > RECORDS_AT_MOST and len(prefix) < 64):
        return "neither buckets nor at most 32 records"
    for rid, row_hash in records.items():
        if not is_valid_id(rid) or not _digest(row_hash):
            return f"record {str(rid)[:70]!r} malformed"
    return None


def _digest(value: object) -> bool:
    return isinstance(value, str) and bool(_DIGEST.fullmatch(value))


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _part(part: object) -> bool:
    return isinstance(part, dict) and _digest(part.get("digest")) and _count(part.get("rows"))


def summary_lines(report: dict) -> list[str]:
    """The report in a few lines for a person: who differs from whom, in which
    tables, and how each differing record differs."""
    n = len(report["digests"])
    if report["agree"]:
        digest = next(iter(report["digests"].values()))
        return [f"all {n} hosts agree: digest {digest[:16]}"]
    lines = []
    if report["unreachable"]:
        lines.append(f"unreachable, not compared: {_names(report['unreachable'])}")
    for host, why in sorted(report.get("malformed", {}).items()):
        lines.append(f"{host} answered out of shape, left out: {why}")
    groups = report["groups"]
    if len(groups) == 1:
        lines.append(f"the {n} hosts that answered agree")
    for group in groups[1:]:
        lines.append(_group_line(report, group))
    lines += [_record_line(r) for r in report["records"]]
    if report["more_records"]:
        bound = "" if report["complete"] else "at least "
        lines.append(f"and {bound}{report['more_records']} more differing records")
    lines.append(f"{report['queries']} queries, down to prefix length {report['levels']}")
    return lines


def _group_line(report: dict, group: list[str]) -> str:
    """How ``group`` differs from the biggest group, table by table."""
    main = report["groups"][0]
    if len(report["groups"]) > 2:
        whom = f"the biggest group ({_names(main)})"
    else:
        whom = "the other" if len(main) == 1 else f"the {len(main)} others"
    ours, theirs = group[0], main[0]
    parts = []
    for table, view in report["tables"].items():
        if view["digests"].get(ours) == view["digests"].get(theirs):
            continue
        if view["digests"].get(ours) is None or view["digests"].get(theirs) is None:
            parts.append(f"table {table}: configured on one side only")
            continue
        found = [
            r
            for r in report["records"]
            if r["table"] == table and r["hosts"].get(ours) != r["hosts"].get(theirs)
        ]
        bound = "at least " if report["more_records"] else ""
        rows = f"rows {view['rows'].get(ours)} vs {view['rows'].get(theirs)}"
        parts.append(f"table {table}: {bound}{_plural(len(found), 'record')} ({rows})")
    where = " in " + "; ".join(parts) if parts else ""
    verb = "differs" if len(group) == 1 else "differ"
    return f"{_names(group)} {verb} from {whom}{where}"


def _record_line(record: dict) -> str:
    """One differing record: where it is missing (or the few hosts it is only
    on), and which hosts hold other values than most."""
    hashes = record["hosts"]
    present = sorted(h for h, v in hashes.items() if v is not None)
    missing = sorted(h for h, v in hashes.items() if v is None)
    parts = []
    if missing:
        parts.append(
            f"only on {_names(present)}"
            if len(present) < len(missing)
            else f"missing on {_names(missing)}"
        )
    values = Counter(hashes[h] for h in present)
    if len(values) > 1:
        (common, top), (_, second) = values.most_common(2)
        if top > second:
            parts.append(f"differs on {_names([h for h in present if hashes[h] != common])}")
        else:
            sides = {v: [h for h in present if hashes[h] == v] for v in values}
            parts.append("differs between " + " | ".join(_names(s) for s in sides.values()))
    return f"{record['table']} {record['id']}: {'; '.join(parts)}"


def _names(hosts: list[str], shown: int = 5) -> str:
    """Host names, the first few of a long list and how many more."""
    if len(hosts) <= shown:
        return ", ".join(hosts)
    return ", ".join(hosts[:shown]) + f" and {len(hosts) - shown} more"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
