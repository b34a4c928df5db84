"""The farm's balancer: the distribution's HAProxy, configured by
roles/balancer's template, in front of two real edgesync-http processes of one
farm. What users of the farm's address see while an edge is drained, killed,
or every edge is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import jinja2
import pytest
import yaml
from httpnode import HttpNode, free_port
from test_http import make_nodes

from edgesync.config import load as load_config

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "balancer"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def render(name: str, values: dict) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["default"] = lambda value, fallback="": fallback if isinstance(
        value, jinja2.Undefined) else value  # fmt: skip
    return env.from_string((ROLE / "templates" / name).read_text()).render(**values)


class Balancer:
    """HAProxy run in the foreground with the role's configuration for ``backends``."""

    def __init__(self, root: Path, backends: dict[str, int]):
        self.port, self.stats_port = free_port(), free_port()
        self.socket = root / "haproxy.sock"
        values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
        values.update(
            balancer_farm="a",
            balancer_bind_address="127.0.0.1",
            balancer_port=self.port,
            balancer_stats_port=self.stats_port,
            balancer_socket=str(self.socket),
            balancer_errorfile_503=str(root / "503.http"),
            balancer_check_ms=200,
            balancer_backends=[
                {"name": name.lower(), "address": "127.0.0.1", "port": port}
                for name, port in backends.items()
            ],  # fmt: skip
        )
        (root / "503.http").write_text(render("503.http.j2", values))
        self.config = root / "haproxy.cfg"
        self.config.write_text(render("haproxy.cfg.j2", values))
        self.log = root / "haproxy.log"
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def check(self) -> subprocess.CompletedProcess:
        return subprocess.run([HAPROXY, "-c", "-f", str(self.config)],
                              capture_output=True, text=True, timeout=30)  # fmt: skip

    def start(self) -> Balancer:
        command = [HAPROXY, "-W", "-db", "-f", str(self.config)]
        self.proc = subprocess.Popen(command, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.socket.exists() and self.up() == 2:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"haproxy did not see its edges up: {self.log.read_text()[-2000:]}")

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """Each edge's state as HAProxy's statistics give it (UP, DOWN, DRAIN, ...)."""
        rows = self.command("show stat").splitlines()
        head = rows[0].lstrip("# ").split(",")
        out = {}
        for row in rows[1:]:
            cells = dict(zip(head, row.split(","), strict=False))
            if cells.get("pxname") == "edges" and cells.get("svname") not in ("BACKEND", None):
                out[cells["svname"]] = cells["status"]
        return out

    def up(self) -> int:
        return sum(1 for s in self.states().values() if s == "UP")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def farm(tmp_path, redis_server):
    paths = make_nodes(tmp_path, redis_server.url)
    edges = {name: HttpNode(path).start() for name, path in paths.items()}
    balancer = Balancer(tmp_path, {name: edge.port for name, edge in edges.items()})
    assert balancer.check().returncode == 0, balancer.check().stdout
    balancer.start()
    yield balancer, edges
    balancer.stop()
    for edge in edges.values():
        edge.stop()


def kill_tree(pid: int) -> None:
    """SIGKILL to a process and every process under it (granian's workers)."""
    pids, todo = [], [pid]
    while todo:
        one = todo.pop()
        pids.append(one)
        for task in Path(f"/proc/{one}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(kid) for kid in (task / "children").read_text().split()]
    for one in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(one, signal.SIGKILL)


def served_by(client: httpx.Client, n: int) -> dict[str, int]:
    seen: dict[str, int] = {}
    for _ in range(n):
        res = client.get("/healthz")
        assert res.status_code == 200, res.text
        node = res.headers["edgesync-node"]
        seen[node] = seen.get(node, 0) + 1
    return seen


def test_the_role_s_configuration_is_valid_and_a_broken_one_is_refused(tmp_path):
    balancer = Balancer(tmp_path, {"EDGE01": 1, "EDGE02": 2})
    assert balancer.check().returncode == 0
    balancer.config.write_text(balancer.config.read_text().replace("balance roundrobin",
                                                                   "balance nonsense"))  # fmt: skip
    res = balancer.check()
    assert res.returncode != 0 and "balance only supports" in res.stdout + res.stderr


def test_users_are_spread_over_the_farm_and_a_drained_edge_gets_none(farm):
    balancer, _edges = farm
    with httpx.Client(base_url=balancer.url, timeout=10) as client:
        assert set(served_by(client, 20)) == {"EDGE01", "EDGE02"}
        balancer.command("set server edges/edge01 state drain")
        assert balancer.states()["edge01"] == "DRAIN"
        assert served_by(client, 20) == {"EDGE02": 20}
        balancer.command("set server edges/edge01 state ready")
        assert set(served_by(client, 20)) == {"EDGE01", "EDGE02"}


def test_an_edge_ready_no_more_leaves_the_farm_and_comes_back(farm):
    balancer, edges = farm
    draining = load_config(str(edges["EDGE01"].config)).data_dir / "draining"
    draining.touch()  # its /readyz says 503, as upgrade.yml's drain makes it
    deadline = time.monotonic() + 10
    while balancer.states()["edge01"] != "DOWN" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert balancer.states()["edge01"] == "DOWN"
    with httpx.Client(base_url=balancer.url, timeout=10) as client:
        assert served_by(client, 10) == {"EDGE02": 10}
        draining.unlink()
        while balancer.states()["edge01"] != "UP" and time.monotonic() < deadline + 10:
            time.sleep(0.1)
        assert set(served_by(client, 20)) == {"EDGE01", "EDGE02"}


def test_an_edge_killed_under_load_fails_no_read(farm):
    """Readers on kept-alive connections while edge01 dies without a goodbye:
    HAProxy sends what edge01 no longer answers to edge02. (Writes through a
    dying edge are not yet here: on kept-alive connections about one POST in a
    thousand is closed by the balancer without an answer; see issue "farms
    behind a load balancer".)"""
    balancer, edges = farm
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def reader() -> None:
        with httpx.Client(base_url=balancer.url, timeout=10) as client:
            while not stop.is_set():
                try:
                    res = client.get("/v1/pages?limit=5")
                except httpx.HTTPError as exc:  # a failure too: count it
                    results.append((0, repr(exc)))
                    continue
                results.append((res.status_code, res.headers.get("edgesync-node", "")))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    kill_tree(edges["EDGE01"].proc.pid)  # no goodbye: its connections just end
    edges["EDGE01"].proc.wait(10)
    time.sleep(2.5)
    stop.set()
    for t in threads:
        t.join(20)
    failed = [r for r in results if r[0] != 200]
    by = {node: sum(1 for r in results if r[1] == node) for node in ("EDGE01", "EDGE02")}
    print(f"\nedge01 killed under load: {len(results)} reads ({by}), {len(failed)} failed")
    assert failed == [], failed[:5]
    assert by["EDGE01"] > 20 and by["EDGE02"] > 20
    assert balancer.states()["edge01"] == "DOWN"


def test_a_farm_with_no_edge_left_answers_503_with_retry_after_at_once(farm):
    balancer, edges = farm
    for edge in edges.values():
        edge.stop()
    deadline = time.monotonic() + 10
    while balancer.up() and time.monotonic() < deadline:
        time.sleep(0.1)
    started = time.monotonic()
    res = httpx.get(f"{balancer.url}/v1/pages?limit=1", timeout=10)
    took = time.monotonic() - started
    assert res.status_code == 503 and res.headers["retry-after"] == "1"
    assert json.loads(res.text)["detail"].startswith("no edge of farm a")
    assert took < 5, took
