"""Show the local fleet syncing: a record made on every edge, one sync round
(playbooks/sync.yml), every record found at the master, every digest equal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EDGES = {"edge01": "lxd", "edge02": "docker", "edge03": "lxd", "edge04": "docker"}
# The agent's user, command and config: the facts every role shares.
FACTS = yaml.safe_load((ROOT / "playbooks/group_vars/all/edgesync.yml").read_text())
AGENT = ["runuser", "-u", FACTS["edgesync_user"], "--", FACTS["edgesync_agent"],
         "--config", FACTS["edgesync_config_path"]]  # fmt: skip


def agent(host: str, provider: str, *args: str) -> str:
    where = (["lxc", "exec", f"edgesync-{host}", "--project", "edgesync", "--"]
             if provider == "lxd" else ["docker", "exec", f"edgesync-{host}"])  # fmt: skip
    res = subprocess.run([*where, *AGENT, *args], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"demo: {host}: edgesync {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def main() -> None:
    made = {}
    for host, provider in EDGES.items():
        data = json.dumps({"section": "news", "title": f"Written on {host}", "body": "hello"})
        record = json.loads(agent(host, provider, "put", "pages", "--data", data))
        made[host] = record
        print(f"{host} ({provider}): made {record['id']}  /{record['slug']}")
    print("\n== ansible-playbook playbooks/sync.yml (one round in topology order)")
    subprocess.run(["ansible-playbook", str(ROOT / "playbooks" / "sync.yml")], check=True, cwd=ROOT)
    print("\n== at the master")
    for record in made.values():
        got = json.loads(agent("master01", "lxd", "get", "pages", record["id"]))
        print(f"  {got['id']}  {got['title']!r}")
    print("\n== digests (ansible -m edgesync_info)")
    out = subprocess.run(
        ["ansible", "masters:nodes:edges", "-m", "edgesync_info", "-o"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    digests = {}
    for line in out.stdout.splitlines():
        host, _, rest = line.partition(" | SUCCESS => ")
        digests[host] = json.loads(rest)["digest"]
        print(f"  {host:9s} {digests[host]}")
    equal = len(set(digests.values())) == 1
    print("digests equal:", equal)
    sys.exit(0 if equal else 1)


if __name__ == "__main__":
    main()
