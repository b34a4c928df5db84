"""What the edge's HTTP face is measured against: the same read by slug served
by the least code possible, on granian or uvicorn, bare or under Starlette.

Runs in the benchmark's own environment (build/bench-venv, made by
bench_latency.py: uvicorn, Starlette, Datasette and granian are not
edgesync's dependencies there), never in the project's:

    build/bench-venv/bin/python floor_apps.py --server granian|uvicorn \
        --app bare|starlette --port PORT --db STORE.db

Both apps answer ``GET /v1/pages?slug=S`` with the record as JSON, running
the SQL that edgesync.reads.by_slug runs (the ID by slug, then the row by ID)
on a read-only connection on the event loop, as edgesync.web.backend does.
Nothing else: no token, no ETag, no metrics, no limits. The bare app on
granian, set up as edgesync.web.server sets it up, is the floor of any Python
HTTP face here.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
from pathlib import Path
from urllib.parse import parse_qsl

import uvicorn
from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.server import Server
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

COLUMNS = ("id", "section", "title", "body", "slug")
_NOT_FOUND = json.dumps({"error": "not found"}).encode()


class Lookup:
    """The read by slug of edgesync.reads, over a read-only connection."""

    def __init__(self, path: str):
        self.conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        self.conn.execute("PRAGMA query_only=1")

    def by_slug(self, slug: str) -> dict | None:
        found = self.conn.execute(
            'SELECT id FROM "pages" WHERE slug = ? AND _deleted = 0', (slug,)
        ).fetchone()
        if found is None:
            return None
        cur = self.conn.execute('SELECT * FROM "pages" WHERE id = ? AND _deleted = 0', found)
        row = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
        return {c: row[c] for c in COLUMNS}


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def bare_app():
    lookup = Lookup(os.environ["BENCH_DB"])

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        slug = dict(parse_qsl(scope["query_string"].decode())).get("slug", "")
        record = lookup.by_slug(slug)
        status, body = (404, _NOT_FOUND) if record is None else (200, _json(record))
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]  # fmt: skip
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def starlette_app():
    lookup = Lookup(os.environ["BENCH_DB"])

    async def page(request: Request) -> JSONResponse:
        record = lookup.by_slug(request.query_params.get("slug", ""))
        if record is None:
            return JSONResponse({"error": "not found"}, 404)
        return JSONResponse(record)

    return Starlette(routes=[Route("/v1/pages", page)])


def _json(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def serve_granian(factory: str, port: int, loop: str) -> None:
    # As edgesync.web.server starts the edge's own face (its event loop is
    # asyncio: the project's environment has no uvloop).
    Server(
        f"floor_apps:{factory}",
        factory=True,
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=False,
        workers=1,
        backlog=2048,
        loop=Loops(loop),
        http1_settings=HTTP1Settings(header_read_timeout=10_000, max_buffer_size=64 * 1024),
        log_access=False,
        log_level="warning",
        working_dir=Path(__file__).parent,
    ).serve()


def serve_uvicorn(factory: str, port: int, loop: str) -> None:
    # Its fastest HTTP parser (httptools), on the same event loop as granian's.
    uvicorn.run(
        f"floor_apps:{factory}",
        factory=True,
        host="127.0.0.1",
        port=port,
        loop=loop,
        http="httptools",
        ws="none",
        backlog=2048,
        access_log=False,
        log_level="warning",
        app_dir=str(Path(__file__).parent),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description="serve a floor app (bench_latency.py)")
    ap.add_argument("--server", choices=["granian", "uvicorn"], required=True)
    ap.add_argument("--app", choices=["bare", "starlette"], required=True)
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--db", required=True)
    args = ap.parse_args()
    os.environ["BENCH_DB"] = args.db
    serve = serve_granian if args.server == "granian" else serve_uvicorn
    serve(f"{args.app}_app", args.port, args.loop)


if __name__ == "__main__":
    main()
