"""The options every edgesync module shares (how to reach the agent)."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  config:
    description: The agent's config file.
    type: path
    default: /etc/edgesync/edgesync.toml
  agent:
    description: The agent's command.
    type: path
    default: /opt/edgesync/current/bin/edgesync
  user:
    description: Run the agent as this user (empty to run as the connecting user).
    type: str
    default: edgesync
"""
