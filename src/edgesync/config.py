"""The agent's configuration: one TOML file, every key documented here.

```toml
[node]
name = "EDGE01"            # [A-Z0-9]{1,16}; the EDGENODE part of every ID made here
location = "LON"           # [A-Z0-9]{2,8}; the LOC part of every ID made here
role = "edge"              # master | node | edge
farm = "lon-a"             # the farm an edge belongs to; required for edges
data_dir = "/var/lib/edgesync"        # holds edgesync.db (SQLite, WAL)
redis_url = "redis://127.0.0.1:6379/0"  # the outbox; may carry a password
max_value_bytes = 1048576  # largest single value accepted (default 1 MiB)
durability = "normal"      # normal: survives a crash of the agent (WAL,
                           #   synchronous=NORMAL); full: also survives power
                           #   loss (an fsync per commit, about half the rate)
trusted = ["MASTER01", "NODE02"]  # nodes only: the peers this node may sync with,
                           #   and the only callers (besides masters) it accepts
max_clock_skew_ms = 300000 # a peer whose clock is further ahead is refused (>= 1000;
                           #   a node whose own stamps are further ahead heals)
batch_size = 1000          # changes per sync batch
max_early = 100000         # changes of one origin kept ahead of an earlier one still
                           #   missing here; a batch that would keep more is refused
                           #   until the gap fills (so a stolen key cannot grow it)
quota_changes = 0          # per node (an origin and its incarnations), the changes
quota_bytes = 0            #   and bytes of change bodies taken per quota_interval_s
quota_interval_s = 3600    #   (0: no limit); the rest is deferred, sent again later
connect_timeout_s = 10     # a sync session's deadlines (seconds; deadlines.py): until
idle_timeout_s = 60        #   the peer first answers; any one read or write blocked
session_timeout_s = 900    #   on the peer; the whole session. Past one: exit 4
ssh_key = "id_ed25519"     # this node's own key for ssh:// peers (default in data_dir)
known_hosts = "known_hosts"  # pinned host keys for ssh:// peers (default in data_dir)
signing_key = "signing_key"  # this node's ed25519 key, made by init (default in data_dir);
                           #   init also writes signing_key.pub, `NAME PUBLIC_KEY`
keys_file = "fleet_keys"   # the fleet's public keys, `NAME PUBLIC_KEY` per line (default
                           #   in data_dir; the trust role writes it); missing: no keys

[peers.MASTER01]           # one section per peer, as this node knows it
url = "ssh://edgesync@master.example:22"  # or "local:/path/to/its/config.toml"
role = "master"            # master | node | edge: what this node believes it is
farm = "lon-a"             # required for edge peers
push = true                # this node pushes to the peer on a schedule: the Redis
                           #   outbox keeps a consumer group for it (default false;
                           #   pushing to other peers works, from the SQLite log)

[keys]                     # more public keys, NAME = "BASE64" (a local: peer's key is
MASTER01 = "Hx3…="         #   also read from the signing_key.pub beside its database)

[tables.pages]             # one section per synced table
columns = ["section", "title", "body"]  # names: [a-z][a-z0-9_]{0,62}
slug = ["section", "title"]             # optional: columns the slug is made from
```

The file is named by ``edgesync --config PATH`` or ``EDGESYNC_CONFIG``. A
relative ``data_dir`` is taken relative to the config file. Any invalid key
fails at start with a message naming the key and the value.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from .errors import ConfigError
from .ids import LOCATION_RE, NODE_NAME_RE
from .signing import PUBLIC_RE

ROLES = ("master", "node", "edge")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}\Z")
FARM_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
RESERVED_COLUMNS = {"id", "slug"}
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024

_NODE_KEYS = {
    "name",
    "location",
    "role",
    "farm",
    "data_dir",
    "redis_url",
    "max_value_bytes",
    "durability",
    "trusted",
    "max_clock_skew_ms",
    "batch_size",
    "max_early",
    "quota_changes",
    "quota_bytes",
    "quota_interval_s",
    "ssh_key",
    "known_hosts",
    "signing_key",
    "keys_file",
    "connect_timeout_s",
    "idle_timeout_s",
    "session_timeout_s",
}
_PEER_KEYS = {"url", "role", "farm", "push"}
# Deadlines of a sync session (seconds): key, default.
TIMEOUTS = {"connect_timeout_s": 10, "idle_timeout_s": 60, "session_timeout_s": 900}
_TABLE_KEYS = {"columns", "slug"}


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[str, ...]
    slug: tuple[str, ...] = ()


@dataclass(frozen=True)
class Peer:
    name: str
    url: str
    role: str
    farm: str | None = None
    push: bool = False


@dataclass(frozen=True)
class Config:
    name: str
    location: str
    role: str
    farm: str | None
    data_dir: Path
    redis_url: str
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    durability: str = "normal"
    tables: dict[str, TableSpec] = field(default_factory=dict)
    path: Path | None = None
    trusted: tuple[str, ...] = ()
    peers: dict[str, Peer] = field(default_factory=dict)
    max_clock_skew_ms: int = 300_000
    batch_size: int = 1000
    max_early: int = 100_000
    quota_changes: int = 0
    quota_bytes: int = 0
    quota_interval_s: int = 3600
    ssh_key: Path | None = None
    known_hosts: Path | None = None
    signing_key: Path | None = None
    keys_file: Path | None = None
    keys: dict[str, str] = field(default_factory=dict)
    connect_timeout_s: float = TIMEOUTS["connect_timeout_s"]
    idle_timeout_s: float = TIMEOUTS["idle_timeout_s"]
    session_timeout_s: float = TIMEOUTS["session_timeout_s"]

    @property
    def db_path(self) -> Path:
        return self.data_dir / "edgesync.db"


def _fail(key: str, value: object, why: str) -> ConfigError:
    return ConfigError(f"invalid config: {key} = {value!r}: {why}")


def _str(section: dict, key: str, where: str, required: bool = True) -> str | None:
    full = f"{where}.{key}"
    if key not in section:
        if required:
            raise ConfigError(f"invalid config: {full} is missing")
        return None
    value = section[key]
    if not isinstance(value, str):
        raise _fail(full, value, "must be a string")
    return value


def parse(data: dict, path: Path | None = None) -> Config:
    """Validate a parsed TOML document and return the Config."""
    node = data.get("node")
    if not isinstance(node, dict):
        raise ConfigError("invalid config: [node] section is missing")
    for key in node:
        if key not in _NODE_KEYS:
            raise _fail(f"node.{key}", node[key], "unknown key")
    name = _str(node, "name", "node")
    if not NODE_NAME_RE.match(name):
        raise _fail("node.name", name, "must match [A-Z0-9]{1,16}")
    location = _str(node, "location", "node")
    if not LOCATION_RE.match(location):
        raise _fail("node.location", location, "must match [A-Z0-9]{2,8}")
    role = _str(node, "role", "node")
    if role not in ROLES:
        raise _fail("node.role", role, "must be one of master, node, edge")
    farm = _str(node, "farm", "node", required=False)
    if farm is not None and not FARM_RE.match(farm):
        raise _fail("node.farm", farm, "must match [a-z0-9][a-z0-9_-]{0,62}")
    if role == "edge" and farm is None:
        raise ConfigError("invalid config: node.farm is missing (required for edges)")
    if role != "edge" and farm is not None:
        raise _fail("node.farm", farm, "only edges (role = edge) belong to a farm")
    data_dir = _str(node, "data_dir", "node")
    base = path.parent if path is not None else Path.cwd()
    data_path = (base / data_dir).resolve() if not os.path.isabs(data_dir) else Path(data_dir)
    redis_url = _str(node, "redis_url", "node", required=False) or "redis://127.0.0.1:6379/0"
    if not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise _fail("node.redis_url", redis_url, "must start with redis://, rediss:// or unix://")
    if not _has_valid_port(redis_url):
        raise _fail("node.redis_url", redis_url, "the port must be a number from 1 to 65535")
    max_value = node.get("max_value_bytes", DEFAULT_MAX_VALUE_BYTES)
    if not isinstance(max_value, int) or isinstance(max_value, bool) or max_value < 1:
        raise _fail("node.max_value_bytes", max_value, "must be a positive integer")
    durability = node.get("durability", "normal")
    if durability not in ("normal", "full"):
        raise _fail("node.durability", durability, "must be normal or full")

    trusted = node.get("trusted", [])
    if not isinstance(trusted, list) or any(
        not isinstance(t, str) or not NODE_NAME_RE.match(t) for t in trusted
    ):
        raise _fail("node.trusted", trusted, "must be a list of node names")
    if trusted and role != "node":
        raise _fail("node.trusted", trusted, "only nodes (role = node) have a trusted list")
    skew = node.get("max_clock_skew_ms", 300_000)
    if not isinstance(skew, int) or isinstance(skew, bool) or skew < 1000:
        # Below a second, a clock's ordinary corrections would count as set back
        # (each starts a new incarnation: Store.heal_clock).
        raise _fail("node.max_clock_skew_ms", skew, "must be an integer of at least 1000")
    batch_size = node.get("batch_size", 1000)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not batch_size >= 1:
        raise _fail("node.batch_size", batch_size, "must be a positive integer")
    if batch_size > 10_000:
        raise _fail("node.batch_size", batch_size, "must be at most 10000")
    max_early = node.get("max_early", 100_000)
    if not isinstance(max_early, int) or isinstance(max_early, bool) or max_early < 1:
        raise _fail("node.max_early", max_early, "must be a positive integer")
    quota = {}
    for key, default, low in (("quota_changes", 0, 0), ("quota_bytes", 0, 0),
                              ("quota_interval_s", 3600, 1)):  # fmt: skip
        value = node.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise _fail(f"node.{key}", value, f"must be an integer of at least {low}")
        quota[key] = value
    timeouts = {}
    for key, default in TIMEOUTS.items():
        value = node.get(key, default)
        if type(value) not in (int, float) or not 0 < value <= 86_400:
            raise _fail(f"node.{key}", value, "must be a number of seconds, above 0, at most 86400")
        timeouts[key] = float(value)
    ssh_key = data_path / (_str(node, "ssh_key", "node", required=False) or "id_ed25519")
    known_hosts = data_path / (_str(node, "known_hosts", "node", required=False) or "known_hosts")
    signing_key = data_path / (_str(node, "signing_key", "node", required=False) or "signing_key")
    keys_file = data_path / (_str(node, "keys_file", "node", required=False) or "fleet_keys")

    keys_raw = data.get("keys", {})
    if not isinstance(keys_raw, dict):
        raise _fail("keys", keys_raw, 'must be a table of NAME = "PUBLIC_KEY"')
    for kname, text in keys_raw.items():
        if not NODE_NAME_RE.match(kname):
            raise _fail(f"keys.{kname}", text, "key names are node names: [A-Z0-9]{1,16}")
        if not isinstance(text, str) or not PUBLIC_RE.match(text):
            raise _fail(f"keys.{kname}", text, "must be an ed25519 public key (44 base64 chars)")

    peers_raw = data.get("peers", {})
    if not isinstance(peers_raw, dict):
        raise _fail("peers", peers_raw, "must be a table of tables")
    peers: dict[str, Peer] = {}
    for pname, spec in peers_raw.items():
        where = f"peers.{pname}"
        if not NODE_NAME_RE.match(pname):
            raise _fail(where, pname, "peer names are node names: [A-Z0-9]{1,16}")
        if pname == name:
            raise _fail(where, pname, "a node is not its own peer")
        if not isinstance(spec, dict):
            raise _fail(where, spec, "must be a table")
        for key in spec:
            if key not in _PEER_KEYS:
                raise _fail(f"{where}.{key}", spec[key], "unknown key")
        url = _str(spec, "url", where)
        if not url.startswith(("ssh://", "local:")):
            raise _fail(f"{where}.url", url, "must start with ssh:// or local:")
        if url.startswith("ssh://") and (not _has_valid_port(url) or not urlparse(url).hostname):
            raise _fail(f"{where}.url", url, "expected ssh://user@host[:port], port 1 to 65535")
        prole = _str(spec, "role", where)
        if prole not in ROLES:
            raise _fail(f"{where}.role", prole, "must be one of master, node, edge")
        pfarm = _str(spec, "farm", where, required=False)
        if prole == "edge" and pfarm is None:
            raise ConfigError(f"invalid config: {where}.farm is missing (required for edges)")
        if prole != "edge" and pfarm is not None:
            raise _fail(f"{where}.farm", pfarm, "only edges (role = edge) belong to a farm")
        if url.startswith("local:"):
            target = url[len("local:") :]
            if not os.path.isabs(target):
                url = "local:" + str((base / target).resolve())
        push = spec.get("push", False)
        if type(push) is not bool:
            raise _fail(f"{where}.push", push, "must be true or false")
        peers[pname] = Peer(pname, url, prole, pfarm, push)

    tables_raw = data.get("tables", {})
    if not isinstance(tables_raw, dict):
        raise _fail("tables", tables_raw, "must be a table of tables")
    tables: dict[str, TableSpec] = {}
    for tname, spec in tables_raw.items():
        where = f"tables.{tname}"
        if not NAME_RE.match(tname):
            raise _fail(where, tname, "table names must match [a-z][a-z0-9_]{0,62}")
        if not isinstance(spec, dict):
            raise _fail(where, spec, "must be a table")
        for key in spec:
            if key not in _TABLE_KEYS:
                raise _fail(f"{where}.{key}", spec[key], "unknown key")
        columns = spec.get("columns")
        if not isinstance(columns, list) or not columns:
            raise _fail(f"{where}.columns", columns, "must be a non-empty list of names")
        for col in columns:
            if not isinstance(col, str) or not NAME_RE.match(col) or col in RESERVED_COLUMNS:
                raise _fail(
                    f"{where}.columns",
                    col,
                    "column names must match [a-z][a-z0-9_]{0,62} and not be id or slug",
                )
        if len(set(columns)) != len(columns):
            raise _fail(f"{where}.columns", columns, "names must be distinct")
        slug = spec.get("slug", [])
        if not isinstance(slug, list) or any(c not in columns for c in slug):
            raise _fail(f"{where}.slug", slug, "must be a list of the table's columns")
        tables[tname] = TableSpec(tname, tuple(columns), tuple(slug))

    return Config(
        name=name,
        location=location,
        role=role,
        farm=farm,
        data_dir=data_path,
        redis_url=redis_url,
        max_value_bytes=max_value,
        durability=durability,
        tables=tables,
        path=path,
        trusted=tuple(trusted),
        peers=peers,
        max_clock_skew_ms=skew,
        max_early=max_early,
        **quota,
        batch_size=batch_size,
        ssh_key=ssh_key,
        known_hosts=known_hosts,
        signing_key=signing_key,
        keys_file=keys_file,
        keys=dict(keys_raw),
        **timeouts,
    )


def _has_valid_port(url: str) -> bool:
    try:
        port = urlparse(url).port
    except ValueError:  # not a number, or out of range
        return False
    return port is None or port > 0


def load(path: str | os.PathLike | None = None) -> Config:
    """Load the config from ``path``, or from ``EDGESYNC_CONFIG``."""
    if path is None:
        path = os.environ.get("EDGESYNC_CONFIG")
    if not path:
        raise ConfigError("no config: pass --config PATH or set EDGESYNC_CONFIG")
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except OSError as exc:  # a directory, unreadable, ...
        raise ConfigError(f"config file {p} cannot be read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid config {p}: not valid TOML: {exc}") from None
    return parse(data, p.resolve())


def dump(data: dict) -> str:
    """TOML text of a config in the shape ``parse`` takes ({"node": {...},
    "peers": {NAME: {...}}, "tables": {NAME: {...}}}); None values are left out.
    The one writer of agent configs in Python (the Ansible role renders its own
    from the inventory)."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str | os.PathLike):
            return json.dumps(os.fspath(v), ensure_ascii=False)  # a valid TOML basic string
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {v!r} to a config")

    def section(header: str, keys: dict) -> list[str]:
        return [f"[{header}]", *(f"{k} = {value(v)}" for k, v in keys.items() if v is not None)]

    lines = section("node", data.get("node", {}))
    if data.get("keys"):
        lines += ["", *section("keys", data["keys"])]
    for kind in ("peers", "tables"):
        for name, keys in data.get(kind, {}).items():
            lines += ["", *section(f"{kind}.{name}", keys)]
    return "\n".join(lines) + "\n"
