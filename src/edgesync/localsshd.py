"""A private sshd on a free loopback port, with its own host key, for the
tests and benchmarks of the SSH transport. Production nodes use the system's sshd."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .localredis import free_port


def keygen(path: Path) -> str:
    """Make an ed25519 key pair at ``path``; return the public key line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


class LocalSshd:
    def __init__(self, workdir: Path):
        self.binary = shutil.which("sshd") or "/usr/sbin/sshd"
        if not os.path.exists(self.binary):
            raise RuntimeError("sshd is not installed (Debian package openssh-server)")
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.authorized_keys = self.dir / "authorized_keys"
        self.proc: subprocess.Popen | None = None
        self.host_pub = ""

    def start(self) -> LocalSshd:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
        self.host_pub = keygen(self.dir / "host_ed25519")
        self.authorized_keys.touch()
        config = self.dir / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.dir / 'host_ed25519'}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\nPidFile {self.dir / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "PermitRootLogin prohibit-password\nStrictModes no\nLogLevel ERROR\n"
        )
        self.proc = subprocess.Popen(
            [self.binary, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
                    raise RuntimeError(f"sshd did not start on port {self.port}: {err}") from None
                time.sleep(0.05)

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_pub}\n"

    def authorize(self, public_key: str, command: str) -> None:
        """Let ``public_key`` in, only to run ``command``, only from loopback."""
        with self.authorized_keys.open("a") as fh:
            fh.write(f'restrict,command="{command}",from="127.0.0.1" {public_key}\n')

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
