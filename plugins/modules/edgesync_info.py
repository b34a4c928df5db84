#!/usr/bin/python
"""Ansible module: report an edgesync node's status and digest."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: edgesync_info
short_description: Report a node's status and content digest
description:
  - Runs C(edgesync status --json) and C(edgesync digest) on the host, and reads the host's own HTTP face
    (C(edgesync-http)) on the address its settings name (its C(/readyz), and its C(/metrics) twice,
    O(http_sample_s) seconds apart, for the users' requests per second and their 99th percentile time
    between the two). On a host that fronts farms, given O(balancer_socket), it also reads its HAProxy's
    C(show stat) on that runtime API socket (the state of each backend's servers). Changes nothing.
extends_documentation_fragment: [edgesync]
options:
  http_settings:
    description: The HTTP face's settings file (where it listens).
    type: path
    default: /etc/edgesync/http.toml
  http_sample_s:
    description: Seconds between the two reads of C(/metrics); 0 reads it once and gives no rate.
    type: float
    default: 1.0
  balancer_socket:
    description:
      - HAProxy's runtime API socket on this host (the fleet's C(edgesync_balancer_socket)), given for a host
        that fronts farms; its C(show stat) is read and returned as RV(balancer). Not given, nothing is read.
    type: path
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
- name: Read the master's status
  edgesync_info:
  register: master_info
"""

RETURN = r"""
status: {description: "The agent's C(status --json) (node, version, schema, role, farm, rows, outbox_pending, redis, refusals, links: the history of sync sessions per peer).", returned: success, type: dict}
version: {description: The release the agent runs., returned: success, type: str, sample: 0.2.0}
schema: {description: The schema version of its database., returned: success, type: int, sample: 3}
digest: {description: Digest of the visible content; equal on nodes holding the same records., returned: success, type: str}
api:
  description:
    - The host's HTTP face. V(up) when it answers, V(ready) when C(/readyz) answers 200, V(reason) why not;
      V(requests_per_s) and V(p99_s) (seconds) of the users' requests between the two reads (probes and scrapes
      left out; V(p99_s) null when there were none; both null when the API restarted in between or runs several workers).
  returned: success
  type: dict
  sample: {up: true, ready: true, reason: null, address: "127.0.0.1:8080", requests_per_s: 12.0, p99_s: 0.0042, sample_s: 1.0}
balancer:
  description:
    - The host's HAProxy as its runtime API at O(balancer_socket) tells it, null when O(balancer_socket) was not given.
      V(backends) maps each backend to its servers (the edges' inventory host names), each with V(status) as HAProxy
      says it (V(UP), V(DOWN), V(DRAIN), V(MAINT), or a transition such as V(UP 1/2)) and V(sessions), the sessions
      it holds now. V(error) says in one line why the socket could not be read (V(backends) then empty).
  returned: success
  type: dict
  sample: {socket: /run/haproxy/edgesync.sock, error: null, backends: {edges_lon-a: {edge01: {status: UP, sessions: 0}, edge02: {status: DRAIN, sessions: 1}}}}
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edgesync_agent import COMMON_ARGS, run_agent
from ansible.module_utils.edgesync_api import state as api_state
from ansible.module_utils.edgesync_balancer import state as balancer_state

ARGS = dict(
    COMMON_ARGS,
    http_settings=dict(type="path", default="/etc/edgesync/http.toml"),
    http_sample_s=dict(type="float", default=1.0),
    balancer_socket=dict(type="path"),
)


def main():
    module = AnsibleModule(argument_spec=ARGS, supports_check_mode=True)
    status = json.loads(run_agent(module, "status", "--json"))
    digest = run_agent(module, "digest").strip()
    socket = module.params["balancer_socket"]
    module.exit_json(
        changed=False,
        status=status,
        digest=digest,
        version=status.get("version"),
        schema=status.get("schema"),
        api=api_state(module.params["http_settings"], max(0.0, module.params["http_sample_s"])),
        balancer=balancer_state(socket) if socket else None,
    )


if __name__ == "__main__":
    main()
