"""Errors the agent raises, each carrying the exit code the CLI gives it."""

import re

# Control characters, and the bidirectional overrides that reorder a line.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def one_line(text: str) -> str:
    """``text`` as one printable line, whatever a peer put into it: control and
    bidi-override characters are shown escaped."""
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


class EdgesyncError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class NotFound(EdgesyncError):
    """The record (or slug) is not here, or it was deleted."""

    exit_code = 1


class BadInput(EdgesyncError):
    """Invalid input from the user or a peer; nothing was written."""

    exit_code = 2


class Conflict(BadInput):
    """The request contradicts what the store holds (a reused Idempotency-Key,
    a record that moved on since the caller read it); nothing was written."""


class ConfigError(BadInput):
    """The configuration file is invalid; the message names the key and the value."""


class BadBatch(BadInput):
    """A change batch from a peer is malformed; it was rejected whole."""


class Refused(EdgesyncError):
    """The topology policy forbids this sync; nothing moved."""

    exit_code = 3


class SyncError(EdgesyncError):
    """A sync session failed (transport, protocol, peer, deadline, or the local
    Redis gone mid-session); the next session resumes where this one stopped."""

    exit_code = 4


class StorageError(EdgesyncError):
    """Local storage is full, unwritable or damaged; nothing was written."""

    exit_code = 5


def a(word: str) -> str:
    """``word`` with its indefinite article: "a master", "an edge", "an int"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"
