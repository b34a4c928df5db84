"""The agent's side of `edgectl verify`: digests per table and per bucket of
records, from the CLI against real SQLite and Redis."""

import hashlib
import json

import pytest

from edgesync.localfleet import PAGES
from edgesync.reads import RECORDS_AT_MOST

NOTES = {"columns": ["text"]}


def _pages(node, n: int) -> list[dict]:
    return [node.store.put("pages", {"section": "news", "title": f"story {i}"}) for i in range(n)]


def _key(rid: str) -> str:
    return hashlib.sha256(rid.encode()).hexdigest()


def test_the_json_total_is_the_plain_digest_and_each_table_has_its_own(make_node):
    one = make_node("EDGE01", tables={"pages": PAGES, "notes": NOTES})
    two = make_node("EDGE02", tables={"pages": PAGES, "notes": NOTES})
    assert one.cli_json("digest", "--json") == two.cli_json("digest", "--json")  # both empty
    _pages(one, 3)
    one.store.put("notes", {"text": "hello"})
    out = one.cli_json("digest", "--json")
    assert out["digest"] == one.cli("digest").stdout.strip() == one.store.digest()
    assert sorted(out["tables"]) == ["notes", "pages"]
    assert out["tables"]["pages"]["rows"] == 3 and out["tables"]["notes"]["rows"] == 1
    # A table's digest moves with its own content only.
    one.store.put("notes", {"text": "again"})
    after = one.cli_json("digest", "--json")
    assert after["tables"]["pages"] == out["tables"]["pages"]
    assert after["tables"]["notes"] != out["tables"]["notes"] and after["digest"] != out["digest"]
    assert two.cli_json("digest", "--json")["tables"]["notes"] == {
        "digest": hashlib.sha256(b'["table", "notes", ["text"]]').hexdigest(),
        "rows": 0,
    }


def test_buckets_split_a_table_by_the_hash_of_its_ids_down_to_records(make_node):
    node = make_node("EDGE01")
    pages = _pages(node, 3 * RECORDS_AT_MOST)
    node.store.delete("pages", pages[0]["id"])  # a deleted record is not visible
    top = node.cli_json("digest", "--table", "pages", "--json")
    assert top["table"] == "pages" and top["prefix"] == "" and top["rows"] == len(pages) - 1
    assert "records" not in top
    assert sum(b["rows"] for b in top["buckets"].values()) == top["rows"]
    assert all(b["rows"] > 0 for b in top["buckets"].values())
    visible = {p["id"] for p in pages[1:]}
    for prefix, bucket in top["buckets"].items():
        assert len(prefix) == 1 and bucket["rows"] == sum(_key(i)[0] == prefix for i in visible)
    prefix = max(top["buckets"], key=lambda p: top["buckets"][p]["rows"])
    below = node.cli_json("digest", "--table", "pages", "--prefix", prefix, "--json")
    assert below["rows"] == top["buckets"][prefix]["rows"] <= RECORDS_AT_MOST
    assert "buckets" not in below
    assert set(below["records"]) == {i for i in visible if _key(i).startswith(prefix)}
    # A row's hash is the hash of its canonical form, the one digest() hashes.
    page = next(p for p in pages if p["id"] in below["records"])
    canonical = [page["id"], page["section"], page["title"], page["body"], page["slug"]]
    line = json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode()
    assert below["records"][page["id"]] == hashlib.sha256(line).hexdigest()
    empty = node.cli_json("digest", "--table", "pages", "--prefix", "f" * 64, "--json")
    assert empty == {"table": "pages", "prefix": "f" * 64, "rows": 0, "records": {}}


def test_a_changed_row_shows_in_its_bucket_and_its_record_only(make_node):
    node = make_node("EDGE01")
    pages = _pages(node, 2 * RECORDS_AT_MOST)
    target = pages[5]["id"]
    prefix = _key(target)[0]

    def look():
        top = node.cli_json("digest", "--table", "pages", "--json")
        return top, node.cli_json("digest", "--table", "pages", "--prefix", prefix, "--json")

    top, below = look()
    node.store.put("pages", {"id": target, "body": "edited"})
    top2, below2 = look()
    assert [p for p in top["buckets"] if top["buckets"][p] != top2["buckets"][p]] == [prefix]
    assert [i for i in below["records"] if below["records"][i] != below2["records"][i]] == [target]


def _snapshot(node, redis_server):
    return (
        node.store.rows("pages"),
        node.store.max_seq(),
        redis_server.client().xlen(f"edgesync:{node.name}:changes"),
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--table", "nope", "--json"), "unknown table 'nope'"),
        (("--table", "pages", "--prefix", "AB", "--json"), "invalid prefix 'AB'"),
        (("--table", "pages", "--prefix", "0g", "--json"), "invalid prefix '0g'"),
        (("--table", "pages", "--prefix", "0" * 65, "--json"), "at most 64 lowercase hex"),
        (("--prefix", "ab", "--json"), "--prefix needs --table"),
        (("--prefix", "ab"), "--prefix needs --table"),
        (("--table", "pages"), "--table answers in JSON only"),
    ],
)
def test_bad_questions_are_one_line_exit_2_and_nothing_written(
    make_node, redis_server, args, message
):
    node = make_node("EDGE01")
    node.cli_json("put", "pages", "--data", '{"title": "before"}')
    before = _snapshot(node, redis_server)
    res = node.cli("digest", *args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and res.stderr.startswith("edgesync: ")
    assert len(res.stderr.strip().splitlines()) == 1
    assert res.stdout == ""
    assert _snapshot(node, redis_server) == before
