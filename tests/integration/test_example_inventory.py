"""inventory/example, the fleet on real machines, passes the same validation
site.yml runs first, and every container names a provider host of its own
inventory with a subnet of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


# The example's ansible-vault password (its vault.yml says so); an operator's
# own stays out of the repository.
VAULT_PASSWORD = "example"


def validate(tmp_path: Path, password: str | None, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_VAULT_PASSWORD_FILE"}
    if password is not None:
        (tmp_path / "vault-password").write_text(password + "\n")
        env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(tmp_path / "vault-password")
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "inventory/example", "playbooks/validate.yml",
         *extra],
        capture_output=True, text=True, cwd=REPO, timeout=300, env=env,
    )  # fmt: skip


def test_the_example_inventory_validates_with_its_vault_password(tmp_path):
    res = validate(tmp_path, VAULT_PASSWORD)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


def test_without_the_vault_password_validation_says_so_per_host(tmp_path):
    res = validate(tmp_path, None)
    assert res.returncode != 0
    said = res.stdout + res.stderr
    assert "host edge01: its api_* variables hold ansible-vault secrets and no vault" in said


def test_a_fleet_name_that_cannot_name_a_bridge_is_refused_in_one_line(tmp_path):
    # It names the LXD project and the bridges (edgesyncbr0: at most 15 characters).
    res = validate(tmp_path, VAULT_PASSWORD, "-e", "fleet_name=Staging-Fleet")
    assert res.returncode != 0
    line = next(x for x in res.stdout.splitlines() if "fleet_name" in x)
    assert 'fleet_name "Staging-Fleet": must be 1 to 12 lowercase letters and digits' in line


def example_listing() -> dict:
    """inventory/example as Ansible reads it (ansible-inventory --list)."""
    listing = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", "inventory/example", "--list"],
        capture_output=True, text=True, cwd=REPO, check=True, timeout=120,
    )  # fmt: skip
    return json.loads(listing.stdout)


def test_every_container_lives_on_a_provider_host_of_its_own_subnets():
    data = example_listing()
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


def test_the_example_has_two_masters_on_two_machines_and_every_node_lists_both():
    data = example_listing()
    hv = data["_meta"]["hostvars"]
    masters = data["masters"]["hosts"]
    assert len(masters) == 2
    assert len({hv[m]["edgesync_provider_host"] for m in masters}) == 2
    names = {hv[m]["edgesync_name"] for m in masters}
    for node in data["nodes"]["hosts"]:
        assert names <= set(hv[node]["edgesync_trusted"]), node
