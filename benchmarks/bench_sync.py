"""Sync benchmarks: changes moved edge -> master end to end, over local: and ssh.

Run: python benchmarks/bench_sync.py [--quick]
Prints its figures; it asserts nothing about speed.

Edges may not push to a master (the topology forbids it), so "edge -> master"
is the allowed path: the master pulls from the edge. An edge-to-edge push inside
one farm is measured too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_store import ORIGIN_KEYS, curve_sizes, make_batches
from proc_peak import run_measured

from edgesync.agent import open_store
from edgesync.config import dump
from edgesync.localredis import LocalRedis
from edgesync.localsshd import LocalSshd, keygen
from edgesync.store import Store
from edgesync.sync import sync


def write_config(root: Path, name: str, role: str, farm: str | None, redis: str, peers: dict):
    """A config whose peers are {name: (url, role, farm)}."""
    node = {"name": name, "location": "LON", "role": role, "farm": farm,
            "data_dir": name.lower(), "redis_url": redis}  # fmt: skip
    path = root / f"{name.lower()}.toml"
    path.write_text(dump({
        "node": node,
        "peers": {p: {"url": u, "role": r, "farm": f} for p, (u, r, f) in peers.items()},
        "keys": ORIGIN_KEYS,
        "tables": {"items": {"columns": ["section", "title", "body"]}},
    }))  # fmt: skip
    return path


def open_init(path: Path) -> Store:
    store = open_store(path)
    store.init()
    return store


def fill(store: Store, total: int) -> float:
    """Give the edge ``total`` changes (made at another edge, now held here)."""
    spent = 0.0
    with store.applying():
        for batch in make_batches(total // 1000, 1000):
            start = time.perf_counter()  # time the store, not the making of test data
            store.apply_changes(batch)
            spent += time.perf_counter() - start
    start = time.perf_counter()
    store.flush()
    return total / (spent + time.perf_counter() - start)


def run_cli(config: Path, *args: str, measure: bool = False):
    """Run the agent's CLI; with measure, also each agent process's own peak RSS (MB)."""
    argv = [sys.executable, "-m", "edgesync", "--config", str(config), *args, "--json"]
    start = time.perf_counter()
    if measure:
        out, peaks = run_measured(argv)
    else:
        out = subprocess.run(argv, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"bench: {' '.join(args)} failed: {out.stderr.strip()}")
    if measure:
        return json.loads(out.stdout), seconds, peaks
    return json.loads(out.stdout), seconds


def verification_on_off(root: Path, url: str, edge: Path) -> None:
    """The master pulls everything from the edge into a fresh database, checking
    every change's proof of origin or not, alternately, in this one run."""
    rates: dict[bool, list[float]] = {True: [], False: []}
    for k, verify in enumerate((True, False, True, False)):
        (root / f"verify{k}").mkdir()
        path = write_config(root / f"verify{k}", "MASTER01", "master", None, url,
                            {"EDGE01": (f"local:{edge}", "edge", "a")})  # fmt: skip
        store = open_init(path)
        store.verify = verify
        start = time.perf_counter()
        report = sync(store, "EDGE01", "pull")
        rates[verify].append(report["applied"] / (time.perf_counter() - start))
        store.close()
    on, off = max(rates[True]), max(rates[False])
    print(f"  master pulls from edge over local:, verification on  {on:>9,.0f} changes/s "
          f"(best of 2), off {off:>9,.0f} changes/s; on/off {on / off:.2f}")  # fmt: skip


def pull_at_size(r2: Path, url: str, size: int) -> None:
    r2.mkdir()
    src = write_config(r2, "EDGE05", "edge", "c", url,
                       {"MASTER03": ("local:master03.toml", "master", None)})  # fmt: skip
    dst = write_config(r2, "MASTER03", "master", None, url,
                       {"EDGE05": ("local:edge05.toml", "edge", "c")})  # fmt: skip
    s = open_init(src)
    fill(s, size)
    s.close()
    open_init(dst).close()
    report, seconds, peaks = run_cli(dst, "pull", "EDGE05", measure=True)
    own = ", ".join(f"{name} {mb:.0f} MB" for name, mb in sorted(peaks.items()))
    print(f"    {size:>9,} changes: {report['applied']:,} applied in {seconds:.1f} s "
          f"({report['applied'] / seconds:>7,.0f}/s, goal >= 40,000/s); {own}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller runs (for CI)")
    ap.add_argument("--huge", action="store_true", help="the size curve goes on to 5M changes")
    args = ap.parse_args()
    total = 10_000 if args.quick else 100_000
    sizes = curve_sizes(args.quick, args.huge)
    with tempfile.TemporaryDirectory(prefix="edgesync-bench-") as tmp:
        root = Path(tmp)
        redis = LocalRedis(root / "redis").start()
        sshd = LocalSshd(root / "sshd").start()
        try:
            url = redis.url
            e1 = write_config(root, "EDGE01", "edge", "a", url, {
                "EDGE02": ("local:edge02.toml", "edge", "a"),
                "MASTER01": ("local:master01.toml", "master", None),
                "MASTER02": ("local:master02.toml", "master", None),
            })  # fmt: skip
            write_config(root, "EDGE02", "edge", "a", url,
                         {"EDGE01": ("local:edge01.toml", "edge", "a")})  # fmt: skip
            m = write_config(root, "MASTER01", "master", None, url,
                             {"EDGE01": ("local:edge01.toml", "edge", "a")})  # fmt: skip
            ssh_url = f"ssh://root@127.0.0.1:{sshd.port}"
            m2 = write_config(root, "MASTER02", "master", None, url,
                              {"EDGE01": (ssh_url, "edge", "a")})  # fmt: skip
            # MASTER02 reaches EDGE01 over ssh; the edge's key entry serves MASTER02.
            key = keygen(root / "master02" / "id_ed25519")
            (root / "master02" / "known_hosts").write_text(sshd.known_hosts_line())
            sshd.authorize(key, f"{sys.executable} -m edgesync --config {e1} serve --stdio "
                                "--peer MASTER02")  # fmt: skip

            edge_store = open_init(e1)
            for path in (root / "edge02.toml", m, m2):
                open_init(path).close()
            raw = fill(edge_store, total)
            print(f"edgesync sync benchmark ({total:,} changes, 200-byte bodies)")
            print(f"  store apply rate (this run, in-process, no protocol): {raw:,.0f} changes/s")
            for label, config, action, peer, goal in [
                ("master pulls from edge over local:", m, "pull", "EDGE01", "40,000"),
                ("edge pushes to farm peer over local:", e1, "push", "EDGE02", "40,000"),
                ("master pulls from edge over ssh:", m2, "pull", "EDGE01", "30,000"),
            ]:
                report, seconds = run_cli(config, action, peer)
                moved = report["applied"]
                rate = moved / seconds
                print(f"  {label:40s} {moved:>9,} changes  {rate:>9,.0f} changes/s end to end"
                      f" (goal >= {goal}/s)  ratio to store apply {rate / raw:.2f}")  # fmt: skip
            edge_store.close()
            verification_on_off(root, url, e1)

            # The pull by size: a fresh pair at each size, the puller's and its
            # serve child's own peak RSS (memory must stay flat with size).
            print("  master pulls from edge over local:, by size (fresh pair each; own peak RSS):")
            for size in sizes:
                pull_at_size(root / f"size{size}", url, size)
        finally:
            sshd.stop()
            redis.stop()


if __name__ == "__main__":
    main()
