"""edgectl.users' reading of what the farms' users saw."""

from __future__ import annotations

import math

from edgectl import users


def entry(t, farm="lon-a", kind="read", status=200, ms=10.0, x=""):
    return {"t": t, "farm": farm, "kind": kind, "status": status, "ms": ms, "x": x,
            "retry_after": None}  # fmt: skip


def test_figures_count_failures_by_kind_and_split_latency_at_the_window():
    entries = [entry(1, ms=5), entry(2, kind="write", status=201, x="ID1"),
               entry(11, ms=50), entry(12, kind="write", status=503, x="busy"),
               entry(13, status=0, x="ReadTimeout"), entry(30, ms=999),
               entry(11, farm="lon-b", ms=7)]  # fmt: skip
    figs = users.figures(entries, (10, 20))
    a = figs["lon-a"]
    assert (a["requests"], a["failed_reads"], a["failed_writes"]) == (6, 1, 1)
    assert a["acked"] == {"ID1"}
    assert a["p99_before"] == 10.0  # the write at t=2 answered in 10 ms
    assert a["p99_during"] == 50  # t=30 is after the window: not counted
    assert a["why"] == {"503 busy": 1, "0 ReadTimeout": 1}
    assert figs["lon-b"]["requests"] == 1 and math.isnan(figs["lon-b"]["p99_before"])


def test_p99_of_a_hundred_values_is_the_99th():
    assert users.p99([float(i) for i in range(1, 101)]) == 100.0
    assert users.p99([3.0]) == 3.0


def test_the_table_gives_the_ratio_and_what_of_the_acknowledged_writes_is_present():
    figs = users.figures([entry(1, ms=10), entry(2, kind="write", status=201, x="A"),
                          entry(12, ms=30), entry(13, kind="write", status=201, x="B")],
                         (10, 20))  # fmt: skip
    shown = {"clients": 4, "rate": 5.0, "writes_every": 4}
    lines = users.table(figs, {"A"}, shown)
    row = next(line for line in lines if line.strip().startswith("lon-a"))
    assert row.split() == ["lon-a", "4", "0", "10.0", "ms", "30.0", "ms", "3.0x", "2", "1"]


def test_an_inventory_without_balancers_is_refused_in_one_line(tmp_path):
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[2]
    inventory = tmp_path / "inventory"
    shutil.copytree(repo / "inventory" / "local", inventory)
    common = inventory / "group_vars" / "all.yml"
    settings = yaml.safe_load(common.read_text())
    del settings["edgesync_balancers"]
    common.write_text(yaml.safe_dump(settings))
    edgectl = str(Path(sys.executable).parent / "edgectl")
    res = subprocess.run([edgectl, "users", "-i", str(inventory), "--", "true"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "names no balancer (edgesync_balancers)" in lines[0], lines
