"""The HTTP face against real server processes (edgesync-http on granian), real
SQLite and Redis: what a client of an edge sends and sees.

Two edges of one farm, EDGE01 and EDGE02, each with its own server; ``pages``
is public to read, ``notes`` is not.
"""

from __future__ import annotations

import html
import json
import resource
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from httpnode import AUTH, HttpNode, serving

from edgesync import localfleet
from edgesync.agent import open_store

NOTES = {"columns": ["text", "n"]}
FARM = {"EDGE01": ("edge", "a", ()), "EDGE02": ("edge", "a", ())}


def make_nodes(root, redis_url, nodes=FARM):
    tables = {"pages": localfleet.PAGES, "notes": NOTES}
    paths = localfleet.write(root, nodes, redis_url, tables=tables)
    for path in paths.values():
        store = open_store(path)
        store.init()
        store.close()
    localfleet.share_keys(root, nodes)
    return paths


@pytest.fixture(scope="module")
def edges(tmp_path_factory, redis_server):
    root = tmp_path_factory.mktemp("http")
    paths = make_nodes(root, redis_server.url)
    # A bookmark's wait is generous here: a test proves what is answered, not how
    # fast a loaded machine starts a sync session (bench_latency.py times that).
    with serving(paths, bookmark_wait_ms=5000) as servers:
        yield servers


@pytest.fixture
def edge01(edges):
    with edges["EDGE01"].client() as client:
        yield client


@pytest.fixture
def edge02(edges):
    with edges["EDGE02"].client() as client:
        yield client


def digest(node: HttpNode) -> str:
    res = subprocess.run([sys.executable, "-m", "edgesync", "--config", str(node.config), "digest"],
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return res.stdout.strip()


def page(client, title="A page", section="guide", **more) -> httpx.Response:
    res = client.post("/v1/pages", json={"section": section, "title": title, **more}, headers=AUTH)
    assert res.status_code == 201, res.text
    return res


def is_error(res: httpx.Response, status: int, words: str = "") -> None:
    assert res.status_code == status, (res.status_code, res.text)
    assert res.headers["content-type"] == "application/json"
    assert res.text.count("\n") == 0 and "Traceback" not in res.text and "/src/" not in res.text
    body = res.json()
    assert set(body) == {"error", "detail"}, body
    assert words in body["detail"], body


# -- the probes -------------------------------------------------------------------------


def test_health_readiness_and_metrics(edges, edge01):
    assert edge01.get("/healthz").json() == {"status": "ok", "node": "EDGE01"}
    assert edge01.get("/readyz").status_code == 200
    draining = edges["EDGE01"].config.parent / "edge01" / "draining"
    draining.touch()
    try:
        res = edge01.get("/readyz")
        is_error(res, 503, "draining")
        assert res.headers["retry-after"] == "5"
        assert edge01.get("/healthz").status_code == 200  # alive, only not taking users
    finally:
        draining.unlink()
    assert edge01.get("/readyz").status_code == 200
    page(edge01, "Counted")
    metrics = edge01.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert 'edgesync_http_requests_total{method="POST",route="/v1/{table}",status="201"}' in text
    assert 'edgesync_http_request_duration_seconds_bucket{le="0.001",route="/v1/{table}"}' in text
    assert 'edgesync_rows{table="pages"}' in text and "edgesync_outbox_pending" in text


# -- records ------------------------------------------------------------------------------


def test_create_answers_201_with_location_etag_and_bookmark_and_reads_revalidate(edge01):
    res = page(edge01, "Example Page", section="example")
    record = res.json()
    assert record["slug"].startswith("example-example-page-")
    assert res.headers["location"] == f"/v1/pages/{record['id']}"
    assert res.headers["edgesync-bookmark"].startswith("EDGE01:")
    got = edge01.get(res.headers["location"])
    assert got.json() == record and got.headers["etag"] == res.headers["etag"]
    assert got.headers["cache-control"] == "public, no-cache"
    again = edge01.get(res.headers["location"], headers={"if-none-match": got.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    by_slug = edge01.get("/v1/pages", params={"slug": record["slug"]})
    assert by_slug.json() == record
    head = edge01.head(res.headers["location"])
    assert head.status_code == 200 and head.content == b""


def test_writes_and_private_reads_need_a_valid_token(edge01):
    before = edge01.get("/v1/pages", params={"limit": 500}).json()["items"]
    is_error(edge01.post("/v1/pages", json={"title": "x"}), 401, "bearer token")
    wrong = edge01.post("/v1/pages", json={"title": "x"}, headers={"authorization": "Bearer no"})
    is_error(wrong, 401, "not valid")
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert edge01.get("/v1/pages", params={"limit": 500}).json()["items"] == before
    note = edge01.post("/v1/notes", json={"text": "private", "n": 1}, headers=AUTH)
    assert note.status_code == 201
    is_error(edge01.get(note.headers["location"]), 401, "reading notes")
    is_error(edge01.get("/v1/notes"), 401)
    got = edge01.get(note.headers["location"], headers=AUTH)
    assert got.json()["text"] == "private" and got.headers["cache-control"] == "private, no-cache"


def test_patch_sets_the_given_columns_only_and_if_match_refuses_a_stale_edit(edge01):
    made = page(edge01, "Patched", body="the body")
    url, etag = made.headers["location"], made.headers["etag"]
    res = edge01.patch(url, json={"title": "Patched again"}, headers={**AUTH, "if-match": etag})
    assert res.status_code == 200, res.text
    assert res.json()["body"] == "the body" and res.json()["title"] == "Patched again"
    stale = edge01.patch(url, json={"body": "lost?"}, headers={**AUTH, "if-match": etag})
    is_error(stale, 412, "changed since you read it")
    assert edge01.get(url).json() == res.json()
    gone = edge01.delete(url, headers={**AUTH, "if-match": etag})
    is_error(gone, 412)
    deleted = edge01.delete(url, headers={**AUTH, "if-match": res.headers["etag"]})
    assert deleted.status_code == 204 and deleted.headers["edgesync-bookmark"]
    is_error(edge01.get(url), 404)
    is_error(edge01.delete(url, headers=AUTH), 404)


def test_a_retried_post_with_an_idempotency_key_makes_one_record(edges, edge01):
    headers = {**AUTH, "idempotency-key": "order-1234"}
    body = {"section": "orders", "title": "Only once"}
    first = edge01.post("/v1/pages", json=body, headers=headers)
    count = edge01.get("/metrics").text
    second = edge01.post("/v1/pages", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json() and second.headers["idempotent-replayed"] == "true"
    assert second.headers["edgesync-bookmark"] == first.headers["edgesync-bookmark"]
    assert 'edgesync_rows{table="pages"}' in count
    before = digest(edges["EDGE01"])
    other = edge01.post("/v1/pages", json={**body, "title": "Another"}, headers=headers)
    is_error(other, 409, "Idempotency-Key")
    assert digest(edges["EDGE01"]) == before
    slugs = [r["slug"] for r in edge01.get("/v1/pages", params={"limit": 500}).json()["items"]]
    assert sum(s.startswith("orders-only-once") for s in slugs) == 1


def test_an_old_slug_answers_301_to_the_current_one(edge01):
    made = page(edge01, "First title", section="news").json()
    moved = edge01.patch(f"/v1/pages/{made['id']}", json={"title": "Second"}, headers=AUTH)
    new = moved.json()["slug"]
    assert new != made["slug"]
    res = edge01.get("/v1/pages", params={"slug": made["slug"]})
    assert res.status_code == 301 and res.headers["location"] == f"/v1/pages?slug={new}"
    editor = edge01.get(f"/admin/content-editor/page/{made['slug']}")
    assert editor.status_code == 301
    assert editor.headers["location"] == f"/admin/content-editor/page/{new}"
    assert edge01.get(editor.headers["location"]).status_code == 200


def test_pages_of_a_listing_neither_skip_nor_repeat_under_concurrent_writes(edge01):
    for i in range(12):
        page(edge01, f"Listed {i}", section="listing")
    before = {r["id"] for r in edge01.get("/v1/pages", params={"limit": 500}).json()["items"]}
    seen, cursor = [], None
    while True:
        params = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        res = edge01.get("/v1/pages", params=params).json()
        seen += [r["id"] for r in res["items"]]
        page(edge01, f"Written meanwhile {len(seen)}", section="listing")
        cursor = res["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert before <= set(seen)
    is_error(edge01.get("/v1/pages", params={"cursor": "bm90LWFuLWlk"}), 400, "cursor")


# -- read your writes across a farm ---------------------------------------------------------


def test_a_read_with_a_bookmark_on_the_other_edge_sees_the_write(edge01, edge02):
    made = page(edge01, "Written on one edge")
    url, bookmark = made.headers["location"], made.headers["edgesync-bookmark"]
    is_error(edge02.get(url), 404)  # not synced yet: an honest 404, no bookmark given
    res = edge02.get(url, headers={"edgesync-bookmark": bookmark})
    assert res.status_code == 200, res.text
    assert res.json() == made.json() and res.headers["edgesync-node"] == "EDGE02"


def test_a_bookmark_no_peer_holds_answers_503_with_retry_after_in_bounded_time(edge02):
    started = time.monotonic()
    res = edge02.get("/v1/pages", params={"limit": 1}, headers={"edgesync-bookmark": "EDGE09:7"})
    waited = time.monotonic() - started
    is_error(res, 503, "does not hold EDGE09:7")
    assert res.headers["retry-after"] == "1"
    assert waited < 20  # bounded: the wait is 5 s here; this only rules out a hang
    is_error(edge02.get("/v1/pages", headers={"edgesync-bookmark": "x:y"}), 400, "Bookmark")


# -- bad input: one clear line each, nothing written ----------------------------------------

JSON = {"content-type": "application/json"}
BAD = [
    ("GET", "/v1/nope", {}, None, 404, "unknown table"),
    ("POST", "/v1/nope", AUTH, b"{}", 404, "unknown table"),
    ("GET", "/v1/pages/not-an-id", {}, None, 400, "invalid id"),
    ("GET", "/v1/pages/..%2F..%2Fetc%2Fpasswd", {}, None, 404, "no such path"),
    ("GET", "/v1/pages?slug=../../etc/passwd", {}, None, 400, "invalid slug"),
    ("GET", "/admin/content-editor/page/..%2Fsecret", {}, None, 404, "no such path"),
    ("GET", "/admin/content-editor/page/Upper%00Case", {}, None, 400, "control characters"),
    ("GET", "/v1/pages?limit=0", {}, None, 400, "invalid limit"),
    ("GET", "/v1/pages?limit=99999999999999999999", {}, None, 400, "invalid limit"),
    ("GET", "/v1/pages?color=red", {}, None, 400, "unknown query parameter"),
    ("GET", "/v1/pages?limit=1&limit=2", {}, None, 400, "given twice"),
    ("GET", "/v1/pages?slug=%ff", {}, None, 400, "not UTF-8"),
    ("POST", "/v1/pages", {**AUTH, **JSON}, b"{not json", 400, "invalid JSON"),
    ("POST", "/v1/pages", {**AUTH, **JSON}, b"\xff\xfe", 400, "not UTF-8"),
    ("POST", "/v1/pages", {**AUTH, **JSON}, b"[" * 100000 + b"]" * 100000, 400, "nested"),
    ("POST", "/v1/pages", {**AUTH, **JSON}, b'{"title": 1' + b"0" * 5000 + b"}", 400, "JSON"),
    ("POST", "/v1/pages", {**AUTH, "content-type": "text/plain"}, b"{}", 415, "application/json"),
    ("POST", "/v1/pages", AUTH, b"{}", 415, "application/json"),
    ("POST", "/v1/pages", {**AUTH, **JSON}, b"[1, 2]", 422, "JSON object"),
    ("POST", "/v1/pages", {**AUTH, **JSON}, b'{"colour": "red"}', 422, "unknown column"),
    ("POST", "/v1/pages", {**AUTH, **JSON}, b'{"title": {"a": 1}}', 422, "pages.title"),
    ("POST", "/v1/pages", {**AUTH, **JSON}, b'{"title": 1e999}', 422, "pages.title"),
    ("POST", "/v1/pages", {**AUTH, **JSON}, b'{"title": 99999999999999999999}', 422, "title"),
    ("POST", "/v1/pages", {**AUTH, **JSON}, b'{"id": "EDGE01-LON-00AA-AAAAAAAA-01012026000000"}',
     422, "id is not a column"),
    ("POST", "/v1/pages", {**AUTH, **JSON, "idempotency-key": ""}, b"{}", 400, "Idempotency-Key"),
    ("PATCH", "/v1/pages/EDGE01-LON-00AA-AAAAAAAA-01012026000000", {**AUTH, **JSON},
     b'{"title": "x"}', 404, "not found"),
    ("PATCH", "/v1/pages/EDGE01-LON-00AA-AAAAAAAA-01012026000000", {**AUTH, **JSON}, b"{}",
     422, "nothing to change"),
    ("DELETE", "/v1/pages", AUTH, None, 405, "not allowed"),
    ("PUT", "/v1/pages/EDGE01-LON-00AA-AAAAAAAA-01012026000000", AUTH, b"{}", 405, "not allowed"),
    ("GET", "/nowhere", {}, None, 404, "no such path"),
    ("GET", "/v1/" + "a" * 300, {}, None, 404, "too long"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "headers", "body", "status", "words"), BAD,
                         ids=[f"{b[0]} {b[1][:40]} {b[4]}" for b in BAD])  # fmt: skip
def test_bad_input_gets_one_clear_json_line_and_writes_nothing(
    edges, edge01, method, path, headers, body, status, words
):
    before = digest(edges["EDGE01"])
    res = edge01.request(method, path, headers=headers, content=body)
    is_error(res, status, words)
    if status == 405:
        assert "GET" in res.headers["allow"] or "PATCH" in res.headers["allow"]
    assert digest(edges["EDGE01"]) == before


def test_a_body_over_the_limit_is_refused_413_before_it_is_read(edges, edge01):
    big = b'{"body": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    is_error(edge01.post("/v1/pages", content=big, headers={**AUTH, **JSON}), 413, "at most")


# -- load, slow clients, and sync sessions at once -----------------------------------------


def test_beyond_max_concurrent_requests_the_answer_is_503_with_retry_after(tmp_path, redis_server):
    paths = make_nodes(tmp_path, redis_server.url, {"EDGE05": ("edge", "c", ())})
    node = HttpNode(paths["EDGE05"], max_concurrent=2, bookmark_wait_ms=1500).start()
    try:
        # Each request waits 1.5 s for a write the host does not hold: three at once.
        def slow(_):
            with node.client() as c:
                return c.get("/v1/pages", headers={"edgesync-bookmark": "EDGE09:1"})

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(slow, range(4)))
        busy = [r for r in answers if "busy" in r.text]
        assert busy, [r.text for r in answers]
        for res in busy:
            is_error(res, 503, "busy")
            assert res.headers["retry-after"] == "1"
        with node.client() as c:  # the probes still answer the balancer
            assert c.get("/healthz").status_code == 200
    finally:
        node.stop()


def test_a_thousand_slow_clients_do_not_stop_others_being_served(edges):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    node = edges["EDGE02"]
    held = []
    try:
        for _ in range(1000):  # slowloris: a request line and one header, then nothing
            s = socket.create_connection(("127.0.0.1", node.port), timeout=5)
            s.sendall(b"GET /v1/pages HTTP/1.1\r\nHost: edge\r\n")
            held.append(s)
        with node.client() as c:
            started = time.monotonic()
            assert c.get("/healthz").status_code == 200
            assert c.get("/v1/pages", params={"limit": 1}).status_code == 200
            assert time.monotonic() - started < 5  # served, not queued behind them
    finally:
        for s in held:
            s.close()


def test_api_writes_during_sync_sessions_into_the_same_store_all_land(edges, edge01, edge02):
    for i in range(200):  # a backlog on EDGE02 for the sessions to carry
        page(edge02, f"Backlog {i}", section="backlog")
    config02 = str(edges["EDGE02"].config)
    stop = threading.Event()
    sessions = []

    def push_and_pull():
        while not stop.is_set():
            for action in ("push", "pull"):
                res = subprocess.run(
                    [sys.executable, "-m", "edgesync", "--config", config02, action, "EDGE01"],
                    capture_output=True, text=True, timeout=120,
                )  # fmt: skip
                sessions.append(res.returncode)

    syncer = threading.Thread(target=push_and_pull)
    syncer.start()
    made = []
    try:

        def post(i):
            with httpx.Client(base_url=edges["EDGE01"].url, timeout=30) as c:
                return c.post("/v1/pages", json={"section": "burst", "title": f"Burst {i}"},
                              headers=AUTH)  # fmt: skip

        with ThreadPoolExecutor(8) as pool:
            made = list(pool.map(post, range(300)))
    finally:
        stop.set()
        syncer.join()
    assert [r.status_code for r in made] == [201] * 300, {r.text for r in made if r.is_error}
    assert sessions and set(sessions) == {0}, sessions
    ids = {r.json()["id"] for r in made}
    listed, cursor = set(), None
    while True:
        res = edge01.get(
            "/v1/pages", params={"limit": 500, **({"cursor": cursor} if cursor else {})}
        )
        listed |= {r["id"] for r in res.json()["items"]}
        cursor = res.json()["next"]
        if cursor is None:
            break
    assert ids <= listed


# -- the content editor ----------------------------------------------------------------------

EDITOR = "/admin/content-editor"


def test_the_content_editor_signs_in_creates_edits_and_signs_out(edges):
    with edges["EDGE01"].client() as browser:
        assert browser.get(f"{EDITOR}/new").headers["location"].startswith(f"{EDITOR}/sign-in")
        form = browser.get(f"{EDITOR}/sign-in")
        csrf = browser.cookies["edgesync_csrf"]
        assert f'value="{csrf}"' in form.text
        bad = browser.post(f"{EDITOR}/sign-in", data={"token": "wrong", "csrf": csrf})
        assert bad.status_code == 401 and "not valid" in bad.text
        forged = browser.post(f"{EDITOR}/sign-in", data={"token": AUTH["authorization"][7:]})
        assert forged.status_code == 403
        signed = browser.post(
            f"{EDITOR}/sign-in",
            data={"token": AUTH["authorization"][7:], "csrf": csrf, "next": f"{EDITOR}/new"},
        )
        assert signed.status_code == 303 and signed.headers["location"] == f"{EDITOR}/new"
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        new = browser.get(f"{EDITOR}/new")
        token = new.text.split('name="csrf" value="')[1].split('"')[0]
        is_html_error = browser.post(f"{EDITOR}/new", data={"section": "x", "title": "No csrf"})
        assert is_html_error.status_code == 403 and "CSRF" in is_html_error.text
        made = browser.post(
            f"{EDITOR}/new", data={"csrf": token, "section": "Example", "title": "Page <b>1</b>"}
        )
        assert made.status_code == 303
        first = made.headers["location"]
        assert first.startswith(f"{EDITOR}/page/example-page-b-1-b-")
        view = browser.get(first)
        assert view.status_code == 200 and "Page &lt;b&gt;1&lt;/b&gt;" in view.text
        edit = browser.get(f"{first}/edit")
        etag = html.unescape(edit.text.split('name="etag" value="')[1].split('"')[0])
        saved = browser.post(
            f"{first}/edit",
            data={"csrf": token, "etag": etag, "section": "Example", "title": "Renamed"},
        )
        assert saved.status_code == 303 and "/page/example-renamed-" in saved.headers["location"]
        assert browser.get(first).headers["location"] == saved.headers["location"]
        stale = browser.post(
            f"{saved.headers['location']}/edit",
            data={"csrf": token, "etag": etag, "section": "Example", "title": "Lost"},
        )
        assert stale.status_code == 412 and "changed since" in stale.text
        out = browser.post(f"{EDITOR}/sign-out", data={"csrf": token})
        assert out.status_code == 303
        assert browser.get(f"{EDITOR}/new").headers["location"].startswith(f"{EDITOR}/sign-in")


def test_a_stolen_session_cookie_stops_working_once_its_owner_signs_out(edges):
    with edges["EDGE01"].client() as owner:
        owner.get(f"{EDITOR}/sign-in")
        csrf = owner.cookies["edgesync_csrf"]
        owner.post(f"{EDITOR}/sign-in", data={"token": AUTH["authorization"][7:], "csrf": csrf})
        session = owner.cookies["edgesync_session"]
        with edges["EDGE01"].client(cookies={"edgesync_session": session}) as thief:
            assert thief.get(f"{EDITOR}/new").status_code == 200
            token = owner.get(f"{EDITOR}/new").text.split('name="csrf" value="')[1].split('"')[0]
            owner.post(f"{EDITOR}/sign-out", data={"csrf": token})
            assert thief.get(f"{EDITOR}/new").status_code == 303
        forged = session.split(".")[0] + ".0" * 16
        with edges["EDGE01"].client(cookies={"edgesync_session": forged}) as other:
            assert other.get(f"{EDITOR}/new").status_code == 303


def test_the_editor_never_redirects_to_another_site(edges):
    with edges["EDGE01"].client() as browser:
        browser.get(f"{EDITOR}/sign-in")
        csrf = browser.cookies["edgesync_csrf"]
        for target in ("https://evil.example/", "//evil.example/", f"{EDITOR}/..//evil"):
            res = browser.post(
                f"{EDITOR}/sign-in",
                data={"token": AUTH["authorization"][7:], "csrf": csrf, "next": target},
            )
            assert res.headers["location"] == f"{EDITOR}/", target


def test_records_as_json_keep_their_types(edge01):
    res = edge01.post("/v1/notes", json={"text": "ünïcode ✓", "n": 2**62}, headers=AUTH)
    assert res.status_code == 201
    got = edge01.get(res.headers["location"], headers=AUTH).json()
    assert got["n"] == 2**62 and got["text"] == "ünïcode ✓"
    assert json.loads(res.text) == got


def raw(node: HttpNode, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as s:
        s.sendall(request)
        return s.recv(65536)


@pytest.mark.parametrize("request_bytes", [
    b"POST /v1/pages HTTP/1.1\r\nHost: e\r\nContent-Length: -1\r\n\r\n{}",
    b"POST /v1/pages HTTP/1.1\r\nHost: e\r\nContent-Length: 99999999999999999999\r\n\r\n{}",
    b"POST /v1/pages HTTP/1.1\r\nHost: e\r\nContent-Length: 2, 3\r\n\r\n{}",
    b"GET /v1/pages/\xff\xfe HTTP/1.1\r\nHost: e\r\n\r\n",
    b"GET /v1/pages?slug=\xff HTTP/1.1\r\nHost: e\r\n\r\n",
    b"NOT HTTP AT ALL\r\n\r\n",
])  # fmt: skip
def test_requests_that_are_not_http_are_refused_400_by_the_server(edges, request_bytes):
    answer = raw(edges["EDGE01"], request_bytes)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]


def test_headers_over_16_kib_are_refused_431(edges):
    answer = raw(edges["EDGE01"], b"GET /v1/pages HTTP/1.1\r\nHost: e\r\nX-Big: " + b"a" * 17000
                 + b"\r\n\r\n")  # fmt: skip
    assert answer.startswith(b"HTTP/1.1 431 ") and b'"error":"request header' in answer


def test_a_host_that_never_held_the_first_slug_still_redirects_from_it(edges, edge01, edge02):
    made = page(edge01, "Born name", section="moves").json()
    renamed = edge01.patch(f"/v1/pages/{made['id']}", json={"title": "Later name"}, headers=AUTH)
    # EDGE02 receives the creation and the rename in one session.
    bookmark = {"edgesync-bookmark": renamed.headers["edgesync-bookmark"]}
    res = edge02.get(f"/v1/pages/{made['id']}", headers=bookmark)
    assert res.json()["slug"] == renamed.json()["slug"]
    old = edge02.get("/v1/pages", params={"slug": made["slug"]})
    assert old.status_code == 301
    assert old.headers["location"] == f"/v1/pages?slug={renamed.json()['slug']}"
