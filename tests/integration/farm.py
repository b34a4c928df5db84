"""A farm of real agents in a temporary directory, joined by ``local:`` peers."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from edgesync import localfleet
from edgesync.agent import open_store
from edgesync.changes import encode
from edgesync.errors import NotFound
from edgesync.localsshd import keygen
from edgesync.signing import sign_body
from edgesync.store import Store
from edgesync.sync import sync

# name: (role, farm, trusted)
SEVEN = {
    "MASTER01": ("master", None, ()),
    "NODE01": ("node", None, ("MASTER01", "NODE02", "EDGE01", "EDGE02")),
    "NODE02": ("node", None, ("MASTER01", "NODE01", "EDGE03", "EDGE04")),
    "EDGE01": ("edge", "a", ()),
    "EDGE02": ("edge", "a", ()),
    "EDGE03": ("edge", "b", ()),
    "EDGE04": ("edge", "b", ()),
}


class Farm:
    def __init__(self, root: Path, redis_url: str, nodes: dict, **node_keys):
        self.root = root
        self.nodes = nodes
        localfleet.write(root, nodes, redis_url, **node_keys)
        self.stores: dict[str, Store] = {}
        for name in nodes:
            self.store(name).init()
        localfleet.share_keys(root, nodes)

    def config_path(self, name: str) -> Path:
        return localfleet.config_path(self.root, name)

    def store(self, name: str) -> Store:
        if name not in self.stores:
            self.stores[name] = open_store(self.config_path(name))
        return self.stores[name]

    def cli(self, name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "edgesync", "--config", str(self.config_path(name)), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def sync(self, name: str, action: str, peer: str) -> dict:
        res = self.cli(name, action, peer, "--json")
        assert res.returncode == 0, f"{name} {action} {peer}: {res.stderr}"
        return json.loads(res.stdout)

    def put(self, name: str, **data) -> dict:
        return self.store(name).put("pages", data)

    def over_ssh(self, sshd, caller: str, callee: str, command: str | None = None) -> str:
        """``caller`` reaches ``callee`` through the real ``sshd``, as the trust
        role sets it up: ``caller``'s own key, the sshd's host key pinned, and
        the key's forced command ``callee``'s serve (or ``command``); ``caller``'s
        config points its ``callee`` peer at the sshd. Returns the public key."""
        home = self.root / caller.lower()
        key = keygen(home / "id_ed25519")
        (home / "known_hosts").write_text(sshd.known_hosts_line())
        serve = f"--config {self.config_path(callee)} serve --stdio --peer {caller}"
        # sshd clears the environment: name the tree under test, or the forced
        # command imports whichever edgesync the interpreter has installed.
        src = Path(localfleet.__file__).resolve().parents[1]
        python = f"env PYTHONPATH={src} {sys.executable}"
        sshd.authorize(key, command or f"{python} -m edgesync {serve}")
        cfg = self.config_path(caller)
        local = f'url = "local:{self.config_path(callee).name}"'
        cfg.write_text(cfg.read_text().replace(local, f'url = "ssh://root@127.0.0.1:{sshd.port}"'))
        return key

    def digests(self) -> dict[str, str]:
        return {name: self.store(name).digest() for name in self.nodes}

    def close(self) -> None:
        for store in self.stores.values():
            store.close()
        self.stores.clear()


# One full round in topology order: up from the edges to the master, then down.
ROUND = [
    ("EDGE01", "push", "EDGE02"),
    ("EDGE03", "push", "EDGE04"),
    ("NODE01", "pull", "EDGE01"),
    ("NODE01", "pull", "EDGE02"),
    ("NODE02", "pull", "EDGE03"),
    ("NODE02", "pull", "EDGE04"),
    ("NODE01", "push", "MASTER01"),
    ("NODE02", "push", "MASTER01"),
    ("NODE01", "pull", "MASTER01"),
    ("NODE02", "pull", "MASTER01"),
    ("NODE01", "push", "EDGE01"),
    ("NODE01", "push", "EDGE02"),
    ("NODE02", "push", "EDGE03"),
    ("NODE02", "push", "EDGE04"),
]


# Who may do what, written out by hand (not computed by the policy under test).
ALLOWED = {
    ("MASTER01", a, t) for a in ("push", "pull") for t in SEVEN if t != "MASTER01"
} | {
    ("NODE01", a, t) for a in ("push", "pull") for t in ("MASTER01", "NODE02", "EDGE01", "EDGE02")
} | {
    ("NODE02", a, t) for a in ("push", "pull") for t in ("MASTER01", "NODE01", "EDGE03", "EDGE04")
} | {
    ("EDGE01", "pull", t) for t in ("MASTER01", "NODE01", "EDGE02", "EDGE03", "EDGE04")
} | {
    ("EDGE02", "pull", t) for t in ("MASTER01", "NODE01", "EDGE01", "EDGE03", "EDGE04")
} | {
    ("EDGE03", "pull", t) for t in ("MASTER01", "NODE02", "EDGE01", "EDGE02", "EDGE04")
} | {
    ("EDGE04", "pull", t) for t in ("MASTER01", "NODE02", "EDGE01", "EDGE02", "EDGE03")
} | {
    ("EDGE01", "push", "EDGE02"), ("EDGE02", "push", "EDGE01"),
    ("EDGE03", "push", "EDGE04"), ("EDGE04", "push", "EDGE03"),
}  # fmt: skip

# Refused by the receiver although the initiator's own check lets them through:
# an edge pulling from a node that does not trust it.
REFUSED_BY_RECEIVER = {
    ("EDGE01", "pull", "NODE02"), ("EDGE02", "pull", "NODE02"),
    ("EDGE03", "pull", "NODE01"), ("EDGE04", "pull", "NODE01"),
}  # fmt: skip


def resign(change: dict, store) -> dict:
    """``change`` (edited by a test) signed again with ``store``'s key, as that
    node would have made it: a single change proves itself."""
    body = encode({k: change[k] for k in "onhtikd"})
    body, _value = sign_body(store.signer, change["p"], body)
    return json.loads(body)


def play(farm: Farm, steps) -> tuple[list[str], set[str]]:
    """Play a property test's random history on ``farm``: ("create", name,
    title), ("edit", name, i, column, text), ("delete", name, i), ("sync",
    (initiator, action, target)), ("redeliver", source, dest, seed): part of
    one log, shuffled and duplicated, applied straight. Returns the IDs
    created and those deleted."""
    created: list[str] = []
    deleted: set[str] = set()
    for step in steps:
        kind, name = step[0], step[1]
        if kind == "create":
            created.append(farm.put(name, section="s", title=step[2])["id"])
        elif kind in ("edit", "delete") and created:
            rid = created[step[2] % len(created)]
            try:
                if kind == "edit":
                    farm.store(name).put("pages", {"id": rid, step[3]: step[4]})
                else:
                    farm.store(name).delete("pages", rid)
                    deleted.add(rid)
            except NotFound:
                pass  # not here yet, or deleted: a user would get "not found" too
        elif kind == "sync":
            initiator, action, target = step[1]
            sync(farm.store(initiator), target, action)
        elif kind == "redeliver":
            # A duplicated, reordered delivery: part of one log, shuffled, twice.
            source, dest, seed = step[1], step[2], step[3]
            rng = random.Random(seed)
            log = [json.loads(b) for _s, b, _o, _n in farm.store(source).changes_after(0, 10**6)]
            part = rng.sample(log, len(log) // 2) * 2
            rng.shuffle(part)
            if part:
                farm.store(dest).apply_changes(part)
    return created, deleted
