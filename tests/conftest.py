"""Shared fixtures: a real redis-server on a free loopback port, and nodes
built from real config files in temporary directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgesync.agent import open_store
from edgesync.config import dump
from edgesync.localfleet import PAGES
from edgesync.localredis import LocalRedis


class RedisServer(LocalRedis):
    def __init__(self, workdir: Path, password: str | None = None):
        try:
            super().__init__(workdir, password)
        except RuntimeError as exc:
            pytest.fail(f"{exc}: run the README's test command")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server for one test, which the test may stop and start."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def write_config(path: Path, name: str, redis_url: str, role: str = "edge", **extra) -> Path:
    """One node's config (no peers unless ``peers`` names some); ``extra`` sets
    any other [node] key."""
    farm = extra.pop("farm", "a" if role == "edge" else None)
    peers = extra.pop("peers", {})
    extra.setdefault("keys_file", str(path.parent / "fleet_keys"))
    tables = extra.pop("tables", {"pages": PAGES})
    node = {"name": name, "location": extra.pop("location", "LON"), "role": role,
            "data_dir": f"{name.lower()}-data", "redis_url": redis_url, "farm": farm,
            **extra}  # fmt: skip
    path.write_text(dump({"node": node, "peers": peers, "tables": tables}))
    return path


class Node:
    """A node as a test uses it: its config file, a library Store, and its CLI."""

    def __init__(self, config_path: Path):
        self.config_path = config_path
        self.store = open_store(config_path)
        self.config = self.store.config
        self.store.init()
        # The nodes of one test know each other's keys, as the trust role's keys file does.
        pub = self.config.signing_key.with_name("signing_key.pub").read_text()
        with open(self.config.keys_file, "a") as fh:
            fh.write(pub)

    @property
    def name(self) -> str:
        return self.config.name

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return run_cli("--config", str(self.config_path), *args, input=input)

    def cli_json(self, *args: str, input: str | None = None):
        res = self.cli(*args, input=input)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)


def run_cli(*args: str, input: str | None = None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edgesync", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        env=env if env is not None else {**os.environ, "EDGESYNC_CONFIG": ""},
    )


@pytest.fixture
def make_node(tmp_path, redis_server):
    redis_server.client().flushall()  # streams are keyed by node name: start each test clean
    nodes: list[Node] = []

    def make(name: str = "EDGE01", role: str = "edge", redis_url: str | None = None, **extra):
        path = write_config(
            tmp_path / f"{name.lower()}.toml", name, redis_url or redis_server.url, role, **extra
        )
        node = Node(path)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.store.close()


@pytest.fixture(scope="session")
def say(request):
    """Print past pytest's output capture: the timings are part of the run's report."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def _say(text: str, gap: bool = True) -> None:
        with capture.global_and_fixture_disabled():
            if gap:
                reporter.write_line("")
            for line in text.splitlines():
                reporter.write_line(line)

    return _say


@pytest.fixture
def browser():
    """Debian's Chromium, headless, through Debian's chromedriver (tests/chromium.py)."""
    import chromium  # only the browser tests need Selenium

    driver = chromium.start()
    yield driver
    driver.quit()
