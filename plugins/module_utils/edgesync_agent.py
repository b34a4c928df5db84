"""Shared code of the edgesync modules: run the agent's CLI and read its JSON.

The modules stay thin: the agent does the work and enforces the policy; a
module only turns its answer into a task result.
"""

from __future__ import annotations

import json

COMMON_ARGS = dict(
    config=dict(type="path", default="/etc/edgesync/edgesync.toml"),
    agent=dict(type="path", default="/opt/edgesync/current/bin/edgesync"),
    user=dict(type="str", default="edgesync"),
)

REFUSED = 3


def agent_command(module, *args):
    """The agent command line, run as the agent's user when we are root."""
    p = module.params
    argv = [p["agent"], "--config", p["config"], *args]
    if p["user"]:
        argv = ["runuser", "-u", p["user"], "--", *argv]
    return argv


def run_agent(module, *args):
    """Run the agent; fail the task with the agent's own message if it fails."""
    rc, out, err = module.run_command(agent_command(module, *args))
    if rc != 0:
        message = (err.strip().splitlines() or [f"edgesync exited {rc}"])[-1]
        module.fail_json(msg=message, rc=rc, refused=rc == REFUSED, stderr=err)
    return out


def run_sync(module, action):
    """Run a push or pull; in check mode count what would move and move nothing."""
    args = [action, module.params["peer"], "--json"]
    if module.check_mode:
        args.append("--dry-run")
    report = json.loads(run_agent(module, *args))
    moved = report.get("would_send", report.get("would_receive", report.get("applied", 0)))
    module.exit_json(changed=moved > 0, **report)
