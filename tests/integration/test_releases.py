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
    assert ok(previous, Path("/dev/null"), "--version").split() == ["edgesync", "0.1.0"]
    assert __version__ != "0.1.0"
    line = ok(NEW, Path("/dev/null"), "--version").strip()
    assert line == f"edgesync {__version__} (schema 3, migrates from 2; sync protocol 2-3)"


def test_a_database_of_the_previous_release_is_refused_until_migrated(old_node):
    for args in (("status",), ("put", "pages", "--data", '{"title": "x"}'), ("init",)):
        res = run(NEW, old_node, *args)
        assert res.returncode == 2, res.stderr
        assert res.stderr.count("\n") == 1
        assert "schema version 2 is older than this edgesync's 3" in res.stderr
        assert "run `edgesync migrate`" in res.stderr
    assert json.loads(ok(NEW, old_node, "migrate", "--check")) == {
        "schema": 2, "release_schema": 3, "oldest": 2}  # fmt: skip


def test_it_migrates_forward_keeping_every_record_and_takes_writes(old_node, tmp_path):
    backup = json.loads(ok(NEW, old_node, "backup", str(tmp_path / "before.db")))
    assert backup["schema"] == 2 and Path(backup["backup"]).stat().st_size > 0
    res = run(NEW, old_node, "backup", str(tmp_path / "before.db"))
    assert res.returncode == 2 and "already exists" in res.stderr
    assert json.loads(ok(NEW, old_node, "migrate")) == {
        "schema_from": 2, "schema": 3, "migrated": True}  # fmt: skip
    assert json.loads(ok(NEW, old_node, "migrate"))["migrated"] is False  # nothing to do
    assert ok(NEW, old_node, "digest").strip() == EXPECT["digest"]
    edited = EXPECT["edited"]
    assert json.loads(ok(NEW, old_node, "get", "pages", edited["id"])) == edited
    assert json.loads(ok(NEW, old_node, "get", "pages", "--slug", EXPECT["slug"]))
    assert run(NEW, old_node, "get", "pages", EXPECT["deleted"]).returncode == 1
    made = json.loads(ok(NEW, old_node, "put", "pages", "--data", '{"title": "after"}'))
    status = json.loads(ok(NEW, old_node, "status", "--json"))
    assert (status["version"], status["schema"]) == (__version__, 3)
    assert status["rows"]["pages"] == EXPECT["rows"] + 1 and status["links"] == []
    # The backup is the database as it was: schema 2, the old release's content.
    copy = sqlite3.connect(backup["backup"])
    assert copy.execute("SELECT value FROM _meta WHERE key='schema_version'").fetchone() == (2,)
    assert copy.execute("SELECT count(*) FROM pages WHERE id = ?", (made["id"],)).fetchone() == (0,)


def test_a_rollback_migrates_back_and_the_previous_release_reads_every_write(old_node, previous):
    ok(NEW, old_node, "migrate")
    made = json.loads(ok(NEW, old_node, "put", "pages", "--data", '{"title": "on 0.2"}'))
    assert json.loads(ok(NEW, old_node, "migrate", "--to", "2")) == {
        "schema_from": 3, "schema": 2, "migrated": True}  # fmt: skip
    assert json.loads(ok(previous, old_node, "get", "pages", made["id"]))["title"] == "on 0.2"
    again = json.loads(ok(previous, old_node, "put", "pages", "--data", '{"title": "on 0.1"}'))
    digest = ok(previous, old_node, "digest")
    ok(NEW, old_node, "migrate")
    assert ok(NEW, old_node, "digest") == digest
    assert json.loads(ok(NEW, old_node, "get", "pages", again["id"]))["title"] == "on 0.1"


def test_versions_it_does_not_know_are_refused_naming_them(old_node):
    ok(NEW, old_node, "migrate")
    for to, words in (("4", "cannot migrate to schema 4"), ("1", "cannot migrate to schema 1")):
        res = run(NEW, old_node, "migrate", "--to", to)
        assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
        assert words in res.stderr and "versions 2 to 3" in res.stderr
    db = sqlite3.connect(tmp := old_node.parent / "edge01-data" / "edgesync.db")
    db.execute("UPDATE _meta SET value = 4 WHERE key = 'schema_version'")
    db.commit()
    db.close()
    res = run(NEW, old_node, "migrate")
    assert res.returncode == 2 and "schema version 4 is newer" in res.stderr, (tmp, res.stderr)


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
            ok(NEW, farm.config_path(name), "migrate", "--to", "2")
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
    both_new = caller == callee == "new"
    for name, side in (("NODE01", True), ("EDGE01", False)):
        if runs[name] is previous:
            continue
        links = json.loads(ok(NEW, farm.config_path(name), "status", "--json"))["links"]
        assert {(lk["action"], lk["initiated"]) for lk in links} == {
            ("pull", side), ("push", side)}  # fmt: skip
        for lk in links:
            assert lk["sessions_ok"] == 1 and lk["sessions_failed"] == 0, lk
            assert lk["protocol"] == (3 if both_new else 2), lk
            assert lk["peer_release"] == (__version__ if both_new else None), lk
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
    assert link() == (3, __version__, 1)
    ok(NEW, farm.config_path("EDGE01"), "migrate", "--to", "2")  # EDGE01 rolled back
    serve.write_text(f'exec {previous[0]} "$@"\n')
    ok(NEW, node, "pull", "EDGE01")
    assert link() == (2, None, 2)  # it names no release now: not the one it ran before


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
    assert protocol.speaks() == [2, 3]
