"""A backup's copy is checked where it arrives (`edgesync check-backup`, what
backup.yml and restore.yml run on the controller): a good one passes, a
damaged one and a file that is no edgesync database are refused in one line
(exit 2), and the check changes nothing."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys


def check(farm, path):
    return farm.cli("EDGE01", "check-backup", str(path))


def test_a_good_copy_passes_and_is_left_as_it_was(farm, tmp_path):
    for i in range(50):
        farm.put("EDGE01", title=f"page {i}", body="x" * 500)
    made = farm.cli("EDGE01", "backup", str(tmp_path / "copy.db"))
    assert made.returncode == 0, made.stderr
    before = hashlib.sha256((tmp_path / "copy.db").read_bytes()).hexdigest()
    res = check(farm, tmp_path / "copy.db")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["integrity"] == "ok" and report["changes"] >= 50 and report["schema"] >= 1
    assert hashlib.sha256((tmp_path / "copy.db").read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("copy")) == ["copy.db"]


def test_a_damaged_copy_is_refused_in_one_line(farm, tmp_path):
    for i in range(200):
        farm.put("EDGE01", title=f"page {i}", body="y" * 500)
    copy = tmp_path / "copy.db"
    assert farm.cli("EDGE01", "backup", str(copy)).returncode == 0
    page = sqlite3.connect(copy).execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(copy.read_bytes())
    middle = (len(data) // page // 2) * page  # a page in the middle: its header and cells
    data[middle : middle + 64] = b"\xff" * 64
    copy.write_bytes(bytes(data))
    res = check(farm, copy)
    assert res.returncode == 2, res.stdout
    line = res.stderr.strip()
    assert "\n" not in line and str(copy) in line, line
    assert "integrity_check failed" in line or "damaged" in line, line


def test_a_file_that_is_no_edgesync_database_is_refused_in_one_line(farm, tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t(x)").connection.commit()
    for path, why in ((junk, "damaged, or not a database"),
                      (other, "not an edgesync database"),
                      (tmp_path / "missing.db", "no such file")):  # fmt: skip
        res = check(farm, path)
        assert res.returncode == 2 and why in res.stderr, res.stderr
        assert res.stderr.count("\n") == 1


def test_check_backup_needs_no_config(tmp_path, farm):
    """As on the controller: no --config, no EDGESYNC_CONFIG."""
    copy = tmp_path / "copy.db"
    assert farm.cli("EDGE01", "backup", str(copy)).returncode == 0
    res = subprocess.run([sys.executable, "-m", "edgesync", "check-backup", str(copy)],
                         capture_output=True, text=True, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr


def test_a_copy_of_another_node_is_refused_when_the_name_is_given(farm, tmp_path):
    copy = tmp_path / "copy.db"
    assert farm.cli("EDGE01", "backup", str(copy)).returncode == 0
    assert farm.cli("EDGE01", "check-backup", str(copy), "--name", "EDGE01").returncode == 0
    res = farm.cli("EDGE01", "check-backup", str(copy), "--name", "EDGE02")
    assert res.returncode == 2 and "a copy of 'EDGE01', not of EDGE02" in res.stderr, res.stderr


def test_a_crafted_copy_runs_none_of_its_own_code_and_gets_one_line(farm, tmp_path):
    """A host sent it: views standing for the tables (a query that would never
    end) and a schema version that is no number are named, never run."""
    crafted = tmp_path / "crafted.db"
    db = sqlite3.connect(crafted)
    db.executescript(
        "CREATE TABLE _signing(one, origin, head, confirmed);"
        "CREATE TABLE _changes(seq);"
        "CREATE VIEW _meta AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
        " SELECT 'schema_version' AS key, x AS value FROM c;"
    )
    db.close()
    res = check(farm, crafted)
    assert res.returncode == 2 and "not an edgesync database: no table _meta" in res.stderr
    odd = tmp_path / "odd.db"
    db = sqlite3.connect(odd)
    db.executescript(
        "CREATE TABLE _signing(one, origin, head, confirmed);"
        "CREATE TABLE _changes(seq); CREATE TABLE _meta(key, value);"
        "INSERT INTO _meta VALUES ('schema_version', 'x' || char(10) || 'y');"
    )
    db.close()
    res = check(farm, odd)
    assert res.returncode == 2 and "no schema version" in res.stderr and res.stderr.count("\n") == 1
