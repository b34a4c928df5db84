#!/usr/bin/python
"""Ansible module: pull a peer's changes with the edgesync agent."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: edgesync_pull
short_description: Pull the changes of a peer this node lacks
description:
  - Runs C(edgesync pull PEER) on the host. The agent fetches the peer's changes
    this node does not hold yet and enforces the farm topology on both sides.
  - A pull the topology forbids fails the task with the agent's C(refused:) message.
options:
  peer:
    description: Name of the peer (a C([peers.NAME]) entry of the agent's config).
    type: str
    required: true
extends_documentation_fragment: [edgesync]
attributes:
  check_mode:
    support: full
    description: Counts what would be received (C(would_receive)) and moves nothing.
  diff_mode:
    support: none
    description: Shows no diff under C(--diff); the changes a pull moves are counted (RV(received), RV(applied)), not listed.
author: edgesync maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Pull from an edge this node trusts
  edgesync_pull:
    peer: EDGE01
"""

RETURN = r"""
peer:
  description: The peer named by O(peer).
  returned: success
  type: str
direction:
  description: Always C(pull).
  returned: success
  type: str
received:
  description: Changes received.
  returned: success
  type: int
applied:
  description: Changes applied here (the task is changed when above 0).
  returned: success
  type: int
conflicts:
  description: Changes that lost a column to a newer one.
  returned: success
  type: int
duration_ms:
  description: Length of the session, in milliseconds.
  returned: success
  type: float
would_receive:
  description: In check mode, changes that would be received (the task is changed when above 0).
  returned: check mode
  type: int
refused:
  description:
    - Whether the agent refused the pull (its exit status 3, a C(refused:) message), as it does when the farm
      topology forbids it; false when the pull failed for another reason.
  returned: failure
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edgesync_agent import COMMON_ARGS, run_sync


def main():
    module = AnsibleModule(
        argument_spec=dict(peer=dict(type="str", required=True), **COMMON_ARGS),
        supports_check_mode=True,
    )
    run_sync(module, "pull")


if __name__ == "__main__":
    main()
