"""The JSON API: records by ID, by slug and in pages; create, patch, delete.

    GET    /v1/{table}/{id}          a record, with its ETag (If-None-Match: 304)
    GET    /v1/{table}?slug=S        a record by slug (an old slug: 301 to the current)
    GET    /v1/{table}?limit=N&cursor=C   a page of records in ID order, and the next cursor
    POST   /v1/{table}               create: 201, Location, the record (Idempotency-Key)
    PATCH  /v1/{table}/{id}          the given columns only (If-Match: 412 when moved on)
    DELETE /v1/{table}/{id}          204 (If-Match as for PATCH)

Reads of a table not in ``public_tables``, and every write, need a bearer
token. A write answers ``Edgesync-Bookmark: ORIGIN:SEQ``; a read that sends it
back is answered only by a host that holds that write (backend.wait_for), or
503 with Retry-After.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import sqlite3

from .. import reads
from ..config import TableSpec
from ..errors import BadInput, Conflict, NotFound, StorageError
from ..ids import is_valid_id
from .backend import BOOKMARK_RE
from .http import (
    HttpError,
    Request,
    Response,
    body_response,
    encode,
    etag_matches,
    etag_of,
    etag_of_body,
    json_response,
    unavailable,
)

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,199}$")
KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")
DEFAULT_LIMIT, MAX_LIMIT = 50, 500


def table_of(app, req: Request) -> TableSpec:
    name = req.params["table"]
    spec = app.config.tables.get(name)
    if spec is None:
        raise HttpError(404, f"unknown table {name[:64]!r}")
    return spec


def id_of(req: Request) -> str:
    rid = req.params["id"]
    if not is_valid_id(rid):
        raise HttpError(
            400, f"invalid id {rid[:80]!r}: expected EDGENODE-LOC-NNLL-RRRRRRRR-DDMMYYYYHHMMSS"
        )
    return rid


def caller(app, req: Request) -> str | None:
    """The name of the bearer token sent, or None when none was sent; 401 for a wrong one."""
    auth = req.header("authorization")
    if auth is None:
        return None
    scheme, _, token = auth.partition(" ")
    name = app.tokens.check(token.strip()) if scheme.lower() == "bearer" else None
    if name is None:
        raise HttpError(401, "the bearer token is not valid here", {"www-authenticate": "Bearer"})
    return name


def need_token(app, req: Request, why: str) -> str:
    name = caller(app, req)
    if name is None:
        raise HttpError(401, f"{why} needs a bearer token", {"www-authenticate": "Bearer"})
    return name


def may_read(app, req: Request, spec: TableSpec) -> bool:
    """True when the table is public; otherwise a valid token is needed (401)."""
    if spec.name in app.settings.public_tables:
        caller(app, req)  # a wrong token is still refused
        return True
    need_token(app, req, f"reading {spec.name}")
    return False


async def consistent(app, req: Request) -> None:
    """Wait for the bookmark the request brings, or answer 503."""
    bookmark = req.header("edgesync-bookmark")
    if bookmark is None:
        return
    if not BOOKMARK_RE.match(bookmark):
        raise HttpError(400, f"invalid Edgesync-Bookmark {bookmark[:80]!r}: expected ORIGIN:SEQ")
    if not await app.backend.wait_for(bookmark, app.settings.bookmark_wait_ms / 1000):
        raise unavailable(f"this host does not hold {bookmark} yet: try again")


def record_response(req: Request, record: dict, public: bool, status: int = 200) -> Response:
    body = encode(record)
    etag = etag_of_body(body)
    headers = {"etag": etag, "cache-control": ("public" if public else "private") + ", no-cache"}
    if status == 200 and etag_matches(req.header("if-none-match"), etag):
        return Response(304, b"", headers)
    return body_response(status, body, headers)


async def get_record(app, req: Request) -> Response:
    spec = table_of(app, req)
    rid = id_of(req)
    public = may_read(app, req, spec)
    await consistent(app, req)
    try:
        record = reads.record(app.backend.read, spec, rid)
    except NotFound:
        raise HttpError(404, f"no {spec.name} record {rid}") from None
    return record_response(req, record, public)


async def list_or_slug(app, req: Request) -> Response:
    spec = table_of(app, req)
    public = may_read(app, req, spec)
    unknown = set(req.query) - {"slug", "limit", "cursor"}
    if unknown:
        raise HttpError(400, f"unknown query parameter {sorted(unknown)[0][:40]!r}")
    await consistent(app, req)
    if "slug" in req.query:
        if len(req.query) > 1:
            raise HttpError(400, "slug= goes alone: no limit or cursor with it")
        return by_slug(app, req, spec, public)
    limit = DEFAULT_LIMIT
    if "limit" in req.query:
        raw = req.query["limit"]
        if not raw.isdigit() or not 1 <= int(raw[:6]) <= MAX_LIMIT:
            raise HttpError(400, f"invalid limit {raw[:20]!r}: a number from 1 to {MAX_LIMIT}")
        limit = int(raw)
    after = None
    if "cursor" in req.query:
        after = decode_cursor(req.query["cursor"])
    items = reads.page(app.backend.read, spec, after, limit)
    nxt = encode_cursor(items[-1]["id"]) if len(items) == limit else None
    cache = ("public" if public else "private") + ", no-cache"
    return json_response(200, {"items": items, "next": nxt}, {"cache-control": cache})


def by_slug(app, req: Request, spec: TableSpec, public: bool) -> Response:
    slug = req.query["slug"]
    if not spec.slug:
        raise HttpError(404, f"table {spec.name} has no slugs")
    if not SLUG_RE.match(slug):
        raise HttpError(400, f"invalid slug {slug[:80]!r}: lowercase letters, digits and '-'")
    try:
        record = reads.by_slug(app.backend.read, spec, slug)
    except NotFound:
        now = reads.moved(app.backend.read, spec, slug)
        if now is None:
            raise HttpError(404, f"no {spec.name} record with slug {slug!r}") from None
        return Response(301, b"", {"location": f"/v1/{spec.name}?slug={now}"})
    return record_response(req, record, public)


def encode_cursor(rid: str) -> str:
    return base64.urlsafe_b64encode(rid.encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> str:
    try:
        rid = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        rid = None
    if not rid or not is_valid_id(rid):
        raise HttpError(400, f"invalid cursor {raw[:40]!r}: use the 'next' of a listing")
    return rid


# -- writes -------------------------------------------------------------------------


def columns_of(req: Request, spec: TableSpec, making: bool) -> dict:
    data = req.json()
    if not isinstance(data, dict):
        raise HttpError(422, f"a {spec.name} record is a JSON object of its columns")
    if "id" in data:
        raise HttpError(422, "id is not a column: the host makes it (POST) or the URL names it")
    if not making and not data:
        raise HttpError(422, "nothing to change: send the columns to set")
    return data


async def write(app, fn):
    """Run a write on the writer; the store's refusals as HTTP answers."""
    try:
        return await app.backend.write(fn)
    except Conflict as exc:
        raise HttpError(409, str(exc)) from None
    except NotFound as exc:
        raise HttpError(404, str(exc)) from None
    except StorageError as exc:
        raise unavailable(f"storage: {exc}", 5) from None
    except BadInput as exc:
        raise HttpError(422, str(exc)) from None
    except sqlite3.OperationalError as exc:  # locked past its wait, disk full
        raise unavailable(f"storage busy or full ({exc}): try again", 2) from None


def written(req: Request, status: int, answer: dict, public: bool) -> Response:
    record = answer["record"]
    body = encode(record)
    headers = {"etag": etag_of_body(body), "cache-control": "no-store"}
    if answer.get("bookmark"):
        headers["edgesync-bookmark"] = answer["bookmark"]
    if status == 201:
        headers["location"] = f"/v1/{req.params['table']}/{record['id']}"
    return body_response(status, body, headers)


async def create(app, req: Request) -> Response:
    spec = table_of(app, req)
    who = need_token(app, req, "writing")
    data = columns_of(req, spec, True)
    key = req.header("idempotency-key")
    if key is None:

        def put(store):
            return {"record": store.put(spec.name, data), "bookmark": store.bookmark}

        answer, replayed = await write(app, put), False
    else:
        if not KEY_RE.match(key):
            raise HttpError(400, "invalid Idempotency-Key: 1 to 200 printable ASCII characters")
        scoped = hashlib.sha256(f"{who}\0{spec.name}\0{key}".encode()).hexdigest()
        fingerprint = hashlib.sha256(req.body).hexdigest()
        answer, replayed = await write(
            app, lambda store: store.put_once(spec.name, data, scoped, fingerprint)
        )
    resp = written(req, 201, answer, False)
    if replayed:
        resp.headers["idempotent-replayed"] = "true"
    return resp


def if_match(req: Request):
    """The store's precondition for an If-Match header (412 when the record moved on)."""
    header = req.header("if-match")
    if header is None:
        return None

    def check(record: dict | None) -> None:
        if record is None or not etag_matches(header, etag_of(record)):
            raise HttpError(412, "the record changed since you read it: read it again")

    return check


async def patch(app, req: Request) -> Response:
    spec = table_of(app, req)
    rid = id_of(req)
    need_token(app, req, "writing")
    data = columns_of(req, spec, False)
    check = if_match(req)

    def put(store):
        record = store.put(spec.name, {"id": rid, **data}, check)
        return {"record": record, "bookmark": store.bookmark}

    return written(req, 200, await write(app, put), False)


async def delete(app, req: Request) -> Response:
    spec = table_of(app, req)
    rid = id_of(req)
    need_token(app, req, "writing")
    check = if_match(req)

    def remove(store):
        store.delete(spec.name, rid, check)
        return store.bookmark

    bookmark = await write(app, remove)
    return Response(204, b"", {"edgesync-bookmark": bookmark, "cache-control": "no-store"})
