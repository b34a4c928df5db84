"""Transports: how a caller reaches a peer's ``edgesync serve --stdio``.

``local:PATH`` starts ``edgesync --config PATH serve --stdio --peer <me>`` as a
subprocess. ``ssh://user@host[:port]`` runs the system ssh with this node's own
key, BatchMode and strict host-key checking against pinned known_hosts; on the
far side the key's forced command decides what runs and for which peer.
Every session runs under its deadlines (deadlines.py): when one passes, the
transport's process is killed and the session fails naming the peer and the limit.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import threading
from collections import deque
from urllib.parse import urlparse

from .config import Config, Peer
from .deadlines import Limits, Watchdog
from .errors import BadInput, EdgesyncError, Refused, SyncError


def command(config: Config, peer: Peer) -> list[str]:
    if peer.url.startswith("local:"):
        path = peer.url[len("local:") :]
        return [sys.executable, "-m", "edgesync", "--config", path, "serve", "--stdio",
                "--peer", config.name]  # fmt: skip
    url = urlparse(peer.url)
    if url.scheme != "ssh" or not url.hostname:
        raise BadInput(f"invalid peer url {peer.url!r}: expected ssh://user@host[:port]")
    target = f"{url.username}@{url.hostname}" if url.username else url.hostname
    return [
        "ssh",
        "-T",
        "-i", str(config.ssh_key),
        "-o", "BatchMode=yes",
        "-o", "IdentitiesOnly=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={config.known_hosts}",
        "-o", f"ConnectTimeout={math.ceil(config.connect_timeout_s)}",
        "-p", str(url.port or 22),
        target,
        "edgesync", "serve", "--stdio", "--peer", config.name,
    ]  # fmt: skip


class Connection:
    def __init__(self, config: Config, peer: Peer, interrupt=lambda: None):
        """``interrupt`` stops the caller's own work when a deadline passes
        (the store's SQLite call, which may be waiting on a lock)."""
        self.argv = command(config, peer)
        self.limits = Limits.of(config)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=1 << 20,
        )
        self.watchdog = Watchdog(peer.name, self.limits, lambda: (self.proc.kill(), interrupt()))
        self.reader = self.watchdog.stream(self.proc.stdout)
        self.writer = self.watchdog.stream(self.proc.stdin)
        # The far side's stderr, read as it comes (a chatty peer never blocks on
        # a full pipe); its last lines explain a broken session.
        self._said: deque[str] = deque(maxlen=20)
        self._stderr = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr.start()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self._said.append(line.decode(errors="replace").rstrip())

    def stderr_tail(self) -> str:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return ""
        self._stderr.join(5)
        said = [line for line in self._said if line.strip()]
        return said[-1].strip() if said else ""

    def failure(self, peer: str, exc: Exception) -> EdgesyncError:
        """What a broken session means, from the far side's last words on stderr:
        a refusal (the peer's policy, or sshd not taking our key) or a failure;
        or the deadline that passed."""
        late = self.watchdog.error()
        if late is not None:
            return late
        tail = self.stderr_tail()
        if tail.startswith("refused:"):
            return Refused(tail)
        if "Permission denied" in tail:  # sshd refused our key: the peer does not trust us
            return Refused(f"refused: ssh to {peer}: {tail}")
        return SyncError(f"sync with {peer} failed: {exc}" + (f" ({tail})" if tail else ""))

    def close(self) -> None:
        self.watchdog.close()
        for stream in (self.writer, self.reader):
            with contextlib.suppress(OSError):
                stream.close()
        try:
            self.proc.wait(timeout=self.limits.idle)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._stderr.join(5)
        self.proc.stderr.close()
