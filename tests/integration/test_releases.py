"""Two real releases: the previous one, built from the commit releases.toml
records, and the code at hand. A database the previous release made migrates
forward and back; agents of both releases sync with each other, over the real
sshd, in whatever direction a rollout leaves them.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from farm import Farm

from edgesync import __version__, migrations, protocol
from edgesync.config import dump
from edgesync.localfleet import PAGES

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "schema2"
NEW = [sys.executable, "-m", "edgesync"]


@pytest.fixture(scope="session")
def previous(tmp_path_factory) -> list[str]:
    """The previous release's `edgesync` command (built once from its commit)."""
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "releases.py"), "agent"],
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return [res.stdout.strip()]


def previous_release() -> dict:
    """The previous release's line of releases.toml: its version and schema."""
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "releases.py"), "previous"],
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    known = tomllib.loads((REPO / "releases.toml").read_text())["release"]
    return next(r for r in known if r["version"] == res.stdout.strip())


PREVIOUS = previous_release()
SCHEMA, OLDEST = migrations.SCHEMA, migrations.OLDEST
RELEASE = {"new": __version__, "old": PREVIOUS["version"]}
SPEAKS = {"new": protocol.VERSION, "old": int(PREVIOUS["protocol"].split("-")[-1])}


def run(agent: list[str], config: Path, *args: str) -> subprocess.CompletedProcess:
    # The previous release imports its own code only: no PYTHONPATH of ours.
    env = {k: v for k, v in os.environ.items() if agent == NEW or k != "PYTHONPATH"}
    return subprocess.run([*agent, "--config", str(config), *args],
                          capture_output=True, text=True, timeout=120, env=env)  # fmt: skip


def ok(agent, config, *args) -> str:
    res = run(agent, config, *args)
    assert res.returncode == 0, f"{' '.join(args)}: {res.stderr}"
    return res.stdout


@pytest.fixture
def old_node(tmp_path, redis_server) -> Path:
    """EDGE01 with the data directory the previous release wrote (tests/data)."""
    shutil.copytree(DATA, tmp_path / "edge01-data", ignore=shutil.ignore_patterns("expect.json"))
    node = {"name": "EDGE01", "location": "LON", "role": "edge", "farm": "a",
            "data_dir": "edge01-data", "redis_url": redis_server.url}  # fmt: skip
    config = tmp_path / "edge01.toml"
    config.write_text(dump({"node": node, "peers": {}, "tables": {"pages": PAGES}}))
    return config


EXPECT = json.loads((DATA / "expect.json").read_text())


def test_the_previous_release_is_real_code_of_another_version(previous):
    assert ok(previous, Path("/dev/null"), "--version").split()[:2] == [
        "edgesync", PREVIOUS["version"]]  # fmt: skip
    assert __version__ != PREVIOUS["version"] and PREVIOUS["schema"] <= SCHEMA
    line = ok(NEW, Path("/dev/null"), "--version").strip()
    assert line == (f"edgesync {__version__} (schema {SCHEMA}, migrates from {OLDEST}; "
                    f"sync protocol {protocol.OLDEST}-{protocol.VERSION})")  # fmt: skip


def test_a_database_of_the_previous_release_is_refused_until_migrated(old_node):
    for args in (("status",), ("put", "pages", "--data", '{"title": "x"}'), ("init",)):
        res = run(NEW, old_node, *args)
        assert res.returncode == 2, res.stderr
        assert res.stderr.count("\n") == 1
        assert f"schema version 2 is older than this edgesync's {SCHEMA}" in res.stderr
        assert "run `edgesync migrate`" in res.stderr
    assert json.loads(ok(NEW, old_node, "migrate", "--check")) == {
        "schema": 2, "release_schema": SCHEMA, "oldest": OLDEST}  # fmt: skip


def test_it_migrates_forward_keeping_every_record_and_takes_writes(old_node, tmp_path):
    backup = json.loads(ok(NEW, old_node, "backup", str(tmp_path / "before.db")))
    assert backup["schema"] == 2 and Path(backup["backup"]).stat().st_size > 0
    res = run(NEW, old_node, "backup", str(tmp_path / "before.db"))
    assert res.returncode == 2 and "already exists" in res.stderr
    assert json.loads(ok(NEW, old_node, "migrate")) == {
        "schema_from": 2, "schema": SCHEMA, "migrated": True}  # fmt: skip
    assert json.loads(ok(NEW, old_node, "migrate"))["migrated"] is False  # nothing to do
    assert ok(NEW, old_node, "digest").strip() == EXPECT["digest"]
    edited = EXPECT["edited"]
    assert json.loads(ok(NEW, old_node, "get", "pages", edited["id"])) == edited
    assert json.loads(ok(NEW, old_node, "get", "pages", "--slug", EXPECT["slug"]))
    assert run(NEW, old_node, "get", "pages", EXPECT["deleted"]).returncode == 1
    made = json.loads(ok(NEW, old_node, "put", "pages", "--data", '{"title": "after"}'))
    status = json.loads(ok(NEW, old_node, "status", "--json"))
    assert (status["version"], status["schema"]) == (__version__, SCHEMA)
    assert status["rows"]["pages"] == EXPECT["rows"] + 1 and status["links"] == []
    # The backup is the database as it was: schema 2, the old release's content.
    copy = sqlite3.connect(backup["backup"])
    assert copy.execute("SELECT value FROM _meta WHERE key='schema_version'").fetchone() == (2,)
    assert copy.execute("SELECT count(*) FROM pages WHERE id = ?", (made["id"],)).fetchone() == (0,)


def test_a_rollback_migrates_back_and_the_previous_release_reads_every_write(old_node, previous):
    ok(NEW, old_node, "migrate")
    made = json.loads(ok(NEW, old_node, "put", "pages", "--data", '{"title": "on new"}'))
    back = str(PREVIOUS["schema"])
    assert json.loads(ok(NEW, old_node, "migrate", "--to", back)) == {
        "schema_from": SCHEMA, "schema": PREVIOUS["schema"],
        "migrated": PREVIOUS["schema"] != SCHEMA}  # fmt: skip
    assert json.loads(ok(previous, old_node, "get", "pages", made["id"]))["title"] == "on new"
    again = json.loads(ok(previous, old_node, "put", "pages", "--data", '{"title": "on old"}'))
    digest = ok(previous, old_node, "digest")
    ok(NEW, old_node, "migrate")
    assert ok(NEW, old_node, "digest") == digest
    assert json.loads(ok(NEW, old_node, "get", "pages", again["id"]))["title"] == "on old"


def test_versions_it_does_not_know_are_refused_naming_them(old_node):
    ok(NEW, old_node, "migrate")
    for to in (SCHEMA + 1, OLDEST - 1):
        res = run(NEW, old_node, "migrate", "--to", str(to))
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert f"cannot migrate to schema {to}" in res.stderr
        assert f"versions {OLDEST} to {SCHEMA}" in res.stderr
    db = sqlite3.connect(old_node.parent / "edge01-data" / "edgesync.db")
    db.execute("UPDATE _meta SET value = ? WHERE key = 'schema_version'", (SCHEMA + 1,))
    db.commit()
    db.close()
    res = run(NEW, old_node, "migrate")
    assert res.returncode == 2 and f"schema version {SCHEMA + 1} is newer" in res.stderr, res.stderr


def test_a_failed_migration_leaves_the_database_as_it_was(old_node):
    # Something in the way of the new table: the step fails, and with it the whole move.
    db = sqlite3.connect(old_node.parent / "edge01-data" / "edgesync.db")
    db.execute("CREATE VIEW _links AS SELECT 1")
    db.commit()
    res = run(NEW, old_node, "migrate")
    assert res.returncode == 5 and res.stderr.count("\n") == 1, res.stderr
    assert db.execute("SELECT value FROM _meta WHERE key='schema_version'").fetchone() == (2,)
    db.close()
    assert json.loads(ok(NEW, old_node, "migrate", "--check"))["schema"] == 2


# -- mixed versions --------------------------------------------------------------

PAIR = {"NODE01": ("node", None, ("EDGE01",)), "EDGE01": ("edge", "a", ())}


@pytest.mark.parametrize("caller, callee", [("new", "old"), ("old", "new"), ("new", "new")])
def test_agents_of_both_releases_sync_both_ways(make_farm, sshd, previous, caller, callee):
    farm: Farm = make_farm(PAIR)
    agents = {"new": NEW, "old": previous}
    runs = {"NODE01": agents[caller], "EDGE01": agents[callee]}
    serve = f"--config {farm.config_path('EDGE01')} serve --stdio --peer NODE01"
    farm.over_ssh(sshd, "NODE01", "EDGE01", command=f"{' '.join(runs['EDGE01'])} {serve}")
    farm.close()
    for name, agent in runs.items():
        if agent is previous:  # as a rollback leaves it
            ok(NEW, farm.config_path(name), "migrate", "--to", str(PREVIOUS["schema"]))
    put = {name: json.loads(ok(agent, farm.config_path(name), "put", "pages", "--data",
                                f'{{"title": "from {name}"}}'))["id"]
           for name, agent in runs.items()}  # fmt: skip
    node, edge = farm.config_path("NODE01"), farm.config_path("EDGE01")
    pulled = json.loads(ok(runs["NODE01"], node, "pull", "EDGE01", "--json"))
    pushed = json.loads(ok(runs["NODE01"], node, "push", "EDGE01", "--json"))
    assert pulled["applied"] == 1 and pushed["applied"] >= 1, (pulled, pushed)
    assert ok(runs["NODE01"], node, "digest") == ok(runs["EDGE01"], edge, "digest")
    for name, agent in runs.items():
        got = json.loads(ok(agent, farm.config_path(name), "get", "pages", put["EDGE01"]))
        assert got["title"] == "from EDGE01"
    spoken = min(SPEAKS[caller], SPEAKS[callee])
    for name, side, other in (("NODE01", True, callee), ("EDGE01", False, caller)):
        if runs[name] is previous:
            continue
        links = json.loads(ok(NEW, farm.config_path(name), "status", "--json"))["links"]
        assert {(lk["action"], lk["initiated"]) for lk in links} == {
            ("pull", side), ("push", side)}  # fmt: skip
        for lk in links:
            assert lk["sessions_ok"] == 1 and lk["sessions_failed"] == 0, lk
            assert lk["protocol"] == spoken, lk
            assert lk["peer_release"] == (RELEASE[other] if spoken >= 3 else None), lk
            assert lk["last_ok_age_s"] < 60


def test_a_peer_rolled_back_shows_in_the_history_as_it_is_now(make_farm, sshd, previous, tmp_path):
    farm: Farm = make_farm(PAIR)
    serve = tmp_path / "serve.sh"  # EDGE01's forced command: whichever release it runs
    serve.write_text(f'exec {" ".join(NEW)} "$@"\n')
    args = f"--config {farm.config_path('EDGE01')} serve --stdio --peer NODE01"
    farm.over_ssh(sshd, "NODE01", "EDGE01", command=f"env -u PYTHONPATH sh {serve} {args}")
    farm.close()
    node = farm.config_path("NODE01")

    def link() -> tuple:
        lk = json.loads(ok(NEW, node, "status", "--json"))["links"][0]
        return lk["protocol"], lk["peer_release"], lk["sessions_ok"]

    ok(NEW, node, "pull", "EDGE01")
    assert link() == (protocol.VERSION, __version__, 1)
    back = str(PREVIOUS["schema"])
    ok(NEW, farm.config_path("EDGE01"), "migrate", "--to", back)  # EDGE01 rolled back
    serve.write_text(f'exec {previous[0]} "$@"\n')
    ok(NEW, node, "pull", "EDGE01")
    # What it runs now, not the release it ran before (a protocol 2 peer names none).
    old = SPEAKS["old"]
    assert link() == (old, PREVIOUS["version"] if old >= 3 else None, 2)


def test_a_failed_session_is_in_the_link_history(make_farm, sshd):
    farm: Farm = make_farm(PAIR)
    farm.over_ssh(sshd, "NODE01", "EDGE01")
    sshd.stop()
    res = farm.cli("NODE01", "pull", "EDGE01")
    assert res.returncode == 4, res.stderr
    links = json.loads(farm.cli("NODE01", "status", "--json").stdout)["links"]
    assert [(lk["peer"], lk["action"], lk["sessions_ok"], lk["sessions_failed"]) for lk in links
            ] == [("EDGE01", "pull", 0, 1)]  # fmt: skip
    assert "EDGE01" in links[0]["last_error"] and links[0]["last_ok"] is None


def test_the_schema_module_and_the_protocol_agree_with_the_release():
    assert max(migrations.STEPS) == migrations.SCHEMA
    assert protocol.speaks() == [2, 3, 4]
