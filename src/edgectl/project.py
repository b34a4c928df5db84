"""Where edgectl finds the Ansible project and the inventory, and the fleet in it.

The project is the directory holding ``ansible.cfg`` and ``playbooks/``: the one
edgectl was installed from, or ``EDGESYNC_PROJECT``. The fleet is read from the
inventory with ansible-runner's inventory call, in the agent's terms
(``edgesync.topology``'s host dicts).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import ansible_runner

from edgesync import farms

from .errors import UsageError

ROLES = ("master", "node", "edge")


def project_dir() -> Path:
    """The Ansible project edgectl drives."""
    chosen = os.environ.get("EDGESYNC_PROJECT")
    here = Path(chosen) if chosen else Path(__file__).resolve().parents[2]
    if not (here / "ansible.cfg").is_file() or not (here / "playbooks" / "site.yml").is_file():
        where = "EDGESYNC_PROJECT" if chosen else "edgectl's installation"
        raise UsageError(f"no edgesync Ansible project at {here} ({where}): set EDGESYNC_PROJECT")
    return here


def inventory_path(project: Path, given: str | None) -> Path:
    """The inventory: -i as given, else the project's inventory/local."""
    path = Path(given) if given else project / "inventory" / "local"
    if not path.exists():
        raise UsageError(f"inventory {path} does not exist")
    return path.resolve()


def read_inventory(project: Path, inventory: Path) -> dict:
    """``ansible-inventory --list`` of the inventory, through ansible-runner."""
    out, err = ansible_runner.get_inventory(
        action="list",
        inventories=[str(inventory)],
        response_format="json",
        playbook_dir=str(project / "playbooks"),
        quiet=True,
        envvars={"ANSIBLE_CONFIG": str(project / "ansible.cfg")},
    )
    if not out:
        raise UsageError(f"inventory {inventory} cannot be read: {(err or '').strip()[:300]}")
    return out if isinstance(out, dict) else json.loads(out)


def fleet_of(inventory: dict) -> list[dict]:
    """The edgesync hosts of an inventory listing, as the topology takes them,
    in a stable order: masters, nodes, then edges by farm."""
    fleet = []
    for host, hv in inventory.get("_meta", {}).get("hostvars", {}).items():
        if hv.get("edgesync_role") not in ROLES:
            continue
        fleet.append(
            {
                "host": host,
                "name": hv.get("edgesync_name", host),
                "role": hv["edgesync_role"],
                "farm": hv.get("edgesync_farm"),
                "trusted": list(hv.get("edgesync_trusted") or []),
                "provider": hv.get("edgesync_provider"),
                "provider_host": hv.get("edgesync_provider_host", "localhost"),
                "location": hv.get("edgesync_location"),
            }
        )
    return sorted(fleet, key=lambda h: (ROLES.index(h["role"]), h["farm"] or "", h["host"]))


def balancers_of(inventory: dict, fleet: list[dict]) -> list[dict]:
    """The farms' balancers the inventory names (its ``edgesync_balancers``,
    read by ``edgesync.farms``), each {farm, host, address, port, edges, backend}."""
    hostvars = inventory.get("_meta", {}).get("hostvars", {})
    spec = next((hostvars[h["host"]]["edgesync_balancers"] for h in fleet
                 if "edgesync_balancers" in hostvars.get(h["host"], {})), None)  # fmt: skip
    try:
        return farms.balancers(fleet, spec)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # Say it as the validation does, where it can; its other checks need
        # facts (the hosts' addresses, their ports) this listing does not give.
        try:
            said = farms.errors(fleet, spec, {})
        except (AttributeError, KeyError, TypeError, ValueError):
            said = []
        why = said[0] if said else f"{type(exc).__name__}: {exc}"
        raise UsageError(f"the inventory's edgesync_balancers: {why}") from exc
