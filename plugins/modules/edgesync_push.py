#!/usr/bin/python
"""Ansible module: push this node's changes to a peer with the edgesync agent."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: edgesync_push
short_description: Push this node's changes to a peer
description:
  - Runs C(edgesync push PEER) on the host. The agent sends the changes the peer
    does not hold yet and enforces the farm topology on both sides.
  - A push the topology forbids fails the task with the agent's C(refused:) message.
options:
  peer:
    description: Name of the peer (a C([peers.NAME]) entry of the agent's config).
    type: str
    required: true
extends_documentation_fragment: [edgesync]
attributes:
  check_mode:
    support: full
    description: Counts what would be sent (C(would_send)) and sends nothing.
  diff_mode:
    support: none
    description: Shows no diff under C(--diff); the changes a push moves are counted (RV(sent), RV(applied)), not listed.
author: edgesync maintainers (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Push to the other edge of this farm
  edgesync_push:
    peer: EDGE02
"""

RETURN = r"""
peer:
  description: The peer named by O(peer).
  returned: success
  type: str
direction:
  description: Always C(push).
  returned: success
  type: str
sent:
  description: Changes sent.
  returned: success
  type: int
applied:
  description: Changes the peer applied (the task is changed when above 0).
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
would_send:
  description: In check mode, changes that would be sent (the task is changed when above 0).
  returned: check mode
  type: int
refused:
  description:
    - Whether the agent refused the push (its exit status 3, a C(refused:) message), as it does when the farm
      topology forbids it; false when the push failed for another reason.
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
    run_sync(module, "push")


if __name__ == "__main__":
    main()
