"""inventory/example, the fleet on real machines, passes the same validation
site.yml runs first, and every container names a provider host of its own
inventory with a subnet of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_the_example_inventory_validates():
    res = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "inventory/example", "playbooks/validate.yml"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


def test_every_container_lives_on_a_provider_host_of_its_own_subnets():
    listing = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", "inventory/example", "--list"],
        capture_output=True, text=True, cwd=REPO, check=True, timeout=120,
    )  # fmt: skip
    data = json.loads(listing.stdout)
    hostvars = data["_meta"]["hostvars"]
    providers = set(data["providers"]["hosts"])
    fleet = {h: hv for h, hv in hostvars.items() if "edgesync_role" in hv}
    assert {hv["edgesync_provider_host"] for hv in fleet.values()} == providers
    subnets = [hostvars[p][k] for p in providers
               for k in ("edgesync_lxd_address", "edgesync_docker_subnet")]  # fmt: skip
    assert len(set(subnets)) == len(subnets)
    # the providers keep the operator's own SSH settings, not the containers' config
    group_vars = yaml.safe_load((REPO / "inventory/example/group_vars/providers.yml").read_text())
    assert group_vars["ansible_ssh_common_args"] == ""
