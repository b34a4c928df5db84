"""Show the local fleet syncing and serving: a record made on every edge; a
page written through edge01's HTTP API and read at once from edge02 with its
bookmark, the content editor's page of it from an edge; one sync round
(edgectl sync), every record found at the master and the page read by its
slug at each farm's address (its balancer, spreading users over its edges);
the fleet's status, its graph, and edgectl verify proving every host holds
the same content."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EDGES = {"edge01": "lxd", "edge02": "docker", "edge03": "lxd", "edge04": "docker"}
# The agent's user, command and config: the facts every role shares.
FACTS = yaml.safe_load((ROOT / "playbooks/group_vars/all/edgesync.yml").read_text())
# The local fleet's name: its LXD project and the first part of its containers' names.
FLEET = yaml.safe_load((ROOT / "inventory/local/group_vars/all.yml").read_text())["fleet_name"]
AGENT = ["runuser", "-u", FACTS["edgesync_user"], "--", FACTS["edgesync_agent"],
         "--config", FACTS["edgesync_config_path"]]  # fmt: skip


def agent(host: str, provider: str, *args: str) -> str:
    where = (["lxc", "exec", f"{FLEET}-{host}", "--project", FLEET, "--"]
             if provider == "lxd" else ["docker", "exec", f"{FLEET}-{host}"])  # fmt: skip
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
    made["edge01 API"] = serve()
    edgectl("sync")
    print("\n== at the master")
    for record in made.values():
        got = json.loads(agent("master01", "lxd", "get", "pages", record["id"]))
        print(f"  {got['id']}  {got['title']!r}")
    at_the_farms(made["edge01 API"])
    edgectl("status")
    edgectl("graph", "-o", str(ROOT / "build" / "fleet"))
    sys.exit(edgectl("verify", check=False))


def api_url(host: str) -> str:
    """Where the controller reaches the host's HTTP face: its address as
    roles/access noted it, the port every host's API listens on."""
    admin = os.environ.get("EDGESYNC_ADMIN_DIR") or Path.home() / ".local/state/edgesync"
    conf = (Path(admin) / "hosts.d" / f"{FLEET}-{host}.conf").read_text()
    return f"http://{conf.split('HostName ', 1)[1].split()[0]}:{FACTS['edgesync_http_port']}"


HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(method: str, url: str, body: dict | None = None, **headers: str):
    """(status, headers, body text, milliseconds) of one HTTP request."""
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    named = {k.replace("_", "-"): v for k, v in headers.items()}
    req = urllib.request.Request(url, data=data, method=method, headers=named)
    started = time.perf_counter()
    try:
        with HTTP.open(req, timeout=10) as resp:
            status, got, text = resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, got, text = exc.code, exc.headers, exc.read().decode()
    return status, got, text, (time.perf_counter() - started) * 1000


def serve() -> dict:
    """The HTTP face: a write on edge01, read at once on edge02 (same farm) by
    its bookmark, and the editor's page of it; the record written."""
    inventory = yaml.safe_load((ROOT / "inventory/local/group_vars/all.yml").read_text())
    token = next(iter(inventory["api_tokens"].values()))
    print("\n== the HTTP face (edgesync-http on every host)")
    one, two = api_url("edge01"), api_url("edge02")
    page = {"section": "admin", "title": "Example Page", "body": "served from the edge"}
    auth = {"Authorization": f"Bearer {token}", "Idempotency_Key": "demo-1"}
    status, headers, text, ms = call("POST", f"{one}/v1/pages", page, **auth)
    if status != 201:
        sys.exit(f"demo: POST {one}/v1/pages answered {status}: {text}")
    record, bookmark = json.loads(text), headers["Edgesync-Bookmark"]
    print(f"  POST {one}/v1/pages -> {status} in {ms:.0f} ms, {headers['Location']}, "
          f"Edgesync-Bookmark: {bookmark}")  # fmt: skip
    url = f"{two}/v1/pages/{record['id']}"
    status, _, text, ms = call("GET", url, Edgesync_Bookmark=bookmark)
    print(f"  GET {url} with that bookmark -> {status} in {ms:.0f} ms "
          f"(edge02 pulled from edge01 first): {json.loads(text).get('title')!r}")  # fmt: skip
    url = f"{two}/admin/content-editor/page/{record['slug']}"
    status, headers, text, ms = call("GET", url)
    title = text.split("<title>", 1)[-1].split("</title>", 1)[0] if status == 200 else text
    print(f"  GET {url} -> {status} in {ms:.0f} ms, {headers['Content-Type']}: {title!r}")
    if status != 200:
        sys.exit(f"demo: the editor's page answered {status}")
    return record


def at_the_farms(record: dict) -> None:
    """The page read by its slug at each farm's address, as its users reach it:
    the farm's balancer (HAProxy on its node), which spreads them over the
    farm's edges."""
    inventory = yaml.safe_load((ROOT / "inventory/local/group_vars/all.yml").read_text())
    print("\n== each farm's address (its balancer): the page by its slug, four times")
    for farm, balancer in inventory["edgesync_balancers"].items():
        base = api_url(balancer["host"]).rsplit(":", 1)[0]
        url = f"{base}:{balancer.get('port', 80)}/v1/pages?slug={record['slug']}"
        served = []
        for _ in range(4):
            status, headers, text, ms = call("GET", url)
            if status != 200:
                sys.exit(f"demo: farm {farm}: GET {url} answered {status}: {text}")
            served.append(f"{headers['Edgesync-Node']} {ms:.0f} ms")
        print(f"  farm {farm}: GET {url} -> 200, served by {', '.join(served)}")


def edgectl(*args: str, check: bool = True) -> int:
    """Run edgectl as an operator would, its output shown as it comes."""
    print(f"\n== edgectl {' '.join(args)}", flush=True)
    rc = subprocess.run([str(Path(sys.executable).parent / "edgectl"), *args], cwd=ROOT).returncode
    if check and rc == 1 and args[0] == "status":
        return rc  # hosts needing attention are shown, not a failure of the demo
    if check and rc != 0:
        sys.exit(f"demo: edgectl {' '.join(args)} exited {rc}")
    return rc


if __name__ == "__main__":
    main()
