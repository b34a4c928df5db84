"""The farm's balancer: the distribution's HAProxy, configured by
roles/balancer's template, in front of two real edgesync-http processes of one
farm. What users of the farm's address see while an edge is drained, killed,
or every edge is gone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import jinja2
import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from httpnode import AUTH, TOKEN, free_port, serving
from test_http import make_nodes

from edgesync import farms
from edgesync.config import load as load_config

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "balancer"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
FARM = "lon-a"
BACKEND = farms.backend(FARM)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# What edgectl status reads on a host that fronts farms: the modules' own code.
PLUGINS = REPO / "plugins"
for _util in ("edgesync_agent", "edgesync_api", "edgesync_balancer"):
    _load(f"ansible.module_utils.{_util}", PLUGINS / "module_utils" / f"{_util}.py")
reader = sys.modules["ansible.module_utils.edgesync_balancer"]
info = _load("edgesync_info", PLUGINS / "modules" / "edgesync_info.py")


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
            balancer_stats_port=self.stats_port,
            edgesync_balancer_socket=str(self.socket),
            balancer_errors_dir=str(root),
            balancer_check_ms=200,
        )
        limit = yaml.safe_load((REPO / "roles/api/defaults/main.yml").read_text())
        farm = {
            "farm": FARM, "backend": BACKEND, "address": "127.0.0.1", "port": self.port,
            "max_body_bytes": limit["api_max_body_bytes"],
            "backends": [{"name": name.lower(), "address": "127.0.0.1", "port": port}
                         for name, port in backends.items()],
        }  # fmt: skip
        values["balancer_frontends"] = [farm]
        (root / f"503-{FARM}.http").write_text(render("503.http.j2", {**values, "farm": farm}))
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
            if cells.get("pxname") == BACKEND and cells.get("svname") not in ("BACKEND", None):
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
    with serving(paths) as edges:
        balancer = Balancer(tmp_path, {name: edge.port for name, edge in edges.items()})
        assert balancer.check().returncode == 0, balancer.check().stdout
        balancer.start()
        try:
            yield balancer, edges
        finally:
            balancer.stop()


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
        balancer.command(f"set server {BACKEND}/edge01 state drain")
        assert balancer.states()["edge01"] == "DRAIN"
        assert served_by(client, 20) == {"EDGE02": 20}
        balancer.command(f"set server {BACKEND}/edge01 state ready")
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


def test_an_edge_killed_under_load_fails_no_read_and_no_idempotent_write(farm):
    """Readers and writers (POSTs with an Idempotency-Key) on kept-alive
    connections while edge01 dies without a goodbye. Without HAProxy's
    http-buffer-request, about one POST in a thousand came back as a closed
    connection or a 502 here: a request whose body had not all arrived could
    not be tried again on edge02."""
    balancer, edges = farm
    results: list[tuple[str, int, str]] = []  # (kind, status, record id)
    stop = threading.Event()

    def reader() -> None:
        with httpx.Client(base_url=balancer.url, timeout=10) as client:
            while not stop.is_set():
                try:
                    res = client.get("/v1/pages?limit=5")
                except httpx.HTTPError as exc:  # a failure too: count it
                    results.append(("read", 0, repr(exc)))
                    continue
                results.append(("read", res.status_code, ""))

    def writer() -> None:
        with httpx.Client(base_url=balancer.url, timeout=10) as client:
            while not stop.is_set():
                key = {"idempotency-key": str(uuid.uuid4()), **AUTH}
                try:
                    res = client.post("/v1/pages", json={"section": "s", "title": "t"}, headers=key)
                except httpx.HTTPError as exc:
                    results.append(("write", 0, repr(exc)))
                    continue
                rid = res.json().get("id", "") if res.status_code == 201 else res.text
                results.append(("write", res.status_code, rid))

    threads = [threading.Thread(target=f) for f in (reader, reader, writer, writer)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    kill_tree(edges["EDGE01"].proc.pid)  # no goodbye: its connections just end
    edges["EDGE01"].proc.wait(10)
    time.sleep(2.5)
    stop.set()
    for t in threads:
        t.join(20)
    failed = [r for r in results if r[1] not in (200, 201)]
    reads = sum(1 for r in results if r[0] == "read")
    writes = [r[2] for r in results if r[0] == "write" and r[1] == 201]
    print(f"\nedge01 killed under load: {reads} reads, {len(writes)} writes, {len(failed)} failed")
    assert failed == [], failed[:5]
    assert reads > 50 and len(writes) > 20
    assert balancer.states()["edge01"] == "DOWN"
    # Every acknowledged write is held by one of the two edges.
    edges["EDGE01"].start()
    held = set()
    for edge in edges.values():
        with edge.client() as client:
            for rid in writes:
                if client.get(f"/v1/pages/{rid}").status_code == 200:
                    held.add(rid)
    assert held == set(writes), f"{len(set(writes) - held)} acknowledged writes lost"


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
    assert json.loads(res.text)["detail"].startswith(f"no edge of farm {FARM} ")
    assert took < 5, took


def test_a_signed_in_editor_stays_on_their_edge_and_nobody_else_gets_a_cookie(farm):
    """Sessions live on the edge that signed the editor in: the balancer keeps
    them there by the session cookie alone (prefixed with the edge's name);
    readers of the public API get no cookie at all (their answers stay cacheable)."""
    balancer, _edges = farm
    with httpx.Client(base_url=balancer.url, timeout=10) as client:
        for _ in range(4):
            res = client.get("/v1/pages?limit=1")
            assert res.status_code == 200 and "set-cookie" not in res.headers
        form = client.get("/admin/content-editor/sign-in")
        csrf = client.cookies["edgesync_csrf"]
        assert form.status_code == 200
        form = {"token": TOKEN, "csrf": csrf, "next": "/admin/content-editor/new"}
        signed = client.post("/admin/content-editor/sign-in", data=form)
        assert signed.status_code == 303, signed.text
        sticky = signed.headers["set-cookie"]
        node = signed.headers["edgesync-node"]
        assert sticky.startswith(f"edgesync_session={node.lower()}~"), sticky
        for _ in range(10):
            res = client.get("/admin/content-editor/new")
            assert res.status_code == 200, (res.status_code, res.headers.get("location"))
            assert res.headers["edgesync-node"] == node


def _statuses(state: dict) -> dict[str, str]:
    return {edge: s["status"] for edge, s in state["backends"][BACKEND].items()}


def _until(what, want, seconds: float = 10):
    deadline = time.monotonic() + seconds
    while (got := what()) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


def test_the_modules_reader_sees_each_edge_as_haproxy_does(farm):
    """edgesync_balancer.state reads the real HAProxy's runtime API: both
    edges UP, then edge01 DRAIN then MAINT while edge02 stays UP, edge02 DOWN
    once stopped; and a socket no HAProxy answers on any more, one line."""
    balancer, edges = farm
    path = str(balancer.socket)
    first = reader.state(path)
    assert first["error"] is None and first["socket"] == path
    assert list(first["backends"]) == [BACKEND]  # not the frontends nor the stats page
    assert _statuses(first) == {"edge01": "UP", "edge02": "UP"}
    assert all(isinstance(s["sessions"], int) for s in first["backends"][BACKEND].values())
    balancer.command(f"set server {BACKEND}/edge01 state drain")
    assert _statuses(reader.state(path)) == {"edge01": "DRAIN", "edge02": "UP"}
    balancer.command(f"set server {BACKEND}/edge01 state maint")
    assert _statuses(reader.state(path)) == {"edge01": "MAINT", "edge02": "UP"}
    balancer.command(f"set server {BACKEND}/edge01 state ready")
    edges["EDGE02"].stop()
    down = {"edge01": "UP", "edge02": "DOWN"}
    assert _until(lambda: _statuses(reader.state(path)), down) == down
    balancer.stop()
    gone = reader.state(path)
    assert gone["backends"] == {} and gone["error"] in (
        f"HAProxy runtime API at {path}: connection refused (HAProxy not running?)",
        f"no HAProxy runtime API at {path} (no such socket)",  # HAProxy removed it
    )
    nowhere = str(balancer.socket.with_name("nosuch.sock"))
    assert reader.state(nowhere)["error"] == f"no HAProxy runtime API at {nowhere} (no such socket)"


def test_edgesync_info_returns_the_balancer_only_when_given_its_socket(farm, capsys):
    balancer, edges = farm
    balancer.command(f"set server {BACKEND}/edge02 state drain")
    agent = str(Path(sys.executable).parent / "edgesync")

    def run(**args) -> dict:
        params = {"config": str(edges["EDGE01"].config), "agent": agent, "user": "",
                  "http_settings": str(edges["EDGE01"].settings), "http_sample_s": 0,
                  "_ansible_check_mode": False, **args}  # fmt: skip
        with patch_module_args(params), pytest.raises(SystemExit) as done:
            info.main()
        assert done.value.code == 0
        return json.loads(capsys.readouterr().out)

    fronting = run(balancer_socket=str(balancer.socket))
    assert fronting["balancer"]["error"] is None
    assert _statuses(fronting["balancer"]) == {"edge01": "UP", "edge02": "DRAIN"}
    assert fronting["api"]["ready"] and fronting["status"]["node"] == "EDGE01"
    assert run()["balancer"] is None


def test_a_body_over_the_edges_limit_gets_their_413_through_the_balancer(farm):
    """An edge refuses a body over max_body_bytes before it has read it; the
    user behind the balancer must still get the one JSON line and 413, not a
    closed connection."""
    balancer, _edges = farm
    big = json.dumps({"title": "big", "body": "x" * (2 * 1048576)}).encode()
    for headers in ({}, {"Expect": "100-continue"}):
        headers = {**AUTH, "Content-Type": "application/json", **headers}
        res = httpx.post(f"{balancer.url}/v1/pages", content=big, timeout=10, headers=headers)
        assert res.status_code == 413, (res.status_code, res.text)
        assert res.text.count("\n") <= 1 and json.loads(res.text)["error"] == "content too large"
    assert httpx.get(f"{balancer.url}/v1/pages?limit=1", headers=AUTH).json()["items"] == []
