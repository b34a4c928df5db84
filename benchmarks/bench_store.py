"""Store benchmarks: local writes, incoming batches vs a raw upsert, the apply
rate and peak memory by size.

Run: python benchmarks/bench_store.py [--quick] [--huge]
Prints its figures with the goals beside them; it asserts nothing about speed.
Only what a figure names is timed: the test changes are made and signed
before the clock starts (or, for the size curve, streamed and timed apart).

What the profile showed (cProfile and per-statement timers; 2 cores):

- At 100k changes a change costs about 27 us to apply: validation a third
  (structure checks, then the canonical re-encoding its proof is over),
  SQLite a quarter (the upsert, the log insert, the commit), the proof of
  origin 15 % (the chain's sha256 and base64), merge bookkeeping and the
  Redis entry the rest. A raw executemany upsert does only SQLite's part,
  which is why the ratio to it stays far from 1; closing it would take a
  compiled decoder that checks a change and yields its canonical body from
  the wire text in one pass.
- The rate fell with size because of commits: from the first 100k to the
  tenth, COMMIT's share grew from 0.76 s to 2.3 s per 100k, 70 % of it in the
  ten slowest commits, the WAL checkpoints (with synchronous=OFF, 1.0 s; a
  200 MB page cache instead of 16 MB, 2.0 s: not the cache). Random record
  IDs put each change on its own leaf of the ID index once the index
  outgrows a batch, so every commit and checkpoint writes about a page per
  change. Sync sessions now checkpoint beside their batches
  (Store.applying), which the benchmark uses as a session does. What is left
  is the page per change: an ID whose leading part grows with time, or
  larger transactions, would close it.
- Local writes: about 250 us each, of which the commit 120-155 us (nine
  B-tree pages to the WAL: the record, its three indexes, the log and its
  index, and three bookkeeping rows, about 13 us each) and the Ed25519
  signature 70 us.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from proc_peak import own_peak_mb

from edgesync import db as edgesync_db
from edgesync import hlc
from edgesync.agent import open_store
from edgesync.changes import encode
from edgesync.config import parse
from edgesync.ids import new_id
from edgesync.localredis import LocalRedis
from edgesync.signing import GENESIS, Signer, b64, public_text, sign_body
from edgesync.store import Store

# The origin of the benchmarks' incoming changes, with a fixed key (test data only).
ORIGIN = "EDGE09"
ORIGIN_SIGNER = Signer(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
ORIGIN_KEYS = {ORIGIN: public_text(ORIGIN_SIGNER.public)}

TABLES = {
    "pages": {"columns": ["section", "title", "body"], "slug": ["section", "title"]},
    "items": {"columns": ["section", "title", "body"]},
}


def make_store(workdir: Path, name: str, redis_url: str, durability: str = "normal") -> Store:
    cfg = parse(
        {
            "node": {
                "name": name,
                "location": "LON",
                "role": "master",
                "data_dir": str(workdir / name),
                "redis_url": redis_url,
                "durability": durability,
            },
            # A push target, so every write goes onto the Redis outbox as well.
            "peers": {"NODE01": {"url": "local:node01.toml", "role": "node", "push": True}},
            "keys": ORIGIN_KEYS,
            "tables": TABLES,
        }
    )
    s = open_store(cfg, warn=lambda m: print(m, file=sys.stderr))
    s.init()
    return s


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def bench_local_writes(workdir: Path, redis_url: str, n: int, durability: str) -> None:
    s = make_store(workdir, f"W{durability[0].upper()}", redis_url, durability)
    body = "x" * 200
    lat = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        s.put("pages", {"section": "news", "title": f"title {i}", "body": body})
        lat.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    goal = "  (goal >= 5,000/s, p99 < 1 ms)" if durability == "normal" else ""
    print(
        f"local writes (durability={durability}, slug table, signed, Redis XADD included): "
        f"{n / total:,.0f} writes/s  p50 {pct(lat, 0.5) * 1e6:.0f} us  "
        f"p99 {pct(lat, 0.99) * 1e6:.0f} us  ({n} writes){goal}"
    )
    s.close()


def make_batches(n_batches: int, size: int, seed: int = 1):
    """Batches of fresh records from ORIGIN, signed as it would sign them:
    random IDs, 200-byte bodies."""
    rng = random.Random(seed)
    letters = string.ascii_letters
    stamp = hlc.encode(hlc.wall_ms(), 0, ORIGIN)
    seq, prev = 0, GENESIS
    for _ in range(n_batches):
        batch = []
        for _ in range(size):
            seq += 1
            change = {
                "o": ORIGIN,
                "n": seq,
                "h": stamp,
                "t": "items",
                "i": new_id(ORIGIN, "PAR"),
                "k": "new",
                "d": {
                    "section": "news",
                    "title": "t" + str(seq),
                    "body": "".join(rng.choices(letters, k=200)),
                },
            }
            body, value = sign_body(ORIGIN_SIGNER, prev, encode(change))
            prev = b64(value)
            batch.append(json.loads(body))
        yield batch


def raw_upsert_rate(
    workdir: Path, batches: list[list[dict]], without_rowid: bool, tuned: bool
) -> float:
    """executemany upsert of the same rows into the same table schema, no merge
    logic; ``tuned``: with the store's own cache and checkpoint settings, else
    SQLite's defaults (checkpoints every 1,000 pages)."""
    path = workdir / f"raw-{without_rowid}-{tuned}.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    if tuned:
        db.execute("PRAGMA cache_size=-16000")
        db.execute(f"PRAGMA wal_autocheckpoint={edgesync_db.AUTOCHECKPOINT}")
    suffix = " WITHOUT ROWID" if without_rowid else ""
    db.execute(
        "CREATE TABLE items(id TEXT PRIMARY KEY NOT NULL, section, title, body, _code TEXT,"
        " _want TEXT, slug TEXT, _deleted INTEGER NOT NULL DEFAULT 0, _v_section TEXT,"
        f" _v_title TEXT, _v_body TEXT, _v__code TEXT){suffix}"
    )
    sql = (
        "INSERT INTO items(id, section, title, body) VALUES (?, ?, ?, ?) ON CONFLICT(id)"
        " DO UPDATE SET section = excluded.section, title = excluded.title, body = excluded.body"
    )
    n = 0
    start = time.perf_counter()
    for batch in batches:
        rows = [(c["i"], c["d"]["section"], c["d"]["title"], c["d"]["body"]) for c in batch]
        db.execute("BEGIN IMMEDIATE")
        db.executemany(sql, rows)
        db.execute("COMMIT")
        n += len(rows)
    rate = n / (time.perf_counter() - start)
    db.close()
    return rate


def apply_rate(
    workdir: Path, redis_url: str, batches: list[list[dict]], name: str, verify: bool = True
) -> float:
    s = make_store(workdir, name, redis_url)
    s.verify = verify
    n = 0
    start = time.perf_counter()
    with s.applying():  # as a sync session applies batches
        for batch in batches:
            n += s.apply_changes(batch).applied
    rate = n / (time.perf_counter() - start)
    s.close()
    return rate


def bench_apply(workdir: Path, redis_url: str, n_batches: int) -> None:
    batches = list(make_batches(n_batches, 1000))
    print(f"incoming batches: {n_batches} x 1,000 changes, 200-byte bodies, random IDs")
    for without_rowid in (True, False):
        edgesync_db.WITHOUT_ROWID = without_rowid
        kind = "WITHOUT ROWID" if without_rowid else "rowid + unique id"
        raw = raw_upsert_rate(workdir, batches, without_rowid, tuned=False)
        tuned = raw_upsert_rate(workdir, batches, without_rowid, tuned=True)
        ours = apply_rate(workdir, redis_url, batches, "A" + ("W" if without_rowid else "R"))
        goal = 0.9 if without_rowid else 0.8
        print(
            f"  {kind:18s} apply_changes {ours:>9,.0f} changes/s   raw executemany upsert "
            f"{raw:>9,.0f} rows/s   ratio {ours / raw:.2f} (goal >= {goal})   raw with the "
            f"store's cache and checkpoint settings {tuned:>9,.0f} rows/s, ratio {ours / tuned:.2f}"
        )
    edgesync_db.WITHOUT_ROWID = False
    # The cost of checking every change's proof of origin, in the same run.
    off = apply_rate(workdir, redis_url, batches, "VOFF", verify=False)
    on = apply_rate(workdir, redis_url, batches, "VON", verify=True)
    print(
        f"  verification on: {on:,.0f} changes/s, off: {off:,.0f} changes/s, on/off {on / off:.2f}"
    )


def curve_sizes(quick: bool, huge: bool) -> list[int]:
    """The size curve's points (changes): quick keeps the 100k point, --huge adds 5M."""
    if quick:
        return [100_000]
    return [10_000, 100_000, 1_000_000] + ([5_000_000] if huge else [])


def curve_child(workdir: Path, redis_url: str, total: int) -> None:
    """Apply ``total`` changes in 1,000-change batches to a fresh store, made
    as they are needed (streamed: nothing holds the whole backlog). Only
    apply_changes is timed; the making and signing of the test data is timed
    apart. Prints JSON: the rate over all, over the first and the last 100k
    (or tenth), and this process's own peak RSS."""
    s = make_store(workdir, f"C{total}", redis_url)
    window = min(100_000, max(total // 10, 1_000))
    batches = make_batches(total // 1000, 1000)
    with s.applying():  # as a sync session applies batches
        spent, first, last, made, applied = _timed_apply(s, batches, total, window)
    s.close()
    print(json.dumps({"n": applied, "seconds": spent, "made_s": made, "window": window,
                      "first": window / first, "last": window / last,
                      "rss_mb": own_peak_mb()}))  # fmt: skip


def _timed_apply(s: Store, batches, total: int, window: int):
    applied, spent, made, first, last = 0, 0.0, 0.0, 0.0, 0.0
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        t1 = time.perf_counter()
        made += t1 - t0
        if batch is None:
            break
        applied += s.apply_changes(batch).applied
        took = time.perf_counter() - t1
        spent += took
        if applied <= window:
            first += took
        if applied > total - window:
            last += took
    return spent, first, last, made, applied


def bench_curve(workdir: Path, redis_url: str, sizes: list[int]) -> None:
    """The apply rate and the applying process's own peak RSS (VmHWM: see
    proc_peak; a parent's peak would leak into ru_maxrss) at each size, each in
    a fresh process and store."""
    print("apply rate by size (only apply_changes timed; test data made and signed apart):")
    for total in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--curve-child", str(total), str(workdir), redis_url],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout)
        w = f"{r['window'] // 1000}k"
        print(
            f"  {r['n']:>9,} changes  {r['n'] / r['seconds']:>7,.0f}/s  first {w} "
            f"{r['first']:>7,.0f}/s  last {w} {r['last']:>7,.0f}/s  last/first "
            f"{r['last'] / r['first']:.2f} (goal >= 0.8)  peak RSS {r['rss_mb']:.0f} MB  "
            f"(making the data: {r['made_s']:.0f} s, not timed)"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller runs (for CI)")
    ap.add_argument("--huge", action="store_true", help="the size curve goes on to 5M changes")
    ap.add_argument("--curve-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.curve_child:
        total, workdir, url = args.curve_child
        curve_child(Path(workdir), url, int(total))
        return
    scale = 10 if args.quick else 1
    with tempfile.TemporaryDirectory(prefix="edgesync-bench-") as tmp:
        workdir = Path(tmp)
        server = LocalRedis(workdir / "redis").start()
        try:
            python = sys.version.split()[0]
            print(f"edgesync store benchmark ({os.cpu_count()} cores, python {python})")
            bench_local_writes(workdir, server.url, 20_000 // scale, "normal")
            bench_local_writes(workdir, server.url, 4_000 // scale, "full")
            bench_apply(workdir, server.url, 100 // scale)
            bench_curve(workdir, server.url, curve_sizes(args.quick, args.huge))
        finally:
            server.stop()
    print(f"the benchmark process's own peak RSS (test data included): {own_peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
