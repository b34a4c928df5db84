"""The HTTP settings file and the tokens file: every mistake is one line naming it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgesync.config import parse
from edgesync.errors import ConfigError
from edgesync.localfleet import PAGES
from edgesync.web import settings, tokens

CONFIG = parse({
    "node": {"name": "EDGE01", "location": "LON", "role": "edge", "farm": "a",
             "data_dir": "/tmp/x", "redis_url": "redis://127.0.0.1:1/0"},
    "tables": {"pages": PAGES, "notes": {"columns": ["text"]}},
})  # fmt: skip


def test_settings_are_read_with_their_defaults():
    s = settings.parse(
        {"http": {"listen": "0.0.0.0:9000", "public_tables": ["pages"], "editor_table": "pages",
                  "tokens_file": "http_tokens"}},
        CONFIG, Path("/etc/edgesync"),
    )  # fmt: skip
    assert (s.host, s.port, s.public_tables, s.editor_table) == (
        "0.0.0.0",
        9000,
        ("pages",),
        "pages",
    )
    assert s.tokens_file == Path("/etc/edgesync/http_tokens")
    assert s.bookmark_wait_ms == 500 and s.max_concurrent == 64
    assert settings.parse({"http": {"listen": "[::1]:80"}}, CONFIG).host == "::1"


@pytest.mark.parametrize(("http", "words"), [
    ({"listen": "8080"}, "http.listen = '8080': expected ADDRESS:PORT"),
    ({"listen": "a:99999"}, "expected ADDRESS:PORT"),
    ({"port": 8080}, "http.port = 8080: unknown key"),
    ({"public_tables": ["secrets"]}, "http.public_tables = 'secrets': not a table"),
    ({"editor_table": "notes"}, "the editor's table needs a slug"),
    ({"max_concurrent": 0}, "must be at least 1"),
    ({"bookmark_wait_ms": "500"}, "expected int"),
    ({"max_body_bytes": True}, "expected int"),
])  # fmt: skip
def test_a_bad_setting_is_one_line_naming_it(http, words):
    with pytest.raises(ConfigError) as err:
        settings.parse({"http": http}, CONFIG)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_unknown_sections_and_missing_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown section 'server'"):
        settings.parse({"server": {}}, CONFIG)
    with pytest.raises(ConfigError, match="http settings not found"):
        settings.load(tmp_path / "nope.toml", CONFIG)
    bad = tmp_path / "bad.toml"
    bad.write_text("[http\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        settings.load(bad, CONFIG)


def test_tokens_are_kept_as_hashes_checked_whole_and_read_again_when_changed(tmp_path):
    path = tmp_path / "http_tokens"
    path.write_text(f"# the farm's apps\nshop {tokens.hash_token('s3cret')}\n")
    t = tokens.Tokens(path, recheck_s=0)  # the server looks at most once a second
    assert t.check("s3cret") == "shop"
    assert t.check("s3cre") is None and t.check("") is None and t.check("x" * 10_000) is None
    assert "s3cret" not in path.read_text()
    path.write_text(f"blog {tokens.hash_token('other!')}\n")  # shop revoked, blog added
    assert t.check("s3cret") is None and t.check("other!") == "blog"
    path.unlink()
    assert t.check("other!") is None


def test_a_bad_tokens_line_names_its_number(tmp_path):
    with pytest.raises(ConfigError, match=r"http_tokens:2: expected `NAME sha256:HEX`"):
        tokens.parse_tokens(f"a {tokens.hash_token('x')}\nb plaintext\n", "http_tokens")


def test_session_cookies_and_csrf_tokens_are_bound_to_the_host_key():
    ours, theirs = tokens.Signer(b"k" * 32), tokens.Signer(b"j" * 32)
    cookie = ours.cookie("abc")
    assert ours.session_of(cookie) == "abc"
    assert theirs.session_of(cookie) is None
    assert ours.session_of("abc.0000") is None and ours.session_of("a.b.c") is None
    assert ours.csrf_ok("abc", ours.csrf("abc")) and not ours.csrf_ok("abd", ours.csrf("abc"))
    assert not ours.csrf_ok("abc", None)


def test_a_revoked_token_is_refused_once_the_file_is_looked_at_again(tmp_path):
    path = tmp_path / "http_tokens"
    path.write_text(f"shop {tokens.hash_token('s3cret')}\n")
    t = tokens.Tokens(path, recheck_s=0.2)
    assert t.check("s3cret") == "shop"
    path.write_text(f"blog {tokens.hash_token('other!')}\n")
    assert t.check("s3cret") == "shop"  # not looked at again yet
    time.sleep(0.25)
    assert t.check("s3cret") is None and t.check("other!") == "blog"
