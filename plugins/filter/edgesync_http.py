"""HTTP face filters: the api role's variables in the agent's own terms.

The settings file is the agent's format (``edgesync.web.settings``) and so is
the tokens file (``edgesync.web.tokens``). The api role writes both through
these filters, and the validate role reads what it would write back through
the agent's own parsers, so an inventory the hosts would refuse fails before
any host is touched, one line per problem, naming the host. Secrets are hashed
here, on the controller: only ``NAME sha256:HEX`` reaches a host, and no
message here ever holds a secret.
"""

from __future__ import annotations

import re

from jinja2.exceptions import UndefinedError

from edgesync.config import ConfigError
from edgesync.config import parse as parse_config
from edgesync.web import settings as http_settings
from edgesync.web.tokens import hash_token, parse_tokens

# What the agent accepts as a token's name (tokens.py), and what we accept as
# its secret: visible ASCII (a bearer token travels in a header, and the agent
# strips spaces around it), long enough not to be guessed, no longer than the
# agent compares (512).
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SECRET_RE = re.compile(r"^[\x21-\x7e]{16,512}$")
# The api role's variables (without their api_ prefix) that make the settings.
SETTING_VARS = ("listen_address", "port", "public_tables", "editor_table", "bookmark_wait_ms",
                "max_body_bytes", "max_concurrent", "request_timeout_s", "session_hours",
                "workers")  # fmt: skip
NUMBERS = SETTING_VARS[4:]


def edgesync_http_listen(address: str, port) -> str:
    """``address:port`` as the settings file takes it (an IPv6 address in brackets)."""
    address = str(address)
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def edgesync_http_probe(address: str) -> str:
    """The address a host reaches its own API at: loopback when it listens on
    every address, else the one it listens on (IPv6 in brackets, for a URL)."""
    address = str(address)
    wildcard = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}
    if address in wildcard:
        return wildcard[address]
    return f"[{address}]" if ":" in address else address


def edgesync_http_settings(values: dict, tokens_path: str) -> dict:
    """The ``[http]`` keys of a host's settings file, from the api role's
    variables (``values``: their names without the api_ prefix). A number given
    as a string is read as one; anything else is left as given, for the
    agent's parser to judge."""
    missing = [name for name in SETTING_VARS if name not in values]
    if missing:
        raise ValueError(f"edgesync_http_settings: missing api_{missing[0]}")
    out = {
        "listen": edgesync_http_listen(values["listen_address"], _number(values["port"])),
        "tokens_file": str(tokens_path),
        "public_tables": _plain(values["public_tables"]),
    }
    if values["editor_table"]:
        out["editor_table"] = str(values["editor_table"])
    for name in NUMBERS:
        out[name] = _number(values[name])
    return out


def edgesync_http_tokens(tokens: dict) -> str:
    """The tokens file of a host: ``NAME sha256:HEX`` per line, by name; each
    secret hashed here by the agent's own ``hash_token``."""
    if not isinstance(tokens, dict):
        raise ValueError("api_tokens must be a mapping of token names to secrets")
    text = "".join(f"{name} {hash_token(str(secret))}\n" for name, secret in sorted(tokens.items()))
    parse_tokens(text, "api_tokens")  # the agent's parser: a bad name fails here too
    return text


def edgesync_http_errors(fleet: list[dict], hostvars, defaults: dict, agent_settings: dict,
                         tokens_path: str, redis_port: int) -> list[str]:  # fmt: skip
    """Every problem of the fleet's HTTP settings, one line each naming its
    host: each host's api_* variables (``hostvars``, else the api role's
    ``defaults``) as the api role would write them, read back by the agent's
    own parsers."""
    tables = _tables_config(agent_settings)
    errors = []
    for h in fleet:
        try:
            values = _values(hostvars[h["host"]], defaults)
            why = _host_errors(values, tables, tokens_path, int(redis_port))
        except UndefinedError as exc:  # an undefined variable, or a vault without its password
            why = [
                "its api_* variables hold ansible-vault secrets and no vault password was given "
                "(ANSIBLE_VAULT_PASSWORD_FILE)"
                if "vault" in str(exc).lower()
                else f"cannot read its api_* variables: {exc}"
            ]
        errors += [f"host {h['host']}: {line}" for line in why]
    return errors


def _values(hv, defaults: dict) -> dict:
    """A host's api_* variables (without the prefix), as plain Python values:
    the inventory's, else the api role's defaults."""
    values = {k.removeprefix("api_"): hv.get(k, v) for k, v in defaults.items()}
    tokens = values.get("tokens")
    if isinstance(tokens, dict):
        values["tokens"] = {name: str(secret) if isinstance(secret, str) else secret
                            for name, secret in tokens.items()}  # fmt: skip
    return values


def _host_errors(values: dict, tables, tokens_path: str, redis_port: int) -> list[str]:
    out = []
    port = _number(values.get("port"))
    if type(port) is not int or not 0 < port < 65536:
        out.append(f"api_port {values.get('port')!r} is not a port (1-65535)")
    elif port in (22, redis_port):
        out.append(f"api_port {port} is taken ({'sshd' if port == 22 else 'Redis'} listens there)")
    tokens = values.get("tokens") or {}
    if not isinstance(tokens, dict):
        out.append("api_tokens must be a mapping of token names to secrets")
        tokens = {}
    seen: dict[str, str] = {}
    for name, secret in tokens.items():
        if not isinstance(name, str) or not NAME_RE.match(name):
            out.append(f"api_tokens name {str(name)[:80]!r} must match [A-Za-z0-9_.-]{{1,64}}")
        elif not isinstance(secret, str) or not SECRET_RE.match(secret):
            out.append(f"api_tokens {name}: its secret must be 16 to 512 visible ASCII characters")
        elif secret in seen:
            out.append(f"api_tokens {seen[secret]} and {name} have the same secret")
        else:
            seen[secret] = name
    if out or tables is None:  # a bad table config is the topology check's to name
        return out
    try:
        settings = edgesync_http_settings(values, tokens_path)
        http_settings.parse({"http": settings}, tables)
    except (ConfigError, ValueError) as exc:
        out.append(str(exc))
    return out


def _tables_config(agent_settings: dict):
    """A config holding only the agent's tables (what the settings are checked
    against), or None when the tables themselves are wrong."""
    node = {"name": "CHECK", "location": "XX", "role": "master", "data_dir": "/",
            "redis_url": "redis://127.0.0.1:6379/0"}  # fmt: skip
    try:
        return parse_config({"node": node, "tables": agent_settings.get("tables") or {}})
    except ConfigError:
        return None


def _number(value):
    """A plain int for an int or the digits of one (Jinja renders some as
    strings, and Ansible hands over ints of its own type); else as given."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        return int(value)
    return value


def _plain(value):
    """Lists and strings as plain Python types (Ansible hands over its own)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class FilterModule:
    def filters(self):
        return {
            "edgesync_http_listen": edgesync_http_listen,
            "edgesync_http_probe": edgesync_http_probe,
            "edgesync_http_settings": edgesync_http_settings,
            "edgesync_http_tokens": edgesync_http_tokens,
            "edgesync_http_errors": edgesync_http_errors,
        }
