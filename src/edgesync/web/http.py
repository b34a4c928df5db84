"""Requests, responses and errors as the HTTP face speaks them.

Every error is an ``HttpError``: a status, a short ``error`` and a
``detail`` naming the value that was wrong. The API answers it as one line of
JSON, ``{"error": "...", "detail": "..."}``; the editor as a page. Nothing
else of an exception ever reaches a client.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl

from ..errors import one_line

REASONS = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    412: "precondition failed",
    413: "content too large",
    415: "unsupported media type",
    422: "unprocessable content",
    431: "request header fields too large",
    500: "internal error",
    503: "service unavailable",
}


class HttpError(Exception):
    """An answer other than success; ``headers`` go with it (Allow, Retry-After)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = one_line(detail)[:500]
        self.headers = headers or {}

    @property
    def error(self) -> str:
        return REASONS.get(self.status, "error")


def unavailable(detail: str, retry_after: int = 1) -> HttpError:
    return HttpError(503, detail, {"retry-after": str(retry_after)})


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; a repeated header's values joined by ", "
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)
    route: str = "unmatched"

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cookies(self) -> dict[str, str]:
        raw = self.headers.get("cookie")
        if not raw:
            return {}
        jar = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return {}
        return {k: m.value for k, m in jar.items()}

    def json(self) -> object:
        """The body as JSON: 415 unless it says it is JSON, 400 unless it is."""
        kind = (self.headers.get("content-type") or "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise HttpError(415, f"send the body as application/json, not {kind or 'nothing'!r}")
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HttpError(400, f"the body is not UTF-8 (byte {exc.start})") from None
        try:
            return json.loads(text)
        except RecursionError:
            raise HttpError(400, "invalid JSON: nested too deep") from None
        except ValueError as exc:  # bad JSON, or an integer of thousands of digits
            raise HttpError(400, f"invalid JSON: {str(exc)[:200]}") from None

    def form(self) -> dict[str, str]:
        """An HTML form's fields (application/x-www-form-urlencoded)."""
        kind = (self.headers.get("content-type") or "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise HttpError(415, f"send the form urlencoded, not {kind or 'nothing'!r}")
        try:
            return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, "the form is not UTF-8") from None


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else {}


def encode(obj: object) -> bytes:
    """The JSON of an answer: compact, UTF-8, keys in the order given."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(status: int, obj: object, headers: dict[str, str] | None = None) -> Response:
    return body_response(status, encode(obj), headers)


def body_response(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response:
    h = {"content-type": "application/json"}
    if headers:
        h.update(headers)
    return Response(status, body, h)


def error_json(exc: HttpError) -> Response:
    headers = {"cache-control": "no-store", **exc.headers}
    return json_response(exc.status, {"error": exc.error, "detail": exc.detail}, headers)


def etag_of(record: dict) -> str:
    """A strong validator of a record's content (RFC 9110 8.8.3)."""
    return etag_of_body(encode(record))


def etag_of_body(body: bytes) -> str:
    """The ETag of a record from the JSON sent for it, so a read encodes the
    record once. Every record dict comes from the store in the same column
    order (reads.py: id, the table's columns, slug), so hosts of one
    configuration give the same record the same tag."""
    return '"' + hashlib.sha256(body).hexdigest()[:24] + '"'


def etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match / If-Match: ``*`` or a list of tags (weak ones compare weakly)."""
    if header is None:
        return False
    header = header.strip()
    if header == "*":
        return True
    tags = [t.strip() for t in header.split(",")]
    return any(t.removeprefix("W/") == etag for t in tags)
