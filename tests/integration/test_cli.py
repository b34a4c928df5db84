"""A user drives one node from the command line, against real SQLite and Redis."""

import json
import os
import subprocess
import sys

import pytest

from edgesync import migrations

KNOWS = f"versions {migrations.OLDEST} to {migrations.SCHEMA}"


def test_a_user_makes_finds_edits_and_deletes_a_page(make_node):
    node = make_node("EDGE01")
    assert node.cli("init").returncode == 0
    assert node.cli("init").returncode == 0  # harmless to repeat

    page = node.cli_json(
        "put", "pages", "--data", '{"section": "Admin", "title": "Ünïcödé Páge", "body": "hi"}'
    )
    code = page["id"].split("-")[2].lower()
    assert page["slug"] == f"admin-unicode-page-{code}"
    assert node.cli_json("get", "pages", page["id"]) == page
    assert node.cli_json("get", "pages", "--slug", page["slug"]) == page

    edited = node.cli_json(
        "put", "pages", "--data", json.dumps({"id": page["id"], "title": "Example Page"})
    )
    assert edited["body"] == "hi"
    assert edited["slug"] == f"admin-example-page-{code}"
    old = node.cli("get", "pages", "--slug", page["slug"])
    assert old.returncode == 1 and "not found" in old.stderr

    assert node.cli("delete", "pages", page["id"]).returncode == 0
    gone = node.cli("get", "pages", page["id"])
    assert gone.returncode == 1 and "not found" in gone.stderr
    assert node.cli("get", "pages", "--slug", edited["slug"]).returncode == 1
    again = node.cli("put", "pages", "--data", json.dumps({"id": page["id"], "title": "x"}))
    assert again.returncode == 1 and "not found" in again.stderr


def test_status_reports_rows_outbox_and_redis(make_node):
    farm_peer = {"url": "local:edge02.toml", "role": "edge", "farm": "lon-a", "push": True}
    node = make_node("EDGE01", farm="lon-a", peers={"EDGE02": farm_peer})
    for i in range(3):
        node.cli_json("put", "pages", "--data", json.dumps({"title": f"t{i}"}))
    status = node.cli_json("status", "--json")
    assert status["node"] == "EDGE01" and status["role"] == "edge" and status["farm"] == "lon-a"
    assert status["rows"] == {"pages": 3}
    assert status["push_targets"] == ["EDGE02"]
    assert status["outbox_pending"] == 3  # the push target has acknowledged nothing
    assert status["outbox_stream"] >= 1
    assert status["redis"] == "ok"
    human = node.cli("status")
    assert "EDGE01" in human.stdout and "pages=3" in human.stdout


def _loaded(node, *args: str) -> set[str]:
    """The modules a command loads, run whole (python -X importtime)."""
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "edgesync", "--config", str(node.config_path),
         *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = [line.split("|") for line in res.stderr.splitlines() if line.startswith("import time:")]
    return {row[2].strip() for row in rows[1:]}  # the first row names the columns


def _of(modules: set[str], *packages: str) -> set[str]:
    return {m for m in modules if m.split(".")[0] in packages}


def test_reads_start_without_loading_what_they_do_not_use(make_node):
    """Command start is most of what a read costs: a read loads neither the
    signing library nor the Redis client (each costs more than the read)."""
    farm_peer = {"url": "local:edge02.toml", "role": "edge", "farm": "lon-a", "push": True}
    node = make_node("EDGE01", farm="lon-a", peers={"EDGE02": farm_peer})
    page = node.cli_json("put", "pages", "--data", '{"title": "t"}')
    assert "cryptography.hazmat.primitives.asymmetric.ed25519" in _loaded(node, "pubkey")
    assert _of(_loaded(node, "get", "pages", page["id"]), "cryptography", "redis") == set()
    # status asks Redis (its state, the stream's length), so it loads the client.
    assert "redis.client" in _loaded(node, "status")


def test_status_fails_in_one_line_when_the_host_cannot_sign(make_node, tmp_path):
    """status is the health check a rollout runs: it loads and tries the
    signing library, which reads and writes that need no key load only later."""
    node = make_node("EDGE01")
    assert node.cli_json("status", "--json")["signing"].startswith("cryptography ")
    broken = tmp_path / "broken" / "cryptography"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ImportError("its compiled part would not load")')
    env = {**os.environ, "EDGESYNC_CONFIG": "", "PYTHONPATH": str(broken.parent)}
    res = subprocess.run(
        [sys.executable, "-m", "edgesync", "--config", str(node.config_path), "status"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "edgesync: cannot sign: the cryptography library does not load "
        "(its compiled part would not load)"
    ]


def test_data_can_come_from_stdin_for_large_values(make_node):
    node = make_node("EDGE01")
    body = "x" * 500_000
    page = node.cli_json("put", "pages", "--data", "-", input=json.dumps({"body": body}))
    assert node.cli_json("get", "pages", page["id"])["body"] == body


def test_updating_an_unknown_id_is_not_found_and_writes_nothing(make_node):
    node = make_node("EDGE01")
    res = node.cli(
        "put", "pages", "--data", '{"id": "EDGE01-LON-43AX-K3J9X0QZ-27112026200512", "title": "x"}'
    )
    assert res.returncode == 1 and "not found" in res.stderr
    assert node.store.max_seq() == 0


def _snapshot(node, redis_server):
    return (
        node.store.rows("pages"),
        node.store.max_seq(),
        redis_server.client().xlen(f"edgesync:{node.name}:changes"),
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("put", "nope", "--data", "{}"), "unknown table 'nope'"),
        (("put", "pages", "--data", '{"colour": "red"}'), "unknown column pages.colour"),
        (("put", "pages", "--data", "{not json"), "invalid JSON"),
        (("put", "pages", "--data", '{"title": ["a"]}'), "not a scalar: pages.title"),
        (("put", "pages", "--data", '{"title": {"a": 1}}'), "not a scalar: pages.title"),
        (("put", "pages", "--data", '["a"]'), "must be a JSON object"),
        (("put", "pages", "--data", '{"body": "' + "y" * 2000 + '"}'), "value too large"),
        (("put", "pages", "--data", '{"id": "EDGE01-42", "title": "x"}'), "invalid id"),
        (("get", "pages", "not-an-id"), "invalid id"),
        (("delete", "pages", "not-an-id"), "invalid id"),
        (("put", "pages", "--data", '{"title": 1e999}'), "not a finite number"),
        (("put", "pages", "--data", '{"title": 99999999999999999999}'), "out of range"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(make_node, redis_server, args, message):
    node = make_node("EDGE01", max_value_bytes=1000)
    node.cli_json("put", "pages", "--data", '{"title": "before"}')
    before = _snapshot(node, redis_server)
    res = node.cli(*args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert res.stdout == ""
    assert _snapshot(node, redis_server) == before


def test_an_invalid_config_fails_at_start_naming_key_and_value(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[node]\nname = "edge one"\nlocation = "LON"\nrole = "edge"\n')
    res = subprocess.run(
        [sys.executable, "-m", "edgesync", "--config", str(path), "init"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "edgesync: invalid config: node.name = 'edge one': must match [A-Z0-9]{1,16}"
    )
    assert not (tmp_path / "edge one-data").exists()


def test_config_can_come_from_the_environment(make_node):
    import os

    node = make_node("EDGE01")
    res = subprocess.run(
        [sys.executable, "-m", "edgesync", "status", "--json"],
        capture_output=True, text=True,
        env={**os.environ, "EDGESYNC_CONFIG": str(node.config_path)},
    )  # fmt: skip
    assert res.returncode == 0 and json.loads(res.stdout)["node"] == "EDGE01"
    res = subprocess.run(
        [sys.executable, "-m", "edgesync", "status"],
        capture_output=True, text=True, env={**os.environ, "EDGESYNC_CONFIG": ""},
    )  # fmt: skip
    assert res.returncode == 2 and "no config" in res.stderr


def test_digest_is_one_hex_line_and_changes_with_content(make_node):
    node = make_node("EDGE01")
    empty = node.cli("digest").stdout
    assert empty == make_node("EDGE02").cli("digest").stdout  # same (no) records, same digest
    node.cli_json("put", "pages", "--data", '{"title": "x"}')
    full = node.cli("digest").stdout
    assert len(empty.strip()) == 64 and set(empty.strip()) <= set("0123456789abcdef")
    assert empty != full and full.count("\n") == 1


def test_a_database_made_by_a_newer_release_is_refused_not_misread(make_node):
    node = make_node("EDGE01")
    node.store.db.execute("UPDATE _meta SET value = 99 WHERE key = 'schema_version'")
    for args in (("status",), ("put", "pages", "--data", '{"title": "x"}'), ("init",)):
        res = node.cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert "schema version 99 is newer" in res.stderr and KNOWS in res.stderr


def test_a_database_made_before_signed_changes_is_refused_with_what_to_do(make_node):
    node = make_node("EDGE01")
    node.store.db.execute("UPDATE _meta SET value = 1 WHERE key = 'schema_version'")
    for args in (("status",), ("put", "pages", "--data", '{"title": "x"}'), ("init",)):
        res = node.cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert "schema version 1 was made before changes were signed" in res.stderr
        assert KNOWS in res.stderr and res.stderr.count("\n") == 1
