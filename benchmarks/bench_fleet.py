"""Fleet size: how the operator's commands scale with the number of edges.

Run: python benchmarks/bench_fleet.py [--sizes 4,8,16] [--quick]
For each N it generates an inventory of N edges in N/4 farms (four edges a
farm, LXD and Docker in turn, each farm behind a balancer on its node) with
inventory/local's masters and two nodes, tears the
local fleet down, and times, through edgectl as an operator runs it:
site.yml from nothing (the base image already built), site.yml again (no
change), one `edgectl sync` round and `edgectl status`, with the seconds per
edge of each. --quick measures the local fleet as it stands (inventory/local,
as the test command leaves it; built first if no host answers): site.yml
again, a round and status, no teardown (CI). It prints its figures and asserts
nothing about speed; a run that fails is reported and exits 1.

It replaces the local fleet: run it when no other fleet work runs here.

Goals (issue "throughput"): site.yml again on a converged fleet under 60 s,
from nothing under 180 s; printed beside the figures with the five slowest
tasks of the run again (`edgectl up --timings`). What the profile shows (2
cores, 8 hosts): a run again is ~80 tasks per host, and no task is slow
(the slowest, a loop over the links, 6 s); each costs 1.1-2.2 s because one
module call on 8 hosts costs about 1.1 s here. Ten `ping` tasks take 5.9 s
with the CPU 89 % busy: not SSH (9 ms a session through the kept
connection) nor Python's start on the hosts (17 ms), but every module call
compiling its AnsiballZ payload from source (zipimport keeps no bytecode:
17 % of ansible-playbook's own samples under py-spy, on the tasks it runs
locally; the hosts pay the same for theirs), a worker forked per host and
task (a third of the samples), and templating. What would close it: fewer
module calls (a host's files written in one call, not a template task
each), or roles skipped whole on the hosts whose inputs did not change.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EDGECTL = str(Path(sys.executable).parent / "edgectl")
NODES = ("node01", "node02")
# The local fleet's masters, as inventory/local has them (their one copy).
MASTERS = yaml.safe_load((ROOT / "inventory" / "local" / "hosts.yml").read_text())["all"][
    "children"
]["masters"]["hosts"]


def inventory(n: int, where: Path) -> Path:
    """inventory/local's settings with N edges in N/4 farms, farms alternating
    between the two nodes, providers alternating between LXD and Docker."""
    inv = where / f"fleet-{n}"
    shutil.copytree(ROOT / "inventory" / "local" / "group_vars", inv / "group_vars")
    farms: dict[str, dict] = {}
    names = [m["edgesync_name"] for m in MASTERS.values()]
    trusted = {node: [*names, *(o.upper() for o in NODES if o != node)] for node in NODES}
    for i in range(1, n + 1):
        farm = f"f{(i - 1) // 4 + 1:02d}"
        group = farms.setdefault(f"farm_{farm}", {"vars": {"edgesync_farm": farm}, "hosts": {}})
        name = f"EDGE{i:02d}"
        group["hosts"][f"edge{i:02d}"] = {
            "edgesync_name": name,
            "edgesync_provider": "lxd" if i % 2 else "docker",
        }
        trusted[NODES[((i - 1) // 4) % 2]].append(name)
    hosts = {"all": {"children": {
        "masters": {"hosts": MASTERS},
        "nodes": {"hosts": {node: {"edgesync_name": node.upper(), "edgesync_role": "node",
                                   "edgesync_provider": "docker" if node == "node01" else "lxd",
                                   "edgesync_trusted": trusted[node]} for node in NODES}},
        "edges": {"vars": {"edgesync_role": "edge"}, "children": farms},
    }}}  # fmt: skip
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    # Each farm behind a balancer on its node, as in inventory/local: port 80
    # for a node's first farm, 81 for its second, and so on.
    common = inv / "group_vars" / "all.yml"
    settings = yaml.safe_load(common.read_text())
    settings["edgesync_balancers"] = {
        farm["vars"]["edgesync_farm"]: {"host": NODES[i % 2], "port": 80 + i // 2}
        for i, farm in enumerate(farms.values())
    }
    common.write_text(yaml.safe_dump(settings, sort_keys=False))
    return inv


def edgectl(*args: str) -> tuple[float, dict]:
    """Run edgectl with --json; its wall time and its answer."""
    started = time.monotonic()
    res = subprocess.run([EDGECTL, *args, "--json"], capture_output=True, text=True, cwd=ROOT)
    seconds = time.monotonic() - started
    try:
        answer = json.loads(res.stdout)
    except json.JSONDecodeError:
        answer = {}
    if res.returncode != 0 and not (args[0] == "status" and answer.get("hosts")):
        tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"bench_fleet: edgectl {' '.join(args)} exited {res.returncode}: {tail}"
                 f" {json.dumps(answer.get('failures', []))[:600]}")  # fmt: skip
    return seconds, answer


def measure(n: int, where: Path) -> dict:
    inv = str(inventory(n, where))
    print(f"N={n}: tearing down, then site.yml from nothing ...", flush=True)
    edgectl("down", "-i", inv)
    site, _ = edgectl("up", "-i", inv)
    return converged(inv, site, f"N={n}")


def measure_local() -> dict:
    """The local fleet as it stands: site.yml again, a round, status (site.yml
    from nothing only when no host of it answers)."""
    inv = str(ROOT / "inventory" / "local")
    _, answer = edgectl("status", "-i", inv)
    site = None
    if not any("version" in h for h in answer.get("hosts", [])):
        print("local fleet: no host answers; site.yml from nothing ...", flush=True)
        site, _ = edgectl("up", "-i", inv)
    return converged(inv, site, "local fleet")


def converged(inv: str, site: float | None, label: str) -> dict:
    """On a built fleet: site.yml again (what it changed), a round, status."""
    again, answer = edgectl("up", "-i", inv)
    changed = sum(h["changed"] for h in answer["hosts"].values())
    slowest = "; ".join(f"{t['seconds']:.1f} s {t['task']}" for t in answer.get("slowest", []))
    print(f"{label}: site.yml again, its five slowest tasks: {slowest}", flush=True)
    sync, _ = edgectl("sync", "-i", inv)
    status, answer = edgectl("status", "-i", inv)
    answered = sum(1 for h in answer["hosts"] if "version" in h)
    edges = sum(1 for h in answer["hosts"] if h["role"] == "edge")
    hosts = len(answer["hosts"])
    built = f"site {site:.0f} s, " if site is not None else ""
    print(f"{label} ({edges} edges): {built}again {again:.0f} s (changed={changed}), "
          f"sync {sync:.0f} s, status {status:.1f} s ({answered}/{hosts} answered)",
          flush=True)  # fmt: skip
    return {"edges": edges, "hosts": hosts, "site": site, "site_again": again, "sync": sync,
            "site_again_changed": changed, "status": status, "answered": answered}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="4,8,16", help="edge counts, multiples of 4")
    ap.add_argument("--quick", action="store_true",
                    help="the local fleet as it stands, no teardown (CI)")  # fmt: skip
    args = ap.parse_args()
    if args.quick:
        table([measure_local()])
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(n % 4 or n <= 0 for n in sizes):
        sys.exit(f"bench_fleet: --sizes {args.sizes!r}: each must be a positive multiple of 4")
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        rows = [measure(n, Path(tmp)) for n in sizes]
    table(rows)


def table(rows: list[dict]) -> None:
    print("\nfleet size (edges)  hosts  site.yml  s/edge  again  s/edge  "
          "sync  s/edge  status  s/edge")  # fmt: skip
    for r in rows:
        n = r["edges"]
        site = (f"{'-':>8s}  {'-':>6s}" if r["site"] is None
                else f"{r['site']:7.0f}s  {r['site'] / n:6.1f}")  # fmt: skip
        print(f"{n:18d}  {r['hosts']:5d}  {site}  "
              f"{r['site_again']:4.0f}s  {r['site_again'] / n:6.1f}  {r['sync']:4.0f}s  "
              f"{r['sync'] / n:6.2f}  {r['status']:5.1f}s  {r['status'] / n:6.2f}")  # fmt: skip
    print("goals: site.yml from nothing < 180 s, again (no change) < 60 s")
    if any(r["site"] is None for r in rows):
        print(
            "(site.yml from nothing: not measured, the local fleet was up; the full curve has it)"
        )


if __name__ == "__main__":
    main()
