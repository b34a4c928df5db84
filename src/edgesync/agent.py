"""Opening an agent: the store of a config, wired to its Redis outbox and to
the push targets the policy derives from its peers. The CLI, the tests, the
benchmarks and the scripts all open agents here."""

from __future__ import annotations

import os
from collections.abc import Callable

from . import policy
from .config import Config, load
from .errors import ConfigError
from .outbox import Outbox
from .store import Store


def open_store(
    config: Config | str | os.PathLike | None,
    warn: Callable[[str], None] | None = None,
    outbox: bool = True,
) -> Store:
    """The node's store, with its relay to the Redis outbox (config: a Config, a
    path, or None for $EDGESYNC_CONFIG). ``outbox=False``, for a caller that
    writes nothing: no relay, so the Redis client is not even loaded."""
    if not isinstance(config, Config):
        config = load(config)
    errors = policy.push_errors(config)
    if errors:
        raise ConfigError(f"invalid config: {errors[0]}")
    return Store(
        config,
        Outbox(config.redis_url, config.name) if outbox else None,
        policy.push_targets_of(config),
        warn,
    )
