"""Fuzzing the HTTP face of a running server: whatever the method, path, headers
and body, the answer is never a 5xx but the documented 503, always one line of
JSON (or, in the editor, a page), and a refused request changes no data."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from httpnode import TOKEN, HttpNode
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_http import make_nodes

from edgesync.config import load
from edgesync.db import Database
from edgesync.reads import digest

SEGMENTS = st.one_of(
    st.sampled_from(["v1", "pages", "notes", "admin", "content-editor", "page", "edit", "new",
                     "sign-in", "sign-out", "healthz", "readyz", "metrics", "..", ".", "",
                     "EDGE07-LON-00AA-AAAAAAAA-01012026000000", "example-page-43ax"]),
    st.text(min_size=1, max_size=40),
)  # fmt: skip
HEADER_VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
HEADERS = st.fixed_dictionaries({}, optional={
    "authorization": st.sampled_from([f"Bearer {TOKEN}", "Bearer nope", "Basic eDp5", ""]),
    "content-type": st.sampled_from(["application/json", "application/x-www-form-urlencoded",
                                     "text/plain", "application/json; charset=latin-1"]),
    "if-match": HEADER_VALUES, "if-none-match": HEADER_VALUES,
    "idempotency-key": HEADER_VALUES,
    "edgesync-bookmark": st.one_of(HEADER_VALUES, st.just("EDGE07:0")),
    "cookie": HEADER_VALUES,
})  # fmt: skip
JSONS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["section", "title", "body", "text", "n", "id", "x"]) | st.text(max_size=8),
        inner, max_size=4),
    max_leaves=10,
)  # fmt: skip
BODIES = st.one_of(st.none(), st.binary(max_size=200),
                   JSONS.map(lambda v: httpx._content.json_dumps(v).encode()))  # fmt: skip
QUERIES = st.dictionaries(
    st.sampled_from(["slug", "limit", "cursor", "next", "x"]), st.text(max_size=30), max_size=3
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, redis_server):
    paths = make_nodes(tmp_path_factory.mktemp("fuzz"), redis_server.url,
                       {"EDGE07": ("edge", "z", ())})  # fmt: skip
    node = HttpNode(paths["EDGE07"]).start()
    yield node
    node.stop()
    assert "Traceback" not in node.errors_logged(), node.errors_logged()[-3000:]


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(method="GET", segments=["", "", "", "v1"], query={}, headers={}, body=None)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PATCH", "DELETE", "PUT", "OPTIONS"]),
    segments=st.lists(SEGMENTS, min_size=1, max_size=5),
    query=QUERIES,
    headers=HEADERS,
    body=BODIES,
)
def test_no_request_gets_a_5xx_but_503_nor_changes_data_when_refused(
    server, method, segments, query, headers, body
):
    config = load(server.config)
    db = Database(config)
    try:
        before = digest(db, config)
        path = "/" + "/".join(quote(s, safe="") for s in segments)
        with httpx.Client(timeout=10) as client:
            try:
                # Absolute: httpx refuses a relative URL whose path starts "//".
                url = server.url + path
                res = client.request(method, url, params=query, headers=headers, content=body)
            except httpx.LocalProtocolError:
                return  # httpx itself refused to send it (a header it cannot encode)
        assert res.status_code < 500 or res.status_code == 503, (res.status_code, res.text)
        if res.status_code >= 400 and method != "HEAD":
            kind = res.headers["content-type"]
            if kind == "application/json":
                assert res.text.count("\n") == 0 and set(res.json()) == {"error", "detail"}
            else:
                assert kind.startswith("text/html") and "Traceback" not in res.text
        if res.status_code >= 400:
            assert digest(db, config) == before, (method, path, res.status_code, res.text)
    finally:
        db.close()
