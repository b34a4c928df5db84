"""An edge's clock runs 10 minutes fast, then is set right: a real clock offset
(libfaketime) on the edge's own processes, a real sshd on the receiving side
(which keeps the true time). While fast it is refused; once set right it syncs
at once, loses nothing, and its edits from the fast time never beat edits made
after it was set right.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgesync import hlc

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
PAIR = {"EDGE01": ("edge", "a", ()), "EDGE02": ("edge", "a", ())}


@pytest.fixture
def pair(make_farm, sshd):
    """EDGE01 pushes to EDGE02 over a real sshd (started with the true time)."""
    if not os.path.exists(FAKETIME):
        pytest.fail("libfaketime is not installed: run the README's test command")
    farm = make_farm(PAIR)
    farm.over_ssh(sshd, "EDGE01", "EDGE02")
    return farm


def edge01(farm, *args: str, fast: bool | str = False) -> subprocess.CompletedProcess:
    """EDGE01's CLI; ``fast``: with its clock 10 minutes (or ``fast``) ahead."""
    env = {**os.environ}
    if fast:
        env |= {"LD_PRELOAD": FAKETIME, "FAKETIME": "+10m" if fast is True else fast}
    return subprocess.run(
        [sys.executable, "-m", "edgesync", "--config", str(farm.config_path("EDGE01")), *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def put(farm, data: dict, fast: bool | str = False) -> dict:
    res = edge01(farm, "put", "pages", "--data", json.dumps(data), fast=fast)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def stamps(store, table="pages") -> list[int]:
    """Every column stamp EDGE01 made, in ms, as ``store`` holds them."""
    cols = ", ".join(f"_v_{c}" for c in ("section", "title", "body", "_code"))
    out = []
    for row in store.db.execute(f"SELECT {cols} FROM {table}"):
        out += [hlc.decode(v)[0] for v in row if v is not None and v.endswith(".EDGE01")]
    return out


def test_a_clock_set_right_syncs_at_once_loses_nothing_and_never_wins_later(pair):
    first = put(pair, {"title": "made on time", "body": "b"})
    assert edge01(pair, "push", "EDGE02").returncode == 0

    fast_edit = put(pair, {"id": first["id"], "title": "edited while fast"}, fast=True)
    made_fast = put(pair, {"title": "made while fast"}, fast=True)
    refused = edge01(pair, "push", "EDGE02", fast=True)
    assert refused.returncode == 3 and "clock is" in refused.stderr, refused.stderr

    # The clock is set right: the next session heals it and delivers everything.
    started = hlc.wall_ms()
    res = edge01(pair, "push", "EDGE02", "--json")
    assert res.returncode == 0, res.stderr
    assert "clock ran" in res.stderr and "stamped now" in res.stderr
    healed = hlc.wall_ms()
    receiver = pair.store("EDGE02")
    assert receiver.get("pages", made_fast["id"])["title"] == "made while fast"
    assert receiver.get("pages", first["id"])["title"] == fast_edit["title"]
    assert receiver.digest() == pair.store("EDGE01").digest()
    # Nothing EDGE01 made carries the fast time any more, here or there.
    for store in (pair.store("EDGE01"), receiver):
        assert started - 700_000 < min(stamps(store)) and max(stamps(store)) <= healed

    # An edit EDGE02 makes now wins, on both: no future stamp stands in its way.
    later = receiver.put("pages", {"id": first["id"], "title": "edited later by EDGE02"})
    assert edge01(pair, "pull", "EDGE02").returncode == 0
    assert pair.store("EDGE01").get("pages", first["id"])["title"] == later["title"]
    # And EDGE01's next writes are stamped with the true time.
    after = put(pair, {"title": "after"})
    assert edge01(pair, "push", "EDGE02").returncode == 0
    assert receiver.get("pages", after["id"])["title"] == "after"
    assert max(stamps(pair.store("EDGE01"))) <= hlc.wall_ms()


def test_a_heal_keeps_the_later_edit_over_an_earlier_one_inside_the_skew(pair):
    # v1 made 4 minutes fast (inside max_clock_skew_ms: accepted, and confirmed),
    # then v2, the later edit, made 10 minutes fast.
    record = put(pair, {"title": "v1"}, fast="+4m")
    for _ in range(2):  # the second session shows EDGE01 that EDGE02 holds v1
        assert edge01(pair, "push", "EDGE02", fast="+4m").returncode == 0
    put(pair, {"id": record["id"], "title": "v2"}, fast=True)
    res = edge01(pair, "push", "EDGE02")  # the clock set right: heals, delivers
    assert res.returncode == 0, res.stderr
    for store in (pair.store("EDGE01"), pair.store("EDGE02")):
        assert store.get("pages", record["id"])["title"] == "v2"
    # And the next write takes, though v1's stamp is still minutes ahead.
    assert put(pair, {"id": record["id"], "title": "v3"})["title"] == "v3"
    assert pair.store("EDGE01").get("pages", record["id"])["title"] == "v3"
