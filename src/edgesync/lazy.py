"""A module loaded when first used, not when imported.

Command start is most of what a read costs, and some modules cost more than
the read: the Redis client (about 100 ms to import, asyncio and
importlib.metadata with it), cryptography, a sync session's transports. The
modules that need them name them at the top as ``redis = lazy("redis")``: the
import runs at the first attribute read (``redis.Redis``), so a command that
never speaks to Redis, signs or syncs never loads them.

An edgesync module named this way is still a dependency of the module that
names it: tests/unit/test_layering.py counts it as an import at the top.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def lazy(name: str) -> ModuleType:
    """Stands for the module ``name`` (absolute), imported at its first
    attribute read: ``redis = lazy("redis")`` in place of ``import redis``."""
    return _Lazy(name)  # type: ignore[return-value]


class _Lazy:
    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        # Only for names not set in __init__. importlib's own locks make a first
        # read from two threads at once import the module once.
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy {self._name}>"
