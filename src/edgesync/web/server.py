"""``edgesync-http``: the node's HTTP face, resident, on granian.

    edgesync-http [--config AGENT_CONFIG] [--settings HTTP_SETTINGS]

A command of its own, so the ``edgesync`` command does not load a web server
at every start.

Granian (a Rust HTTP server) measured faster here than uvicorn, and a bare
ASGI callable faster than Starlette on the same server
(benchmarks/bench_latency.py). Its connections are served by Rust, so a
thousand slow clients holding connections open (slowloris) cost no Python;
headers not read within HEADER_READ_TIMEOUT_MS end the connection.

The settings are checked before the server starts (a bad file: one line, exit
2); each worker process then makes its application from the same files.
"""

from __future__ import annotations

import argparse
import os
import sys

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.server import Server

from ..config import load as load_config
from ..errors import EdgesyncError, one_line
from .app import App, create_app
from .settings import load as load_settings

HEADER_READ_TIMEOUT_MS = 10_000
# Headers and the first part of a body a connection may buffer (bytes).
MAX_BUFFER_BYTES = 64 * 1024
_CONFIG, _SETTINGS = "EDGESYNC_CONFIG", "EDGESYNC_HTTP_SETTINGS"


def app_from_env() -> App:
    """The application of the node named by the environment (one per worker)."""
    config = load_config(os.environ.get(_CONFIG))
    return create_app(config, load_settings(os.environ.get(_SETTINGS) or None, config))


def serve(config_path: str | None, settings_path: str | None) -> int:
    config = load_config(config_path)
    settings = load_settings(settings_path, config)
    os.environ[_CONFIG] = str(config_path or os.environ.get(_CONFIG, ""))
    os.environ[_SETTINGS] = settings_path or ""
    Server(
        "edgesync.web.server:app_from_env",
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=False,
        workers=settings.workers,
        backlog=2048,
        http1_settings=HTTP1Settings(
            header_read_timeout=HEADER_READ_TIMEOUT_MS, max_buffer_size=MAX_BUFFER_BYTES
        ),
        log_access=False,
        log_level="warning",
    ).serve()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edgesync-http", description="serve this node over HTTP")
    p.add_argument("--config", help="the agent's config (default: $EDGESYNC_CONFIG)")
    p.add_argument("--settings", help="the HTTP settings (default: listen on 127.0.0.1:8080)")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return serve(args.config, args.settings)
    except EdgesyncError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
