"""The HTTP face's settings: one TOML file beside the agent's config, every key here.

```toml
[http]
listen = "0.0.0.0:8080"        # address:port the API listens on
tokens_file = "http_tokens"    # `NAME sha256:HEX` per line: the hashes of the bearer
                               #   tokens that may write (and read private tables);
                               #   relative to this file; missing: no token is valid
public_tables = ["pages"]      # tables anyone may read without a token
editor_table = "pages"         # the table the content editor edits (needs a slug)
bookmark_wait_ms = 500         # how long a read waits for a bookmark it does not hold
max_body_bytes = 1048576       # a larger request body: 413
max_concurrent = 64            # requests at once beyond which the answer is 503
request_timeout_s = 10         # a request not answered by then: 503
session_hours = 12             # an editor's sign-in lasts this long
workers = 1                    # server processes
```

The agent's own config (config.py) knows nothing of HTTP: a release without
the HTTP face reads the same agent config.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..errors import ConfigError

_KEYS = {
    "listen": str,
    "tokens_file": str,
    "public_tables": list,
    "editor_table": str,
    "bookmark_wait_ms": int,
    "max_body_bytes": int,
    "max_concurrent": int,
    "request_timeout_s": int,
    "session_hours": int,
    "workers": int,
}
_AT_LEAST = {
    "bookmark_wait_ms": 0,
    "max_body_bytes": 1024,
    "max_concurrent": 1,
    "request_timeout_s": 1,
    "session_hours": 1,
    "workers": 1,
}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    tokens_file: Path | None = None
    public_tables: tuple[str, ...] = ()
    editor_table: str | None = None
    bookmark_wait_ms: int = 500
    max_body_bytes: int = 1024 * 1024
    max_concurrent: int = 64
    request_timeout_s: int = 10
    session_hours: int = 12
    workers: int = 1


def _fail(key: str, value: object, why: str) -> ConfigError:
    return ConfigError(f"invalid http setting http.{key} = {value!r}: {why}")


def parse(data: dict, config: Config, base: Path | None = None) -> Settings:
    """Settings from the parsed TOML; every table named must be one the agent syncs."""
    unknown = set(data) - {"http"}
    if unknown:
        raise ConfigError(f"invalid http settings: unknown section {sorted(unknown)[0]!r}")
    http = data.get("http", {})
    if not isinstance(http, dict):
        raise ConfigError("invalid http settings: [http] must be a table")
    out: dict = {}
    for key, value in http.items():
        kind = _KEYS.get(key)
        if kind is None:
            raise _fail(key, value, "unknown key")
        if type(value) is not kind:
            raise _fail(key, value, f"expected {kind.__name__}")
        if key in _AT_LEAST and value < _AT_LEAST[key]:
            raise _fail(key, value, f"must be at least {_AT_LEAST[key]}")
    if "listen" in http:
        host, sep, port = http["listen"].rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _fail("listen", http["listen"], "expected ADDRESS:PORT")
        out["host"], out["port"] = host.strip("[]"), int(port)
    if "tokens_file" in http:
        path = Path(http["tokens_file"])
        out["tokens_file"] = path if path.is_absolute() or base is None else base / path
    tables = http.get("public_tables", [])
    for table in tables:
        if table not in config.tables:
            raise _fail("public_tables", table, "not a table of the agent's config")
    out["public_tables"] = tuple(tables)
    editor = http.get("editor_table")
    if editor is not None:
        if editor not in config.tables:
            raise _fail("editor_table", editor, "not a table of the agent's config")
        if not config.tables[editor].slug:
            raise _fail("editor_table", editor, "the editor's table needs a slug")
        out["editor_table"] = editor
    for key in _AT_LEAST:
        if key in http:
            out[key] = http[key]
    return Settings(**out)


def load(path: str | os.PathLike | None, config: Config) -> Settings:
    """The settings in ``path``; defaults when None (listen on loopback, no tokens)."""
    if path is None:
        return Settings()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"http settings not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read http settings {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in http settings {path}: {exc}") from None
    return parse(data, config, path.parent)
