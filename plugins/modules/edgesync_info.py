#!/usr/bin/python
"""Ansible module: report an edgesync node's status and digest."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: edgesync_info
short_description: Report a node's status and content digest
description:
  - Runs C(edgesync status --json) and C(edgesync digest) on the host. Changes nothing.
extends_documentation_fragment: [edgesync]
attributes:
  check_mode:
    support: full
    description: Reads only; the same in check mode.
  diff_mode:
    support: none
author: edgesync
"""

EXAMPLES = r"""
- name: Read the master's status
  edgesync_info:
  register: master_info
"""

RETURN = r"""
status: {description: "The agent's C(status --json) (node, version, schema, role, farm, rows, outbox_pending, redis, refusals, links: the history of sync sessions per peer)", returned: success, type: dict}
version: {description: The release the agent runs, returned: success, type: str, sample: 0.2.0}
schema: {description: The schema version of its database, returned: success, type: int, sample: 3}
digest: {description: Digest of the visible content; equal on nodes holding the same records, returned: success, type: str}
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edgesync_agent import COMMON_ARGS, run_agent


def main():
    module = AnsibleModule(argument_spec=dict(COMMON_ARGS), supports_check_mode=True)
    status = json.loads(run_agent(module, "status", "--json"))
    digest = run_agent(module, "digest").strip()
    module.exit_json(
        changed=False,
        status=status,
        digest=digest,
        version=status.get("version"),
        schema=status.get("schema"),
    )


if __name__ == "__main__":
    main()
