"""The HTTP face as one ASGI application: the routing table and the layers around it.

``create_app(config, settings)`` makes the application of one node; nothing
is global. Around every request, in this order: the limits (concurrent
requests, header and body sizes, the request's time), the route, the answer
or its error (JSON for the API, a page for the editor), the metrics. The probes
(/healthz, /readyz, /metrics) bypass the concurrency limit, so a busy host
still answers its load balancer.

    GET /healthz   200 while the process answers
    GET /readyz    200 when the store is open at this release's schema and the
                   host is not draining (the file ``draining`` in its data
                   directory); 503 otherwise
    GET /metrics   Prometheus text format (metrics.py)
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from ..config import Config
from . import api
from .backend import Backend
from .editor import PREFIX, Editor, Redirect
from .http import HttpError, Request, Response, error_json, json_response, unavailable
from .metrics import CONTENT_TYPE, Metrics
from .settings import Settings
from .tokens import Signer, Tokens, session_key

MAX_HEADER_BYTES = 16 * 1024
_BAD_PATH = re.compile("[\x00-\x1f\ud800-\udfff]")  # control characters, lone surrogates
Handler = Callable[[Request], Awaitable[Response]]


class App:
    def __init__(self, config: Config, settings: Settings):
        self.config = config
        self.settings = settings
        self.backend = Backend(config)
        self.tokens = Tokens(settings.tokens_file)
        self.signer = Signer(session_key(config.data_dir))
        self.metrics = Metrics(self.backend)
        self.editor = Editor(self, settings.editor_table) if settings.editor_table else None
        self.inflight = 0
        self.draining_file = config.data_dir / "draining"
        self.routes = self._routes()

    def _routes(self) -> list[tuple[re.Pattern, str, dict[str, Handler], bool]]:
        """(path, route name for metrics, {method: handler}, is it the editor's)."""
        table = r"(?P<table>[^/]+)"
        rid = r"(?P<id>[^/]+)"
        slug = r"(?P<slug>[^/]+)"
        at = self
        table_of = [
            (r"/healthz", "/healthz", {"GET": at.healthz}),
            (r"/readyz", "/readyz", {"GET": at.readyz}),
            (r"/metrics", "/metrics", {"GET": at.metrics_page}),
            (rf"/v1/{table}", "/v1/{table}",
             {"GET": at.bind(api.list_or_slug), "POST": at.bind(api.create)}),
            (rf"/v1/{table}/{rid}", "/v1/{table}/{id}",
             {"GET": at.bind(api.get_record), "PATCH": at.bind(api.patch),
              "DELETE": at.bind(api.delete)}),
        ]  # fmt: skip
        routes = [(re.compile(p + r"\Z"), name, h, False) for p, name, h in table_of]
        if self.editor is not None:
            ed = self.editor
            editor_of = [
                (r"/", "/", {"GET": ed.index}),
                (rf"/page/{slug}", "/page/{slug}", {"GET": ed.view}),
                (rf"/page/{slug}/edit", "/page/{slug}/edit",
                 {"GET": ed.edit_form, "POST": ed.save}),
                (r"/new", "/new", {"GET": ed.new_form, "POST": ed.create}),
                (r"/sign-in", "/sign-in", {"GET": ed.sign_in_form, "POST": ed.sign_in}),
                (r"/sign-out", "/sign-out", {"POST": ed.sign_out}),
            ]  # fmt: skip
            routes += [
                (re.compile(re.escape(PREFIX) + p + r"\Z"), PREFIX + name, h, True)
                for p, name, h in editor_of
            ]
        return routes

    def bind(self, fn: Callable[[App, Request], Awaitable[Response]]) -> Handler:
        async def handler(req: Request) -> Response:
            return await fn(self, req)

        return handler

    def close(self) -> None:
        self.backend.close()

    # -- the probes ---------------------------------------------------------------------

    async def healthz(self, req: Request) -> Response:
        return json_response(200, {"status": "ok", "node": self.config.name},
                             {"cache-control": "no-store"})  # fmt: skip

    async def readyz(self, req: Request) -> Response:
        problem = self.backend.schema_problem()
        if problem is None and self.draining_file.exists():
            problem = "draining"
        if problem is not None:
            raise unavailable(f"not ready: {problem}", 5)
        return json_response(200, {"status": "ready", "node": self.config.name},
                             {"cache-control": "no-store"})  # fmt: skip

    async def metrics_page(self, req: Request) -> Response:
        return Response(200, self.metrics.render(),
                        {"content-type": CONTENT_TYPE, "cache-control": "no-store"})  # fmt: skip

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        route, method, editor = "unmatched", scope["method"], False
        try:
            route, editor, params, handler = self._match(scope)
            req = self._request(scope, params, route)
            resp = await self._limited(req, handler, receive, route)
        except HttpError as exc:
            resp = self._error(scope, exc, editor)
        except Redirect as redirect:
            resp = Response(303, b"", {"location": redirect.location, "cache-control": "no-store"})
        except Exception:  # a bug: logged here, never shown to the client
            traceback.print_exc(file=sys.stderr)
            resp = self._error(scope, HttpError(500, "internal error: see the host's journal"),
                               editor)  # fmt: skip
        await self._send(send, resp, method == "HEAD")
        self.metrics.observe(route, method, resp.status, started)

    def _match(self, scope) -> tuple[str, bool, dict, Handler | None]:
        """(route name, is it the editor's, path parameters, handler); 404 when no
        route matches; for a method the route does not take, the handler is an
        answer of 405."""
        path = scope["path"]
        if len(path) > 2048 or _BAD_PATH.search(path):
            raise HttpError(400, "the path is too long or holds control characters")
        for pattern, name, handlers, editor in self.routes:
            m = pattern.match(path)
            if m is None:
                continue
            method = "GET" if scope["method"] == "HEAD" else scope["method"]
            handler = handlers.get(method)
            if handler is None:
                allow = ", ".join(sorted({*handlers, *(["HEAD"] if "GET" in handlers else [])}))
                error = HttpError(405, f"{scope['method'][:16]} is not allowed on {name}",
                                  {"allow": allow})  # fmt: skip
                handler = _refuse(error)
            return name, editor, m.groupdict(), handler
        raise HttpError(404, f"no such path: {path[:200]}")

    def _request(self, scope, params: dict, route: str) -> Request:
        size = 0
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            size += len(raw_name) + len(raw_value) + 4
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if size > MAX_HEADER_BYTES:
            raise HttpError(431, f"request headers of {size} bytes: at most {MAX_HEADER_BYTES}")
        try:
            pairs = parse_qsl(scope["query_string"].decode("utf-8"), keep_blank_values=True,
                              max_num_fields=20, errors="strict")  # fmt: skip
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "the query string is not UTF-8, or has too many fields") from None
        query = dict(pairs)
        if len(query) != len(pairs):
            raise HttpError(400, "a query parameter is given twice")
        for value in params.values():
            if len(value) > 256:
                raise HttpError(404, "no such path: a part of it is too long")
        return Request(scope["method"], scope["path"], query, headers, b"", params, route)

    async def _limited(self, req: Request, handler: Handler, receive, route: str) -> Response:
        probe = route in ("/healthz", "/readyz", "/metrics")
        if not probe and self.inflight >= self.settings.max_concurrent:
            raise unavailable(f"busy: {self.inflight} requests at once")
        self.inflight += 1
        try:
            if not _may_wait(req):
                return await handler(req)
            async with asyncio.timeout(self.settings.request_timeout_s):
                req.body = await self._body(req, receive)
                return await handler(req)
        except TimeoutError:
            raise unavailable(
                f"not answered within {self.settings.request_timeout_s} s: try again"
            ) from None
        finally:
            self.inflight -= 1

    async def _body(self, req: Request, receive) -> bytes:
        limit = self.settings.max_body_bytes
        length = req.headers.get("content-length")
        framed = length is not None or "transfer-encoding" in req.headers
        if not framed and req.method in ("GET", "HEAD"):
            # No body (RFC 9112 6.3). Asking granian for it anyway costs a trip
            # through its thread and the event loop: a fifth of a read's CPU.
            return b""
        if length is not None and (not length.isdigit() or int(length[:12]) > limit):
            raise HttpError(413, f"a body of {length[:20]} bytes: at most {limit}")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HttpError(400, "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HttpError(413, f"a body of more than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _error(self, scope, exc: HttpError, editor: bool) -> Response:
        if editor and self.editor is not None:
            req = Request(scope["method"], scope["path"], {}, _headers(scope))
            try:
                return self.editor.error_page(req, exc)
            except Exception:
                traceback.print_exc(file=sys.stderr)
        return error_json(exc)

    async def _send(self, send, resp: Response, head: bool) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()]
        headers.append((b"edgesync-node", self.config.name.encode()))
        if resp.status != 304 and resp.status != 204:
            headers.append((b"content-length", str(len(resp.body)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        body = b"" if head or resp.status in (204, 304) else resp.body
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.backend.open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.backend.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def _may_wait(req: Request) -> bool:
    """Whether answering ``req`` may wait on anything: a body to read, a write,
    a bookmark to catch up with (its header, or the editor's cookie). A read
    that brings none runs from start to end on the event loop, where a timer
    could not stop it anyway; it gets none (a timer costs about 5 us of a
    read's 60)."""
    h = req.headers
    return not (
        req.method in ("GET", "HEAD")
        and "content-length" not in h
        and "transfer-encoding" not in h
        and "edgesync-bookmark" not in h
        and "cookie" not in h
    )


def _refuse(error: HttpError) -> Handler:
    async def refuse(req: Request) -> Response:
        raise error

    return refuse


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def create_app(config: Config, settings: Settings) -> App:
    return App(config, settings)
