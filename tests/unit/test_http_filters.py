"""The HTTP face's filters: what the api role writes, and what the validate role
refuses, read through the agent's own parsers."""

import json
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "filter"))

import jinja2
import yaml
from edgesync_http import FilterModule

from edgesync.config import parse as parse_config
from edgesync.web import settings as http_settings
from edgesync.web.tokens import Tokens, hash_token

REPO = Path(__file__).resolve().parents[2]
FILTERS = FilterModule().filters()
# The api role's defaults as the validate role reads them (the port rendered).
DEFAULTS = {**yaml.safe_load((REPO / "roles/api/defaults/main.yml").read_text()), "api_port": 8080}
PAGES = {"columns": ["section", "title", "body"], "slug": ["section", "title"]}
AGENT = {"tables": {"pages": PAGES, "notes": {"columns": ["text"]}}}
TOKENS_PATH = "/etc/edgesync/http_tokens"
GOOD = {"api_tokens": {"farm-lon": "a-long-enough-secret-1"}, "api_public_tables": ["pages"],
        "api_editor_table": "pages"}  # fmt: skip


def errors(hostvars: dict) -> list[str]:
    fleet = [{"host": h} for h in hostvars]
    return FILTERS["edgesync_http_errors"](fleet, hostvars, DEFAULTS, AGENT, TOKENS_PATH, 6379)


def settings_of(values: dict) -> dict:
    short = {k.removeprefix("api_"): v for k, v in {**DEFAULTS, **values}.items()}
    return FILTERS["edgesync_http_settings"](short, TOKENS_PATH)


def test_the_tokens_file_holds_names_and_hashes_only(tmp_path):
    text = FILTERS["edgesync_http_tokens"](
        {"ops": "second-secret-here-2", "app": "first-secret-here-1"}
    )
    assert (
        text
        == f"app {hash_token('first-secret-here-1')}\nops {hash_token('second-secret-here-2')}\n"
    )
    assert "secret" not in text.replace("sha256", "")
    # the agent reads it and knows each token by its secret
    (tmp_path / "tokens").write_text(text)
    tokens = Tokens(tmp_path / "tokens")
    assert tokens.check("first-secret-here-1") == "app" and tokens.check("guess") is None


def test_a_revoked_name_leaves_the_file():
    both = FILTERS["edgesync_http_tokens"]({"app": "first-secret-here-1", "ops": "x" * 20})
    one = FILTERS["edgesync_http_tokens"]({"app": "first-secret-here-1"})
    assert "ops " in both and "ops " not in one


def test_the_settings_are_what_the_agent_reads():
    cfg = parse_config({"node": {"name": "EDGE01", "location": "LON", "role": "master",
                                 "data_dir": "/", "redis_url": "redis://127.0.0.1:6379/0"},
                        "tables": AGENT["tables"]})  # fmt: skip
    written = settings_of({**GOOD, "api_port": "9090", "api_listen_address": "::"})
    parsed = http_settings.parse(tomllib.loads(_toml(written)), cfg)
    assert (parsed.host, parsed.port) == ("::", 9090)
    assert parsed.public_tables == ("pages",) and parsed.editor_table == "pages"
    assert str(parsed.tokens_file) == TOKENS_PATH
    assert "editor_table" not in settings_of({"api_editor_table": ""})


def test_a_good_fleet_has_no_problems_and_hosts_may_differ():
    assert errors({"edge01": GOOD, "edge02": {**GOOD, "api_port": 8081}, "master01": {}}) == []


def test_each_bad_value_is_one_line_naming_its_host():
    said = errors({
        "edge01": {**GOOD, "api_tokens": {"bad name!": "a-long-enough-secret-1"}},
        "edge02": {**GOOD, "api_tokens": {"short": "tiny"}},
        "edge03": {**GOOD, "api_tokens": {"a": "the-same-secret-twice",
                                          "b": "the-same-secret-twice"}},
        "edge04": {**GOOD, "api_port": 70000},
        "node01": {**GOOD, "api_port": 6379},
        "node02": {**GOOD, "api_public_tables": ["pages", "nosuch"]},
        "master01": {**GOOD, "api_editor_table": "notes"},
        "master02": {**GOOD, "api_bookmark_wait_ms": -1},
    })  # fmt: skip
    assert said == [
        "host edge01: api_tokens name 'bad name!' must match [A-Za-z0-9_.-]{1,64}",
        "host edge02: api_tokens short: its secret must be 16 to 512 visible ASCII characters",
        "host edge03: api_tokens a and b have the same secret",
        "host edge04: api_port 70000 is not a port (1-65535)",
        "host node01: api_port 6379 is taken (Redis listens there)",
        "host node02: invalid http setting http.public_tables = 'nosuch': "
        "not a table of the agent's config",
        "host master01: invalid http setting http.editor_table = 'notes': "
        "the editor's table needs a slug",
        "host master02: invalid http setting http.bookmark_wait_ms = -1: must be at least 0",
    ]
    # no secret is ever part of a message
    assert not any("tiny" in line or "the-same-secret" in line for line in said)


def test_the_host_reaches_its_own_api_on_loopback_unless_it_listens_elsewhere():
    probe = FILTERS["edgesync_http_probe"]
    assert [probe(a) for a in ("0.0.0.0", "::", "10.0.0.5", "fd00::5")] == [
        "127.0.0.1", "[::1]", "10.0.0.5", "[fd00::5]"]  # fmt: skip


def _toml(settings: dict) -> str:
    """The api role's own template, rendered as Ansible renders it."""
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True)
    env.filters["to_json"] = json.dumps
    template = env.from_string((REPO / "roles/api/templates/http.toml.j2").read_text())
    return template.render(api_settings=settings, ansible_managed="Ansible managed")
