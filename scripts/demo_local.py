"""A local demonstration: an edge takes writes, a master catches up, digests agree.

Everything lives in ./demo (made afresh each run), with a private redis-server
on a loopback port. Each step is the `edgesync` command a user would type.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from edgesync import localfleet
from edgesync.localredis import LocalRedis

ROOT = Path(__file__).resolve().parent.parent / "demo"
# name: (role, farm, trusted)
FLEET = {
    "MASTER01": ("master", None, []),
    "NODE01": ("node", None, ["MASTER01", "EDGE01", "EDGE02"]),
    "EDGE01": ("edge", "lon-a", []),
    "EDGE02": ("edge", "lon-a", []),
}


def edgesync(config: Path, *args: str, show: bool = True, expect: int = 0) -> str:
    cmd = ["edgesync", "--config", config.name, *args]
    if show:
        print("$ " + " ".join(a if " " not in a and "{" not in a else f"'{a}'" for a in cmd))
    res = subprocess.run(
        [sys.executable, "-m", "edgesync", "--config", str(config), *args],
        capture_output=True,
        text=True,
    )
    if res.returncode != expect:
        sys.exit(f"demo: edgesync {' '.join(args)} exited {res.returncode}: {res.stderr.strip()}")
    if show:
        print((res.stdout + res.stderr).rstrip())
    return res.stdout


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    redis = LocalRedis(ROOT / "redis").start()
    try:
        cfg = localfleet.write(ROOT, FLEET, redis.url)
        print(f"# demo in {ROOT}: a master, a node and two edges of farm lon-a")
        print(f"# (one private redis-server on 127.0.0.1:{redis.port})\n")
        for name in FLEET:
            edgesync(cfg[name], "init", show=False)
        localfleet.share_keys(ROOT, FLEET)  # every agent checks every change's signature
        made = []
        for edge, section, title in [
            ("EDGE01", "admin", "Example Page"),
            ("EDGE01", "news", "Ünïcödé Páge"),
            ("EDGE02", "news", "Edge servers cut latency"),
        ]:
            data = json.dumps(
                {"section": section, "title": title, "body": f"About {title}."}, ensure_ascii=False
            )
            made.append(json.loads(edgesync(cfg[edge], "put", "pages", "--data", data)))
        edgesync(cfg["EDGE01"], "get", "pages", "--slug", made[0]["slug"])
        edgesync(cfg["EDGE01"], "status")

        print("\n# an edge may not push to the master: the topology refuses it")
        edgesync(cfg["EDGE01"], "push", "MASTER01", expect=3)

        print("\n# the allowed path: edge -> farm peer, node pulls its edges, node -> master")
        edgesync(cfg["EDGE01"], "push", "EDGE02")
        edgesync(cfg["NODE01"], "pull", "EDGE02")
        edgesync(cfg["NODE01"], "push", "MASTER01")
        edgesync(cfg["NODE01"], "push", "EDGE01")
        edgesync(cfg["MASTER01"], "get", "pages", made[2]["id"])
        edgesync(cfg["MASTER01"], "status", "--json")

        print("\n# every node holds the same records:")
        digests = {name: edgesync(cfg[name], "digest", show=False).strip() for name in FLEET}
        for name, digest in digests.items():
            print(f"  {name:9s} {digest}")
        print("digests equal:", len(set(digests.values())) == 1)
        if len(set(digests.values())) != 1:
            sys.exit(1)
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
