"""Who may write: bearer tokens, the editor's session cookies, CSRF tokens.

Tokens are made by Ansible (per app or farm) and reach a host only as hashes:
the tokens file holds ``NAME sha256:HEX`` per line. A presented token is
hashed and compared with every listed hash in constant time, so neither a
hash nor the time taken tells which part of a guess was right. Revoking a
token is removing its line (the file is read again when it changes).

A signed-in editor holds a session: a random ID kept in ``_sessions`` with
its expiry, sent as ``ID.MAC`` in an HttpOnly, SameSite=Strict cookie whose MAC
is made with this host's session key (``http_session_key`` in the data
directory, made at first start). Signing out deletes the session. A form's
CSRF token is a MAC of its session ID.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import time
from pathlib import Path

from ..errors import ConfigError

_LINE = re.compile(r"^([A-Za-z0-9_.-]{1,64}) sha256:([0-9a-f]{64})$")


def hash_token(token: str) -> str:
    """What the tokens file holds for ``token``."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(text: str, where: str) -> list[tuple[str, bytes]]:
    """(name, digest) per line; a line not of the form names its number."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise ConfigError(f"{where}:{number}: expected `NAME sha256:HEX` (64 hex digits)")
        out.append((m.group(1), bytes.fromhex(m.group(2))))
    return out


class Tokens:
    """The tokens file, read again whenever it changes: looked at (a stat) at
    most every ``recheck_s`` seconds, so a token revoked by a run of the api
    role is refused within a second, and a read does not pay a system call."""

    def __init__(self, path: Path | None, recheck_s: float = 1.0):
        self.path = path
        self.recheck_s = recheck_s
        self._looked = float("-inf")
        self._seen: tuple[int, int] | None = None
        self._entries: list[tuple[str, bytes]] = []

    def _current(self) -> list[tuple[str, bytes]]:
        if self.path is None:
            return []
        now = time.monotonic()
        if now - self._looked < self.recheck_s:
            return self._entries
        self._looked = now
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self._entries = None, []
            return []
        mark = (st.st_mtime_ns, st.st_size)
        if mark != self._seen:
            self._entries = parse_tokens(self.path.read_text(encoding="utf-8"), str(self.path))
            self._seen = mark
        return self._entries

    def check(self, token: str) -> str | None:
        """The name of the token, or None. Every entry is compared, always."""
        if not token or len(token) > 512:
            return None
        digest = hashlib.sha256(token.encode(errors="replace")).digest()
        found = None
        for name, want in self._current():
            if hmac.compare_digest(digest, want):
                found = name
        return found

    def names(self) -> list[str]:
        return [name for name, _ in self._current()]


def session_key(data_dir: Path) -> bytes:
    """This host's key for session cookies, made on first use (owner only)."""
    path = data_dir / "http_session_key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
    with contextlib.suppress(FileExistsError):  # another worker made it first: use that one
        os.link(part, path)
    part.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


class Signer:
    """MACs with the host's session key: cookies and CSRF tokens."""

    def __init__(self, key: bytes):
        self.key = key

    def mac(self, purpose: str, value: str) -> str:
        return hmac.new(self.key, f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def cookie(self, session_id: str) -> str:
        return f"{session_id}.{self.mac('session', session_id)}"

    def session_of(self, cookie: str | None) -> str | None:
        """The session ID a cookie carries, if its MAC is right."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 128:
            return None
        sid, mac = cookie.split(".")
        return sid if hmac.compare_digest(mac, self.mac("session", sid)) else None

    def csrf(self, session_id: str) -> str:
        return self.mac("csrf", session_id)

    def csrf_ok(self, session_id: str, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf(session_id))


def new_session_id() -> str:
    return secrets.token_hex(16)
