"""Synthetic users of the farms, over HTTP through each farm's balancer: several
clients per farm, each at a fixed rate, reading pages by slug and creating
pages with an Idempotency-Key, on kept-alive connections as a browser or an
app keeps them. ``edgectl users -- COMMAND`` runs them around a command (a
rollout) and says what the users saw; the update cycle's tests use the same
clients.

The clients run in a process of their own (``python -m edgectl.users
SETTINGS LOG STOP``), so that what starts them does not disturb their timings,
until the STOP file appears. SETTINGS (JSON): {"farms": {FARM: URL},
"slugs": {FARM: [slug, ...]}, "token": T, "clients": N, "rate": requests a
second per client, "writes_every": K (one request in K is a write),
"timeout_s": S}. LOG gets one JSON line per request: the time it started,
farm, kind (read/write), HTTP status (0: no answer in time), milliseconds, the
ID a write was acknowledged with or why the request failed, and any
Retry-After.

A request fails when it gets anything but 200 (a read) or 201 (a write), or
no answer within the timeout: the users' view, so a 503 during a rollout is a
failure here even though it is a clean one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

from edgesync import farms

from .errors import UsageError

CLIENTS = 4  # per farm
RATE = 5.0  # requests a second per client
WRITES_EVERY = 4  # one request in four is a write
TIMEOUT_S = 10.0  # the clients' own: no request waits longer


def _client(farm: str, url: str, number: int, settings: dict, log, lock, stop: str) -> None:
    slugs, every = settings["slugs"][farm], settings["writes_every"]
    period = 1 / settings["rate"]
    auth = {"authorization": f"Bearer {settings['token']}"}
    n = number  # the clients of a farm start at different requests
    with httpx.Client(base_url=url, timeout=settings["timeout_s"], trust_env=False) as http:
        next_at = time.monotonic()
        while not os.path.exists(stop):
            began, clock = time.time(), time.monotonic()
            write = n % every == 0
            try:
                if write:
                    key = {"idempotency-key": str(uuid.uuid4()), **auth}
                    body = {"section": f"users {farm}", "title": f"client {number} write {n}"}
                    res = http.post("/v1/pages", json=body, headers=key)
                    done = res.json().get("id", "") if res.status_code == 201 else res.text[:160]
                else:
                    res = http.get("/v1/pages", params={"slug": slugs[n % len(slugs)]})
                    done = "" if res.status_code == 200 else res.text[:160]
                status, retry_after = res.status_code, res.headers.get("retry-after")
            except httpx.HTTPError as exc:
                status, done, retry_after = 0, f"{type(exc).__name__}: {exc}"[:160], None
            entry = {"t": began, "farm": farm, "kind": "write" if write else "read",
                     "status": status, "ms": round((time.monotonic() - clock) * 1000, 2),
                     "x": done, "retry_after": retry_after}  # fmt: skip
            with lock:
                log.write(json.dumps(entry) + "\n")
            n += 1
            next_at += period  # a fixed rate: a slow answer does not slow the next request
            time.sleep(max(0.0, next_at - time.monotonic()))


def serve(settings_file: str, log_file: str, stop: str) -> int:
    """The clients, until ``stop`` exists."""
    settings = json.loads(Path(settings_file).read_text())
    lock = threading.Lock()
    with open(log_file, "a", buffering=1) as log:
        threads = [
            threading.Thread(target=_client, args=(farm, url, i, settings, log, lock, stop))
            for farm, url in settings["farms"].items()
            for i in range(settings["clients"])
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return 0


class Users:
    """The clients as a process: start them, stop them, read what they saw."""

    def __init__(self, workdir: Path, farms: dict[str, str], slugs: dict[str, list[str]],
                 token: str, clients: int = CLIENTS, rate: float = RATE,
                 writes_every: int = WRITES_EVERY, timeout_s: float = TIMEOUT_S):  # fmt: skip
        self.workdir = workdir
        self.settings = {"farms": farms, "slugs": slugs, "token": token, "clients": clients,
                         "rate": rate, "writes_every": writes_every,
                         "timeout_s": timeout_s}  # fmt: skip
        self.log = workdir / "users.log"
        self.stop_file = workdir / "users.stop"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        path = self.workdir / "users.json"
        path.write_text(json.dumps(self.settings))
        self.stop_file.unlink(missing_ok=True)
        self.log.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgectl.users", str(path), str(self.log), str(self.stop_file)]
        )

    def stop(self) -> list[dict]:
        """Stop the clients (each finishes the request it is in); every request's entry."""
        self.stop_file.touch()
        if self.proc is None or self.proc.wait(self.settings["timeout_s"] * 3) != 0:
            raise RuntimeError("the users' HTTP clients failed")
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def figures(entries: list[dict], window: tuple[float, float]) -> dict[str, dict]:
    """Per farm: requests, failed reads and writes, p99 (ms) before ``window``
    (start, end: the command's run) and during it, the IDs writes were
    acknowledged with, and the failures' reasons with their counts."""
    out: dict[str, dict] = {}
    began, ended = window
    for e in entries:
        farm = out.setdefault(e["farm"], {"requests": 0, "failed_reads": 0, "failed_writes": 0,
                                          "before": [], "during": [], "acked": set(),
                                          "why": {}})  # fmt: skip
        farm["requests"] += 1
        if e["status"] != (201 if e["kind"] == "write" else 200):
            farm[f"failed_{e['kind']}s"] += 1
            why = f"{e['status']} {e['x'][:80]}"
            farm["why"][why] = farm["why"].get(why, 0) + 1
        elif e["kind"] == "write":
            farm["acked"].add(e["x"])
        if e["t"] < began:
            farm["before"].append(e["ms"])
        elif e["t"] <= ended:
            farm["during"].append(e["ms"])
    for farm in out.values():
        farm["p99_before"] = p99(farm.pop("before"))
        farm["p99_during"] = p99(farm.pop("during"))
    return out


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def table(figs: dict[str, dict], present: set[str], settings: dict) -> list[str]:
    """The users' view, farm by farm, with the goals beside it."""
    s = settings
    lines = [
        f"users through the balancers ({s['clients']} clients a farm, {s['rate']:g} "
        f"requests/s each, one write in {s['writes_every']}):",
        f"  {'farm':8s} {'requests':>8s} {'failed':>7s} {'p99 before':>11s} "
        f"{'p99 during':>11s} {'ratio':>6s} {'writes acked':>12s} {'present':>8s}",
    ]
    for farm, f in sorted(figs.items()):
        ratio = f["p99_during"] / f["p99_before"] if f["p99_before"] else float("nan")
        failed = f["failed_reads"] + f["failed_writes"]
        lines.append(f"  {farm:8s} {f['requests']:8d} {failed:7d} {f['p99_before']:8.1f} ms "
                     f"{f['p99_during']:8.1f} ms {ratio:5.1f}x {len(f['acked']):12d} "
                     f"{len(f['acked'] & present):8d}")  # fmt: skip
        for why, n in sorted(f["why"].items(), key=lambda kv: -kv[1])[:3]:
            lines.append(f"    {n} failed: {why}")
    lines.append("  goals: 0 failed, p99 during <= 2x before, every acknowledged write present")
    return lines


# -- around a command, on a fleet (edgectl users) --------------------------------------

PAGES = 4  # pages per farm the users read by slug


class Fleet:
    """What the users need of a fleet: its farms' balancers and master over
    HTTP, a token, and sync rounds (an edgectl.run.Ansible and the inventory's
    listing)."""

    def __init__(self, ansible, listing: dict, fleet: list[dict]):
        self.ansible = ansible
        hostvars = listing.get("_meta", {}).get("hostvars", {})
        some = hostvars[fleet[0]["host"]] if fleet else {}
        self.balancers = farms.balancers(fleet, some.get("edgesync_balancers"))
        if not self.balancers:
            raise UsageError("the inventory names no balancer (edgesync_balancers): no farm "
                             "address for the users")  # fmt: skip
        self.master = next((h["host"] for h in fleet if h["role"] == "master"), None)
        tokens = some.get("api_tokens") or {}
        if not tokens or self.master is None:
            raise UsageError("the users need the inventory's api_tokens and a master")
        self.token = next(iter(tokens.values()))
        self.master_port = hostvars[self.master].get("api_port", some["edgesync_http_port"])
        self.addresses = self._addresses({b["host"] for b in self.balancers} | {self.master})

    def _addresses(self, hosts: set[str]) -> dict[str, str]:
        """Each host's own address, as its network facts give it."""
        pattern = ":".join(sorted(hosts))
        args = "gather_subset=!all,!min,network filter=ansible_default_ipv4"
        got = self.ansible.module(pattern, "ansible.builtin.setup", args)
        out = {}
        for host in hosts:
            facts = (got.results.get(host) or {}).get("ansible_facts", {})
            address = (facts.get("ansible_default_ipv4") or {}).get("address")
            if not address:
                raise UsageError(f"{host}: its address could not be read (is it up?)")
            out[host] = address
        return out

    def farm_urls(self) -> dict[str, str]:
        urls = {}
        for b in self.balancers:
            address = (
                b["address"] if b["address"] not in farms.WILDCARDS else self.addresses[b["host"]]
            )
            urls[b["farm"]] = f"http://{address}:{b['port']}"
        return urls

    def master_url(self) -> str:
        return f"http://{self.addresses[self.master]}:{self.master_port}"

    def sync(self) -> None:
        result = self.ansible.playbook("sync.yml")
        if not result.ok:
            raise RuntimeError(f"a sync round failed: {'; '.join(result.failures)[:300]}")


def seed(fleet: Fleet, urls: dict[str, str], http: httpx.Client) -> dict[str, list[str]]:
    """Pages for the users to read, made through each farm's balancer and
    synced until every edge of the farm serves them: their slugs."""
    auth = {"authorization": f"Bearer {fleet.token}"}
    slugs: dict[str, list[str]] = {}
    for farm, url in urls.items():
        for i in range(PAGES):
            body = {"section": f"users {farm}", "title": f"page {i} to read"}
            res = http.post(f"{url}/v1/pages", json=body, headers=auth)
            if res.status_code != 201:
                raise RuntimeError(f"farm {farm}: a page to read could not be made: "
                                   f"{res.status_code} {res.text[:200]}")  # fmt: skip
            slugs.setdefault(farm, []).append(res.json()["slug"])
    for _ in range(3):
        fleet.sync()
        held = all(http.get(f"{urls[farm]}/v1/pages", params={"slug": slug}).status_code == 200
                   for farm in urls for slug in slugs[farm] for _ in range(4))  # fmt: skip
        if held:
            return slugs
    raise RuntimeError("the pages to read did not reach every edge of their farm")


def present_at(url: str, ids: set[str], http: httpx.Client) -> set[str]:
    """Those of ``ids`` the host at ``url`` holds."""
    return {rid for rid in sorted(ids) if http.get(f"{url}/v1/pages/{rid}").status_code == 200}


def around(fleet: Fleet, command: list[str], workdir: Path, before_s: float,
           **settings) -> tuple[int, dict, set[str]]:  # fmt: skip
    """Users through every farm's balancer for ``before_s`` seconds, then
    while ``command`` runs; then sync rounds until what they wrote reached the
    master. The command's exit code, the figures, and the acknowledged
    writes the master holds."""
    urls = fleet.farm_urls()
    with httpx.Client(timeout=TIMEOUT_S, trust_env=False) as http:
        users = Users(workdir, urls, seed(fleet, urls, http), fleet.token, **settings)
        users.start()
        try:
            time.sleep(before_s)
            began = time.time()
            rc = subprocess.run(command).returncode
            ended = time.time()
        finally:
            entries = users.stop()
        figs = figures(entries, (began, ended))
        acked = {rid for f in figs.values() for rid in f["acked"]}
        present: set[str] = set()
        for _ in range(3):  # a round carries an edge's writes to the master
            fleet.sync()
            present = present_at(fleet.master_url(), acked, http)
            if present == acked:
                break
    return rc, figs, present


if __name__ == "__main__":
    sys.exit(serve(*sys.argv[1:4]))
