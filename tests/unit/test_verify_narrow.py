"""The controller's narrowing (edgectl.verify) against hosts held in memory.

Each fake host is a dict of table -> {id: row_hash} and answers the way an
agent does, through the agent's own bucket code (edgesync.reads), so only the
transport is left out: that is the CLI's and the module's tests' part.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from edgectl.verify import check_question, narrow, summary_lines
from edgesync.reads import RECORDS_AT_MOST, bucket_answer, row_hash

HOSTS = ["EDGE01", "EDGE02", "EDGE03", "EDGE04", "EDGE05", "NODE01", "MASTER01"]


def _rid(i: int) -> str:
    """A valid, distinct ID per ``i`` (NNLL: two digits, two letters)."""
    letters = chr(65 + (i // 100) % 26) + chr(65 + (i // 2600) % 26)
    return f"EDGE01-LON-{i % 100:02d}{letters}-K3J9X0QZ-27112026200512"


def _rows(n: int, title: str = "t") -> dict[str, str]:
    """``n`` records as a host holds them: ID -> the hash of its row."""
    rows = ([_rid(i), "news", f"{title}{i}", None, f"news-{i}"] for i in range(n))
    return {row[0]: row_hash(row) for row in rows}


def _totals(tables: dict[str, dict[str, str]]) -> dict:
    """A fake host's ``digest --json``: any digest equal exactly on equal content does."""
    parts = {
        t: {"digest": hashlib.sha256(json.dumps(sorted(recs.items())).encode()).hexdigest(),
            "rows": len(recs)}
        for t, recs in tables.items()
    }  # fmt: skip
    total = hashlib.sha256(json.dumps(sorted(parts.items())).encode()).hexdigest()
    return {"digest": total, "tables": parts}


class Fleet:
    """Hosts in memory; a host set to None does not answer, a host named in
    ``totals_only`` answers the totals and nothing after, and, as an agent's
    exit 2 would, no host answers about a table it does not hold."""

    def __init__(self, hosts: dict[str, dict | None], totals_only=()):
        self.hosts = hosts
        self.totals_only = set(totals_only)
        self.asked: list[tuple[str | None, str]] = []

    def ask(self, table: str | None, prefix: str) -> dict[str, dict]:
        self.asked.append((table, prefix))
        out = {}
        for name, tables in self.hosts.items():
            if tables is None or (table is not None and name in self.totals_only):
                continue
            if table is not None and table not in tables:
                continue
            if table is None:
                out[name] = _totals(tables)
            else:
                out[name] = bucket_answer(table, prefix, tables[table].items())
        return out


def _fleet(rows: dict[str, str], **changed) -> Fleet:
    """Every host of HOSTS holding ``rows`` in table pages, but those given."""
    return Fleet({h: changed.get(h, {"pages": dict(rows)}) for h in HOSTS})


def test_equal_hosts_agree_after_one_question():
    fleet = _fleet(_rows(5000))
    report = narrow(fleet.ask, HOSTS)
    assert report["agree"] and report["queries"] == 1 and fleet.asked == [(None, "")]
    assert report["groups"] == [sorted(HOSTS)] and report["unreachable"] == []
    assert report["records"] == [] and report["tables"] == {} and report["levels"] == 0
    digest = report["digests"]["EDGE01"]
    assert summary_lines(report) == [f"all 7 hosts agree: digest {digest[:16]}"]
    json.dumps(report)  # JSON-able as it is


def test_one_changed_record_among_5000_is_found_in_a_few_questions():
    rows = _rows(5000)
    changed = dict(rows)
    victim = _rid(1234)
    changed[victim] = row_hash([victim, "news", "edited", None, "news-1234"])
    fleet = _fleet(rows, EDGE03={"pages": changed})
    report = narrow(fleet.ask, HOSTS)
    assert not report["agree"]
    assert report["groups"] == [sorted(set(HOSTS) - {"EDGE03"}), ["EDGE03"]]
    assert report["records"] == [
        {"table": "pages", "id": victim,
         "hosts": {h: changed[victim] if h == "EDGE03" else rows[victim] for h in HOSTS}}
    ]  # fmt: skip
    assert report["more_records"] == 0 and report["complete"]
    assert report["tables"]["pages"]["rows"] == dict.fromkeys(HOSTS, 5000)
    # The totals, the table, then one bucket per level: 5000 rows in 16 then 256
    # buckets reach RECORDS_AT_MOST at the second hex digit.
    assert 5000 / 256 <= RECORDS_AT_MOST < 5000 / 16
    assert report["queries"] == 4 and report["levels"] == 2
    assert all(table in (None, "pages") for table, _ in fleet.asked)
    lines = summary_lines(report)
    assert lines[0] == (
        "EDGE03 differs from the 6 others in table pages: 1 record (rows 5000 vs 5000)"
    )
    assert lines[1] == f"pages {victim}: differs on EDGE03"


def test_a_missing_record_and_one_only_on_one_host():
    rows = _rows(300)
    lacking = dict(rows)
    gone = lacking.pop(_rid(42))
    extra = {**rows, _rid(9999): row_hash([_rid(9999), "news", "new", None, "news-new"])}
    fleet = _fleet(rows, EDGE05={"pages": lacking}, EDGE02={"pages": extra})
    report = narrow(fleet.ask, HOSTS)
    assert [(r["id"], r["hosts"]["EDGE05"], r["hosts"]["EDGE01"]) for r in report["records"]] == [
        (_rid(42), None, gone),
        (_rid(9999), None, None),
    ]
    assert report["records"][1]["hosts"]["EDGE02"] == extra[_rid(9999)]
    assert report["tables"]["pages"]["rows"]["EDGE05"] == 299
    lines = summary_lines(report)
    assert f"pages {_rid(42)}: missing on EDGE05" in lines
    assert f"pages {_rid(9999)}: only on EDGE02" in lines
    assert any(line.startswith("EDGE02 differs from the biggest group (") for line in lines)


def test_an_unreachable_host_is_named_and_agreement_is_not_claimed():
    fleet = _fleet(_rows(100), NODE01=None)
    report = narrow(fleet.ask, HOSTS)
    assert not report["agree"] and report["unreachable"] == ["NODE01"]
    assert report["groups"] == [sorted(set(HOSTS) - {"NODE01"})] and report["queries"] == 1
    assert "NODE01" not in report["digests"]
    assert summary_lines(report)[:2] == [
        "unreachable, not compared: NODE01",
        "the 6 hosts that answered agree",
    ]


def test_a_host_that_stops_answering_midway_is_unreachable_and_the_rest_still_narrowed():
    rows = _rows(100)
    changed = {**rows, _rid(7): "0" * 64}
    fleet = Fleet({**{h: {"pages": dict(rows)} for h in HOSTS}, "EDGE04": {"pages": changed}},
                  totals_only=["EDGE01"])  # fmt: skip
    report = narrow(fleet.ask, HOSTS)
    assert report["unreachable"] == ["EDGE01"]
    assert [(r["id"], r["hosts"]["EDGE04"]) for r in report["records"]] == [(_rid(7), "0" * 64)]
    assert "EDGE01" not in report["records"][0]["hosts"]


def test_more_differing_records_than_the_cap_are_counted_not_listed():
    rows = _rows(2000)
    changed = {rid: h if i % 20 else "f" * 64 for i, (rid, h) in enumerate(rows.items())}  # 100
    hosts = ["EDGE01", "EDGE02", "MASTER01"]

    def fleet():
        return Fleet({"EDGE01": {"pages": rows}, "EDGE02": {"pages": rows},
                      "MASTER01": {"pages": changed}})  # fmt: skip

    full = narrow(fleet().ask, hosts, max_records=1000)
    assert len(full["records"]) == 100 and full["more_records"] == 0 and full["complete"]
    assert {r["id"] for r in full["records"]} == {i for i in rows if changed[i] != rows[i]}
    capped = narrow(fleet().ask, hosts, max_records=50)
    assert capped["records"] == sorted(capped["records"], key=lambda r: r["id"])
    assert len(capped["records"]) == 50
    assert all(r in full["records"] for r in capped["records"])
    # Stopping at the cap leaves buckets unasked: the rest is a lower bound.
    assert not capped["complete"] and 1 <= capped["more_records"] <= 50
    assert capped["queries"] < full["queries"]
    more = capped["more_records"]
    assert summary_lines(capped)[-2] == f"and at least {more} more differing records"


def test_a_host_with_few_rows_answering_records_compares_with_hosts_answering_buckets():
    rows = _rows(500)
    few = dict(list(rows.items())[:10])
    report = narrow(_fleet(rows, EDGE01={"pages": few}).ask, HOSTS, max_records=1000)
    assert len(report["records"]) == 490 and report["complete"]
    assert {r["id"] for r in report["records"]} == set(rows) - set(few)
    assert all(r["hosts"]["EDGE01"] is None for r in report["records"])


def test_a_table_one_host_does_not_configure_is_shown_not_asked_there():
    rows = _rows(50)
    both = {"pages": rows, "notes": _rows(40, "n")}
    fleet = Fleet({"EDGE01": dict(both), "EDGE02": dict(both), "EDGE03": {"pages": rows}})
    report = narrow(fleet.ask, ["EDGE01", "EDGE02", "EDGE03"])
    notes = _totals(both)["tables"]["notes"]["digest"]
    assert report["tables"] == {
        "notes": {
            "digests": {"EDGE01": notes, "EDGE02": notes, "EDGE03": None},
            "rows": {"EDGE01": 40, "EDGE02": 40, "EDGE03": None},
        }
    }
    assert report["records"] == [] and report["unreachable"] == [] and report["queries"] == 1
    assert summary_lines(report)[0] == (
        "EDGE03 differs from the 2 others in table notes: configured on one side only"
    )


class Hostile(Fleet):
    """The fleet, with EDGE05 answering table questions as ``lie`` says."""

    def __init__(self, rows, lie):
        super().__init__({h: {"pages": dict(rows)} for h in HOSTS})
        self.hosts["EDGE05"] = {"pages": dict(_rows(len(rows), title="other"))}
        self.lie = lie

    def ask(self, table, prefix):
        out = super().ask(table, prefix)
        if table is not None:
            out["EDGE05"] = self.lie(table, prefix)
        return out


def _bucket(key):
    return {key: {"digest": "f" * 64, "rows": 1}}


@pytest.mark.parametrize(
    "lie",
    [
        # an answer whose bucket would become the next question's arguments
        lambda t, p: {"table": t, "prefix": p, "rows": 9,
                      "buckets": _bucket(p + "0 user= agent=/bin/sh x={{ lookup('pipe','id') }}")},
        # the asked prefix echoed back as its own child: asked again forever
        lambda t, p: {"table": t, "prefix": p, "rows": 9, "buckets": _bucket(p or "0")},
        # no digest, odd shapes
        lambda t, p: {"table": t, "prefix": p, "rows": 9, "buckets": {p + "0": "x"}},
        lambda t, p: {"table": t, "prefix": p, "rows": "many", "records": {}},
        lambda t, p: {"table": "other", "prefix": p, "rows": 1, "records": {}},
        lambda t, p: ["not", "an", "object"],
        lambda t, p: {"table": t, "prefix": p, "rows": 1, "records": {"../../etc": "f" * 64}},
    ],
)  # fmt: skip
def test_a_hostile_answer_is_named_and_never_becomes_a_question(lie):
    fleet = Hostile(_rows(300), lie)
    report = narrow(fleet.ask, HOSTS)
    assert not report["agree"]
    assert list(report["malformed"]) == ["EDGE05"], report["malformed"]
    for table, prefix in fleet.asked:
        check_question(table, prefix)  # only table names and hex prefixes were asked
    assert report["queries"] < 20
    assert any(line.startswith("EDGE05 answered out of shape") for line in summary_lines(report))


def test_a_host_answering_ever_deeper_buckets_is_cut_off_by_the_question_budget():
    """Well-formed children that always differ: the walk stops at its budget."""
    fleet = Hostile(_rows(300), lambda t, p: {
        "table": t, "prefix": p, "rows": 9,
        "buckets": {p + c: {"digest": f"{c * 63}{len(p) % 10}", "rows": 1}
                    for c in "0123456789abcdef"},
    })  # fmt: skip
    report = narrow(fleet.ask, HOSTS)
    assert report["queries"] <= 400 and report["complete"] is False
