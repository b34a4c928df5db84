#!/usr/bin/python
"""Ansible module: one question of `edgectl verify` to an edgesync node's digest tree."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: edgesync_digest
short_description: Answer one level of the digest tree that narrows a difference between nodes
description:
  - Without O(table), runs C(edgesync digest --json) on the host - the total digest
    and each table's digest and visible rows.
  - With O(table), runs C(edgesync digest --table TABLE --prefix PREFIX --json) - the
    visible rows of the table whose bucket key (sha256 of the ID, in hex) starts with
    O(prefix), as one bucket per next hex digit (digest and rows), or, once there are
    few of them, as the records themselves with each row's hash.
  - Changes nothing. An unknown table or a bad prefix fails the task with the agent's message.
options:
  table:
    description: The table to look into; omit it for the totals.
    type: str
  prefix:
    description: Lowercase hex, at most 64 digits; the bucket to split (empty for the whole table). Needs O(table).
    type: str
    default: ""
extends_documentation_fragment: [edgesync]
attributes:
  check_mode:
    support: full
    description: Reads only; the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so shows no diff under C(--diff).
author: edgesync maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: The totals of every node
  edgesync_digest:
  register: totals

- name: The buckets of table pages under prefix 3f
  edgesync_digest:
    table: pages
    prefix: "3f"
  register: pages_3f
"""

RETURN = r"""
digest: {description: "Without O(table), the total digest (as C(edgesync digest) prints it).", returned: without table, type: str}
tables: {description: "Without O(table), per table: C(digest) (of that table's part of the total) and C(rows).", returned: without table, type: dict}
table: {description: The table asked about., returned: with table, type: str}
prefix: {description: The prefix asked about., returned: with table, type: str}
rows: {description: Visible rows of the table under the prefix., returned: with table, type: int}
buckets: {description: "Per non-empty child bucket (the prefix and one more hex digit): C(digest) and C(rows).", returned: with table when there are many rows, type: dict}
records: {description: "ID to row hash of every row under the prefix (equal rows hash equal).", returned: with table when there are few rows, type: dict}
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edgesync_agent import COMMON_ARGS, run_agent


def main():
    module = AnsibleModule(
        argument_spec=dict(
            table=dict(type="str"), prefix=dict(type="str", default=""), **COMMON_ARGS
        ),
        supports_check_mode=True,
    )
    args = ["digest", "--json"]
    if module.params["table"] is not None:
        args += ["--table", module.params["table"]]
    if module.params["prefix"]:
        args += ["--prefix", module.params["prefix"]]  # without a table, the agent refuses it
    module.exit_json(changed=False, **json.loads(run_agent(module, *args)))


if __name__ == "__main__":
    main()
