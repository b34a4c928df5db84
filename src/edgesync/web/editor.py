"""The content editor: pages as HTML, under /admin/content-editor.

    GET  /admin/content-editor/                 the pages, in ID order
    GET  /admin/content-editor/page/{slug}      a page (an old slug: 301 to the current)
    GET  /admin/content-editor/page/{slug}/edit an edit form         } signed in
    POST /admin/content-editor/page/{slug}/edit save it: 303 to the  }
                                                page's (new) slug    }
    GET  /admin/content-editor/new              a new page's form    }
    POST /admin/content-editor/new              create it: 303       }
    GET  /admin/content-editor/sign-in          a form for a token
    POST /admin/content-editor/sign-in          a session: 303 onwards
    POST /admin/content-editor/sign-out         the session ends

Forms post through the same write path as the API (``Store.put``), carry a
CSRF token, and an edit carries the ETag the form was made from, so saving
over someone else's change meanwhile is refused (412). After a write the
page's bookmark rides in a cookie, so the next page read, on whichever edge
of the farm answers, shows it (api.consistent). Templates sit in
``templates/`` beside this module; Jinja2 escapes every value.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from urllib.parse import quote

import jinja2

from .. import reads
from ..errors import NotFound
from .api import SLUG_RE, consistent, decode_cursor, encode_cursor, write
from .http import HttpError, Request, Response, etag_matches, etag_of
from .tokens import new_session_id

PREFIX = "/admin/content-editor"
SESSION_COOKIE = "edgesync_session"
CSRF_COOKIE = "edgesync_csrf"
BOOKMARK_COOKIE = "edgesync_bookmark"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _cookie(name: str, value: str, max_age: int | None = None) -> str:
    parts = [f"{name}={value}", f"Path={PREFIX}", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


class Editor:
    """The editor of one table (``editor_table`` in the settings)."""

    def __init__(self, app, table: str):
        self.app = app
        self.spec = app.config.tables[table]
        self.title_column = "title" if "title" in self.spec.columns else self.spec.slug[-1]

    # -- who is signed in -------------------------------------------------------------

    def session(self, req: Request) -> tuple[str, str] | None:
        """(session ID, token name) of the request's session, if it is live."""
        sid = self.app.signer.session_of(req.cookies().get(SESSION_COOKIE))
        if sid is None:
            return None
        row = self.app.backend.read.execute(
            "SELECT name, expires FROM _sessions WHERE id = ?", (sid,)
        ).fetchone()
        if row is None or row[1] < time.time():
            return None
        return sid, row[0]

    def signed_in(self, req: Request) -> tuple[str, str]:
        found = self.session(req)
        if found is None:
            target = quote(req.path, safe="/")
            raise Redirect(f"{PREFIX}/sign-in?next={target}")
        return found

    def check_csrf(self, sid: str, form: dict) -> None:
        if not self.app.signer.csrf_ok(sid, form.get("csrf")):
            raise HttpError(403, "the form's CSRF token is missing or wrong: reload the form")

    # -- rendering --------------------------------------------------------------------

    def render(self, req: Request, template: str, status: int = 200, **values) -> Response:
        found = self.session(req)
        context = {
            "node": self.app.config.name,
            "signed_in": found[1] if found else None,
            "csrf": self.app.signer.csrf(found[0]) if found else "",
            "columns": self.spec.columns,
            "slug_columns": self.spec.slug,
            "title_column": self.title_column,
            **values,
        }
        body = _env.get_template(template).render(**context).encode()
        return Response(
            status,
            body,
            {"content-type": "text/html; charset=utf-8", "cache-control": "private, no-cache"},
        )

    def error_page(self, req: Request, exc: HttpError) -> Response:
        resp = self.render(
            req, "error.html", exc.status, title=exc.error, code=exc.status,
            error=exc.error, detail=exc.detail,
        )  # fmt: skip
        resp.headers.update(exc.headers)
        resp.headers["cache-control"] = "no-store"
        return resp

    # -- pages ------------------------------------------------------------------------

    async def _consistent(self, req: Request) -> None:
        bookmark = req.cookies().get(BOOKMARK_COOKIE)
        if bookmark:
            req.headers.setdefault("edgesync-bookmark", bookmark)
            await consistent(self.app, req)

    def _record_by_slug(self, slug: str) -> dict:
        if not SLUG_RE.match(slug):
            raise HttpError(400, f"invalid slug {slug[:80]!r}: lowercase letters, digits and '-'")
        db = self.app.backend.read
        try:
            return reads.by_slug(db, self.spec, slug)
        except NotFound:  # perhaps an old slug
            now = reads.moved(db, self.spec, slug)
            if now is None:
                raise HttpError(404, f"no page with slug {slug!r}") from None
            raise MovedPermanently(now) from None

    async def index(self, req: Request) -> Response:
        self._may_view(req)
        after = decode_cursor(req.query["cursor"]) if "cursor" in req.query else None
        records = reads.page(self.app.backend.read, self.spec, after, 50)
        nxt = encode_cursor(records[-1]["id"]) if len(records) == 50 else None
        return self.render(req, "index.html", title="Pages", records=records, next=nxt)

    def _may_view(self, req: Request) -> None:
        if self.spec.name not in self.app.settings.public_tables:
            self.signed_in(req)

    async def view(self, req: Request) -> Response:
        self._may_view(req)
        await self._consistent(req)
        slug = req.params["slug"]
        try:
            record = self._record_by_slug(slug)
        except MovedPermanently as moved:
            return Response(301, b"", {"location": f"{PREFIX}/page/{moved.slug}"})
        resp = self.render(req, "page.html", title=record[self.title_column] or slug, record=record)
        etag = etag_of(record)
        resp.headers["etag"] = etag
        if etag_matches(req.header("if-none-match"), etag):
            return Response(304, b"", {"etag": etag, "cache-control": "private, no-cache"})
        return resp

    async def edit_form(self, req: Request) -> Response:
        self.signed_in(req)
        await self._consistent(req)
        try:
            record = self._record_by_slug(req.params["slug"])
        except MovedPermanently as moved:
            return Response(301, b"", {"location": f"{PREFIX}/page/{moved.slug}/edit"})
        return self.render(
            req, "form.html", title=f"Edit {record[self.title_column]}", values=record,
            action=f"{PREFIX}/page/{record['slug']}/edit", button="Save", etag=etag_of(record),
            problem=None,
        )  # fmt: skip

    async def save(self, req: Request) -> Response:
        sid, _name = self.signed_in(req)
        form = req.form()
        self.check_csrf(sid, form)
        try:
            record = self._record_by_slug(req.params["slug"])
        except MovedPermanently as moved:
            record = reads.by_slug(self.app.backend.read, self.spec, moved.slug)
        values = {c: form[c] for c in self.spec.columns if c in form}
        etag = form.get("etag")

        def check(current: dict | None) -> None:
            if etag and (current is None or etag_of(current) != etag):
                raise HttpError(412, "the page changed since you opened the form: open it again")

        def put(store):
            return store.put(self.spec.name, {"id": record["id"], **values}, check), store.bookmark

        saved, bookmark = await write(self.app, put)
        return self._after_write(saved, bookmark)

    async def new_form(self, req: Request) -> Response:
        self.signed_in(req)
        return self.render(
            req, "form.html", title="New page", values={}, action=f"{PREFIX}/new",
            button="Create", etag=None, problem=None,
        )  # fmt: skip

    async def create(self, req: Request) -> Response:
        sid, _name = self.signed_in(req)
        form = req.form()
        self.check_csrf(sid, form)
        values = {c: form[c] for c in self.spec.columns if c in form}
        if not any((values.get(c) or "").strip() for c in self.spec.slug):
            raise HttpError(422, f"give the page a {self.title_column}")

        def put(store):
            return store.put(self.spec.name, values), store.bookmark

        saved, bookmark = await write(self.app, put)
        return self._after_write(saved, bookmark)

    def _after_write(self, saved: dict, bookmark: str | None) -> Response:
        headers = {"location": f"{PREFIX}/page/{saved['slug']}", "cache-control": "no-store"}
        if bookmark:
            headers["set-cookie"] = _cookie(BOOKMARK_COOKIE, bookmark, 300)
            headers["edgesync-bookmark"] = bookmark
        return Response(303, b"", headers)

    # -- signing in and out -----------------------------------------------------------

    async def sign_in_form(self, req: Request, problem: str | None = None) -> Response:
        csrf = req.cookies().get(CSRF_COOKIE) or secrets.token_hex(16)
        nxt = req.query.get("next", f"{PREFIX}/")
        resp = self.render(
            req, "sign_in.html", 401 if problem else 200, title="Sign in",
            csrf=csrf, next=_local(nxt), problem=problem,
        )  # fmt: skip
        resp.headers["set-cookie"] = _cookie(CSRF_COOKIE, csrf)
        return resp

    async def sign_in(self, req: Request) -> Response:
        form = req.form()
        sent = req.cookies().get(CSRF_COOKIE)
        if not sent or not secrets.compare_digest(sent, form.get("csrf", "")):
            raise HttpError(403, "the sign-in form's CSRF token is missing or wrong: reload it")
        name = self.app.tokens.check(form.get("token", ""))
        if name is None:
            req.query["next"] = form.get("next", "")
            return await self.sign_in_form(req, "That token is not valid here.")
        sid = new_session_id()
        expires = int(time.time()) + self.app.settings.session_hours * 3600
        await self.app.backend.write(lambda store: open_session(store, sid, name, expires))
        cookie = _cookie(SESSION_COOKIE, self.app.signer.cookie(sid), expires - int(time.time()))
        return Response(
            303, b"", {"location": _local(form.get("next", "")), "set-cookie": cookie,
                       "cache-control": "no-store"},
        )  # fmt: skip

    async def sign_out(self, req: Request) -> Response:
        found = self.session(req)
        if found is not None:
            sid, _name = found
            self.check_csrf(sid, req.form())
            await self.app.backend.write(lambda store: end_session(store, sid))
        gone = _cookie(SESSION_COOKIE, "", 0)
        return Response(
            303, b"", {"location": f"{PREFIX}/sign-in", "set-cookie": gone,
                       "cache-control": "no-store"},
        )  # fmt: skip


class MovedPermanently(Exception):
    def __init__(self, slug: str):
        self.slug = slug


class Redirect(Exception):
    """Answer 303 to ``location`` (sign in first)."""

    def __init__(self, location: str):
        self.location = location


def _local(target: str) -> str:
    """Only a page of the editor itself: never a redirect to another site."""
    if target.startswith(f"{PREFIX}/") and "//" not in target and "\\" not in target:
        return target
    return f"{PREFIX}/"


def open_session(store, sid: str, name: str, expires: int) -> None:
    with store.transaction():
        store.db.execute("DELETE FROM _sessions WHERE expires < ?", (int(time.time()),))
        store.db.execute("INSERT INTO _sessions VALUES (?, ?, ?)", (sid, name, expires))


def end_session(store, sid: str) -> None:
    with store.transaction():
        store.db.execute("DELETE FROM _sessions WHERE id = ?", (sid,))
