"""Who may talk to whom: the farm topology, in one place.

| caller's role | initiator may                        | receiver accepts                       |
|---------------|--------------------------------------|----------------------------------------|
| master        | push to and pull from anyone         | always                                 |
| node          | only peers on its own trusted list   | any configured node                    |
| edge          | pull from any configured peer; push  | pull: always; push: only if the        |
|               | only to edges of its own farm        | receiver is an edge of the caller's farm|

and, above every row but the master's: a node receiver accepts only callers on
its own trusted list (edges included), and nobody accepts a caller it has no
peer entry for.

The initiator checks before it connects; the receiver checks again from its
own config's view of the caller, and that check is the one that counts. The
Ansible side validates inventories with these same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import a

ACTIONS = ("push", "pull")


@dataclass(frozen=True)
class Party:
    """A node as some config sees it."""

    name: str
    role: str
    farm: str | None = None
    trusted: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str

    def __bool__(self) -> bool:
        return self.allowed


def may_initiate(me: Party, action: str, target: Party) -> Decision:
    """May ``me`` open a ``action`` session with ``target``?"""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if me.role == "master":
        return Decision(True, "masters push to and pull from anyone")
    if me.role == "node":
        if target.name in me.trusted:
            return Decision(True, f"{target.name} is on {me.name}'s trusted list")
        return Decision(
            False, f"nodes sync only with their trusted list; {target.name} is not on {me.name}'s"
        )
    if action == "pull":
        return Decision(True, "edges pull from any configured peer")
    if target.role == "edge" and target.farm == me.farm:
        return Decision(True, f"edges push to edges of their own farm ({me.farm})")
    return Decision(
        False,
        f"edges push only to edges of their own farm; {target.name} is {a(target.role)}"
        + (f" of farm {target.farm}" if target.role == "edge" else "")
        + f", {me.name} is in farm {me.farm}",
    )


def may_accept(me: Party, action: str, caller: Party | None) -> Decision:
    """May receiver ``me`` serve ``caller``'s ``action``? ``caller`` is what
    ``me``'s own config says of it (None: not configured here)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if caller is None:
        return Decision(
            False, f"callers must be configured peers; {me.name} has no peer entry for the caller"
        )
    if caller.role == "master":
        return Decision(True, "masters are always accepted")
    if me.role == "node" and caller.name not in me.trusted:
        return Decision(
            False,
            "a node accepts only masters and callers on its trusted list; "
            f"{caller.name} is not on {me.name}'s",
        )
    if caller.role == "node":
        return Decision(True, f"{caller.name} is a known node")
    if action == "pull":
        return Decision(True, "edges may pull from any peer")
    if me.role == "edge" and me.farm == caller.farm:
        return Decision(True, f"edges accept pushes from edges of their own farm ({me.farm})")
    return Decision(
        False,
        f"an edge pushes only to edges of its own farm; {me.name} is {a(me.role)}"
        + (f" of farm {me.farm}" if me.role == "edge" else "")
        + f", {caller.name} is in farm {caller.farm}",
    )


def push_targets(me: Party, peers: list[Party]) -> list[str]:
    """The peers ``me`` may push to (each gets a consumer group on the outbox)."""
    return sorted(p.name for p in peers if may_initiate(me, "push", p))


# -- a config's view, as parties ----------------------------------------------
# Duck-typed on edgesync.config.Config (name, role, farm, trusted, peers), so
# this module imports nothing and the Ansible filters can load it alone.


def me_of(config) -> Party:
    """The node a config describes."""
    return Party(config.name, config.role, config.farm, tuple(config.trusted))


def peer_of(config, name: str) -> Party | None:
    """A peer as this config knows it, or None when it has no entry for it."""
    peer = config.peers.get(name)
    return None if peer is None else Party(peer.name, peer.role, peer.farm)


def push_targets_of(config) -> tuple[str, ...]:
    """The peers a config's node pushes to on a schedule (``push = true``), each
    with a consumer group on its outbox; a peer it may not push to is never one
    (``push_errors`` names those)."""
    peers = [Party(p.name, p.role, p.farm) for p in config.peers.values() if p.push]
    return tuple(push_targets(me_of(config), peers))


def push_errors(config) -> list[str]:
    """A sentence for each peer marked ``push = true`` that this node may not push to."""
    me = me_of(config)
    out = []
    for p in config.peers.values():
        decision = may_initiate(me, "push", Party(p.name, p.role, p.farm))
        if p.push and not decision:
            out.append(f"peers.{p.name}.push = true: {decision.rule}")
    return out
