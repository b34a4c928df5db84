"""Topology filters: the inventory seen through the agent's own code.

The policy lives once, in ``edgesync.policy``, and the plan drawn from it (links,
stages, unit names, callers, peers) in ``edgesync.topology``; each host's config
is written and checked by ``edgesync.config``. These filters only turn an
inventory into the agent's terms, so validation, configs, authorized keys and
sync timers follow the same rules the agents enforce.
"""

from __future__ import annotations

import tomllib

from edgesync import topology
from edgesync.config import TIMEOUTS, ConfigError, dump, parse

PROVIDERS = ("lxd", "docker")
# Stands in for addresses, known only once hosts are provisioned, when validating.
UNKNOWN_ADDRESS = "0.0.0.0"


def edgesync_fleet(hostvars, hosts: list[str]) -> list[dict]:
    """The edgesync hosts of an inventory, one plain dict each, in inventory order."""
    fleet = []
    for inv in hosts:
        hv = hostvars[inv]
        if "edgesync_name" not in hv and "edgesync_role" not in hv:
            continue
        fleet.append(
            {
                "host": inv,
                "name": hv.get("edgesync_name"),
                "location": hv.get("edgesync_location"),
                "role": hv.get("edgesync_role"),
                "farm": hv.get("edgesync_farm"),
                "trusted": list(hv.get("edgesync_trusted") or []),
                "provider": hv.get("edgesync_provider"),
                "provider_host": hv.get("edgesync_provider_host", "localhost"),
                "groups": list(hv.get("group_names") or []),
                "address": hv.get("edgesync_address"),
            }
        )
    return fleet


def edgesync_agent_config(
    fleet: list[dict], name: str, settings: dict, with_peers: bool = True
) -> dict:
    """The agent config of host ``name`` (the shape ``edgesync.config.parse`` takes):
    its own settings and, ``with_peers``, its peers as the topology draws them,
    reached over ssh as ``settings.user``, marked ``push`` where its timers push.
    ``settings`` holds user, data_dir, redis_url, batch_size, max_clock_skew_ms,
    tables and, optionally, the session deadlines (config.TIMEOUTS) and the
    per-origin quota of each role (``quota_by_role``: edgesync.quotas)."""
    me = next(h for h in fleet if h["name"] == name)
    pushes = {lk["target"] for lk in topology.links(fleet)
              if lk["initiator"] == name and lk["action"] == "push"}  # fmt: skip
    home = settings["data_dir"]
    node = {
        "name": me["name"], "location": me["location"], "role": me["role"],
        "farm": me.get("farm") or None, "trusted": list(me.get("trusted") or []) or None,
        "data_dir": home, "redis_url": settings["redis_url"],
        "batch_size": settings["batch_size"], "max_clock_skew_ms": settings["max_clock_skew_ms"],
        "ssh_key": f"{home}/.ssh/id_ed25519", "known_hosts": f"{home}/.ssh/known_hosts",
        **{k: settings[k] for k in TIMEOUTS if settings.get(k) is not None},
        **_quota(settings, me["role"]),
    }  # fmt: skip
    peers = {
        p["name"]: {
            "url": f"ssh://{settings['user']}@{p.get('address') or UNKNOWN_ADDRESS}:22",
            "role": p["role"],
            "farm": p.get("farm") or None,
            "push": True if p["name"] in pushes else None,
        }
        for p in (topology.peers(fleet, name) if with_peers else [])
    }
    return {"node": node, "peers": peers, "tables": settings.get("tables") or {}}


def _quota(settings: dict, role: str) -> dict:
    """The agent's quota keys for a host of ``role``, from ``quota_by_role``
    ({role: {changes, bytes, interval_s}}). A role with no limit (none named, or
    changes and bytes both 0) gets no keys: its config stays one the previous
    release reads, so a rollout can still be rolled back."""
    quota = (settings.get("quota_by_role") or {}).get(role) or {}
    keys = ("changes", "bytes", "interval_s")
    out = {f"quota_{k}": int(v) for k, v in quota.items() if k in keys}
    return out if out.get("quota_changes") or out.get("quota_bytes") else {}


def edgesync_toml(config: dict) -> str:
    """An agent config as TOML, written by the agent's own writer."""
    return dump(config)


def edgesync_topology_errors(
    fleet: list[dict], extra_links: list, settings: dict, inventory: list | None = None
) -> list[str]:
    """Every violation in the fleet, each a sentence naming the host: inventory
    groups and providers here (a provider host is ``localhost`` or another host
    of ``inventory``, not an edgesync host), each host's agent config (made with
    ``settings``, as the agent role writes it) by the agent's own parser, and the
    topology across hosts by edgesync.topology."""
    errors = []
    fleet_hosts = {h["host"] for h in fleet}
    for h in fleet:
        where = f"host {h['host']}"
        role = h.get("role")
        group = topology.ROLE_GROUPS.get(role)
        if group and group not in h["groups"]:
            errors.append(f"{where}: role {role} but not in group {group}")
        for r, other in topology.ROLE_GROUPS.items():
            if r != role and other in h["groups"]:
                errors.append(f"{where}: in group {other} but edgesync_role is {role!r}")
        if h.get("provider") not in PROVIDERS:
            errors.append(f"{where}: edgesync_provider {h.get('provider')!r} must be lxd or docker")
        provider_host = h.get("provider_host")
        if provider_host in fleet_hosts:
            errors.append(
                f"{where}: edgesync_provider_host {provider_host!r} is an edgesync host; "
                f"name the machine its container runs on"
            )
        elif provider_host != "localhost" and provider_host not in (inventory or ()):
            errors.append(
                f"{where}: edgesync_provider_host {provider_host!r} is not in the inventory"
            )
    errors += _config_errors(fleet, settings, with_peers=False)
    errors += topology.name_errors(fleet)
    errors += topology.master_errors(fleet)
    if not errors:
        errors += _config_errors(fleet, settings, with_peers=True)
    if errors:
        return errors
    return topology.link_errors(fleet, extra_links)


def _config_errors(fleet: list[dict], settings: dict, with_peers: bool) -> list[str]:
    """Each host's agent config, rendered as the agent role renders it and read
    back by the agent's own parser."""
    errors = []
    for h in fleet:
        try:
            parse(tomllib.loads(edgesync_toml(edgesync_agent_config(fleet, h["name"], settings,
                                                                    with_peers))))  # fmt: skip
        except ConfigError as exc:
            errors.append(f"host {h['host']}: {exc}")
    return errors


class FilterModule:
    def filters(self):
        return {
            "edgesync_fleet": edgesync_fleet,
            "edgesync_links": topology.links,
            "edgesync_round": topology.round_of,
            "edgesync_upstream": topology.upstream,
            "edgesync_update_plan": topology.update_plan,
            "edgesync_callers": topology.callers,
            "edgesync_peers": topology.peers,
            "edgesync_agent_config": edgesync_agent_config,
            "edgesync_toml": edgesync_toml,
            "edgesync_topology_errors": edgesync_topology_errors,
        }
