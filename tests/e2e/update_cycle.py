"""The update cycle: a fleet at the previous release rolled to this one by
upgrade.yml while writers run on every host and a reader on every farm.

Writers and readers run on the hosts as the agent's user, with the release
that `current` names: each operation opens the agent, as a command would, and
when `current` moves to another release the process starts again on it (an
application restarted by the rollout). Each operation is logged with its time,
so a host's downtime is the longest span in which it refused a write, and a
farm's serving edges at any moment are those not inside such a span.
"""

from __future__ import annotations

import json
import textwrap
import time
from typing import ClassVar

from edgectl import users

# Runs on a host: `write` a record, or `read` one back, RATE times a second
# until told to stop; each attempt is logged `TIME ok ID` or `TIME err WHY`.
AGENT_LOOP = textwrap.dedent("""
    import os, sys, time
    mode, base, rate, config, root, arg = sys.argv[1:7]
    release = os.readlink(root + "/current")
    from edgesync.agent import open_store
    n = sum(1 for _ in open(base + ".log")) if os.path.exists(base + ".log") else 0
    with open(base + ".log", "a", buffering=1) as log:
        while not os.path.exists(base + ".stop"):
            if os.readlink(root + "/current") != release:  # the rollout switched it
                log.close()
                python = root + "/current/bin/python"
                os.execv(python, [python, *sys.argv])
            began = time.time()
            try:
                store = open_store(config, warn=lambda m: None)
                try:
                    store.check_schema()
                    if mode == "write":
                        done = store.put("pages", {"title": f"{arg} {n}"})["id"]
                    else:
                        done = store.get("pages", arg)["id"]
                finally:
                    store.close()
            except Exception as exc:  # refused: not acknowledged
                log.write(f"{began:.3f} err {type(exc).__name__}: {str(exc)[:120]}\\n")
            else:
                log.write(f"{began:.3f} ok {done}\\n")
            n += 1
            time.sleep(max(0.0, 1 / float(rate) - (time.time() - began)))
    open(base + ".done", "w").close()
""")


def longest_gap(events: list[tuple[float, bool]], end: float) -> float:
    """The longest span from a failed attempt to the next one that succeeded."""
    longest, down_since = 0.0, None
    for t, ok in events:
        if not ok and down_since is None:
            down_since = t
        elif ok and down_since is not None:
            longest, down_since = max(longest, t - down_since), None
    if down_since is not None:
        longest = max(longest, end - down_since)
    return longest


def down_spans(events: list[tuple[float, bool]], end: float) -> list[tuple[float, float]]:
    spans, down_since = [], None
    for t, ok in events:
        if not ok and down_since is None:
            down_since = t
        elif ok and down_since is not None:
            spans.append((down_since, t))
            down_since = None
    if down_since is not None:
        spans.append((down_since, end))
    return spans


def fewest_serving(edges: int, spans: list[list[tuple[float, float]]]) -> int:
    """The fewest of a farm's ``edges`` serving at any moment, given each edge's down spans."""
    marks = sorted([(a, -1) for s in spans for a, _ in s] + [(b, 1) for s in spans for _, b in s])
    serving = fewest = edges
    for _t, change in marks:  # at equal times, going down is counted first (the worse reading)
        serving += change
        fewest = min(fewest, serving)
    return fewest


class Cycle:
    """The writers and readers of the update cycle on a Fleet, and their figures."""

    # Writes a second by role, and reads a second on one edge per farm.
    WRITE_RATE: ClassVar[dict[str, int]] = {"edge": 10, "node": 2, "master": 2}
    READ_RATE = 10

    def __init__(self, fleet, say):
        self.fleet = fleet
        self.say = say
        self.plan = fleet.plan
        self.farms: dict[str, list[str]] = {}
        for p in self.plan:
            if p["role"] == "edge":
                self.farms.setdefault(p["farm"], []).append(p["host"])
        self.readers = {farm: hosts[0] for farm, hosts in self.farms.items()}

    def _start(self, host: str, mode: str, base: str, rate: float, arg: str) -> None:
        f = self.fleet
        user, config = f.facts["edgesync_user"], f.facts["edgesync_config_path"]
        root = f.facts["edgesync_root"]
        loop = f"{f.python} /tmp/agent_loop.py {mode} {base} {rate} {config} {root} {arg}"
        f.run(host, "sh", "-c", f"rm -f {base}.stop {base}.done {base}.log; setsid nohup "
              f"runuser -u {user} -- {loop} >{base}.out 2>&1 &")  # fmt: skip

    def start(self, phase: str) -> None:
        """A writer on every host, a reader on one edge of every farm."""
        self.phase = phase
        self.began = time.time()
        for host in self.fleet.hosts:
            self.fleet.run(host, "sh", "-c", "cat > /tmp/agent_loop.py", input=AGENT_LOOP)
        for p in self.plan:
            self._start(p["host"], "write", f"/tmp/{phase}-write", self.WRITE_RATE[p["role"]],
                        p["host"])  # fmt: skip
        for host in self.readers.values():
            probe = self.fleet.agent_json(host, "put", "pages", "--data",
                                          f'{{"title": "read me on {host}"}}')["id"]  # fmt: skip
            self._start(host, "read", f"/tmp/{phase}-read", self.READ_RATE, probe)

    def stop(self) -> dict:
        """Stop them all; each host's writes and reads as [(time, ok, id-or-why)]."""
        phase, f = self.phase, self.fleet
        self.ended = time.time()
        bases = [(h, f"/tmp/{phase}-write") for h in f.hosts]
        bases += [(h, f"/tmp/{phase}-read") for h in self.readers.values()]
        for host, base in bases:
            f.run(host, "touch", f"{base}.stop")
        logs: dict = {"write": {}, "read": {}}
        for host, base in bases:
            deadline = time.monotonic() + 60
            while f.run(host, "test", "-e", f"{base}.done", check=False).returncode:
                out = f.run(host, "cat", f"{base}.out", check=False).stdout
                assert time.monotonic() < deadline, f"{host}: {base} did not stop: {out}"
                time.sleep(0.5)
            lines = f.run(host, "cat", f"{base}.log").stdout.splitlines()
            entries = [line.split(" ", 2) for line in lines]
            logs[base.rsplit("-", 1)[1]][host] = [(float(t), s == "ok", x) for t, s, x in entries]
        return logs

    def figures(self, logs: dict) -> dict:
        """Per-host downtime, fewest serving edges per farm, writes and reads."""
        end = self.ended
        writes = logs["write"]
        downtime = {h: longest_gap([(t, ok) for t, ok, _ in ev], end) for h, ev in writes.items()}
        spans = {h: down_spans([(t, ok) for t, ok, _ in ev], end) for h, ev in writes.items()}
        serving = {farm: fewest_serving(len(hosts), [spans[h] for h in hosts])
                   for farm, hosts in self.farms.items()}  # fmt: skip
        acked = {x for ev in writes.values() for _t, ok, x in ev if ok}
        reads = {h: (sum(ok for _t, ok, _x in ev), sum(not ok for _t, ok, _x in ev),
                     longest_gap([(t, ok) for t, ok, _ in ev], end))
                 for h, ev in logs["read"].items()}  # fmt: skip
        made = sum(len(ev) for ev in writes.values())
        refused = {h: sorted({x.split(":")[0] for _t, ok, x in ev if not ok})
                   for h, ev in writes.items()}  # fmt: skip
        return {"downtime": downtime, "serving": serving, "acked": acked, "made": made,
                "reads": reads, "refused": refused}  # fmt: skip


class FarmUsers:
    """The farms' users during the update cycle (edgectl.users' clients, as
    ``edgectl users`` runs them): several clients per farm through the farm's
    balancer, reading pages by slug (pages every edge holds before they start)
    and creating pages with an Idempotency-Key, at a fixed rate."""

    PAGES = 8  # read by slug

    def __init__(self, fleet, workdir, farms: list[str] | None = None):
        self.fleet = fleet
        self.workdir = workdir
        self.urls = {b["farm"]: fleet.balancer_url(b["farm"]) for b in fleet.balancers()
                     if farms is None or b["farm"] in farms}  # fmt: skip
        self.users: users.Users | None = None

    def seed(self) -> list[str]:
        """Pages made on the master and synced until every edge holds them: their slugs."""
        f = self.fleet
        master = next(p["host"] for p in f.plan if p["role"] == "master")
        made = [f.agent_json(master, "put", "pages", "--data",
                             json.dumps({"section": "read", "title": f"page {i} for the farms"}))
                for i in range(self.PAGES)]  # fmt: skip
        wanted = {r["id"] for r in made}
        edges = [p["host"] for p in f.plan if p["role"] == "edge"]
        for _ in range(4):
            f.sync_round()
            if all(wanted <= f.ids(e) for e in edges):
                return [r["slug"] for r in made]
        missing = {e: len(wanted - f.ids(e)) for e in edges}
        raise AssertionError(f"the pages to read did not reach every edge: {missing}")

    def start(self) -> None:
        slugs = self.seed()
        token = self.fleet.api_token(next(iter(self.fleet.hosts)))
        self.users = users.Users(self.workdir, self.urls, dict.fromkeys(self.urls, slugs), token)
        self.users.start()

    def stop(self) -> list[dict]:
        """Stop the clients (each finishes the request it is in); every request's entry."""
        return self.users.stop()
