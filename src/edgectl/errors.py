"""edgectl's exit codes and the error that carries one."""

from __future__ import annotations

OK = 0
# A run failed on some host, a host is unreachable, hosts need attention
# (status) or do not agree (verify).
FLEET = 1
# Bad usage or input: an unknown option, a missing inventory, a bad --limit.
USAGE = 2


class UsageError(Exception):
    """Bad input from the operator: exit USAGE with one line."""
