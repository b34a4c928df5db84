"""A node's HTTP face as a real process (``edgesync-http``) on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from edgesync.web.tokens import hash_token

TOKEN = "test-token-of-the-farm"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpNode:
    def __init__(self, config: Path, **settings):
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tokens = config.with_suffix(".tokens")
        tokens.write_text(f"farm {hash_token(TOKEN)}\n")
        values = {
            "listen": f"127.0.0.1:{self.port}",
            "tokens_file": tokens.name,
            "public_tables": ["pages"],
            "editor_table": "pages",
            **settings,
        }
        # JSON's strings, numbers and lists read as TOML's.
        lines = ["[http]"] + [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        self.settings = config.with_suffix(".http.toml")
        self.settings.write_text("\n".join(lines) + "\n")
        self.log = config.with_suffix(".http.log")
        self.proc: subprocess.Popen | None = None

    def start(self) -> HttpNode:
        exe = Path(sys.executable).with_name("edgesync-http")
        self.proc = subprocess.Popen(
            [str(exe), "--config", str(self.config), "--settings", str(self.settings)],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=os.environ.copy(),
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edgesync-http exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"edgesync-http did not answer: {self.log.read_text()[-2000:]}")

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kw)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def errors_logged(self) -> str:
        return self.log.read_text()


@contextlib.contextmanager
def serving(paths: dict[str, Path], **settings):
    """An edgesync-http per node config in ``paths``, by node name; on the
    way out every one is stopped and none may have logged a traceback."""
    servers = {name: HttpNode(path, **settings).start() for name, path in paths.items()}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()
    for server in servers.values():
        assert "Traceback" not in server.errors_logged(), server.errors_logged()
