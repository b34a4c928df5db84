"""Containers on a provider host the controller reaches over SSH.

Farm lon-b's provider host becomes ``provider01``: this machine reached through
an sshd of the test's own on loopback, as root with a key of the test's. The
controller forgets how it reached edge03 and edge04, so site.yml must make
them again through provider01: the image and container tasks and the SSH
bootstrap run there (through that sshd), and the controller then reaches the
two edges by jumping through it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml
from conftest import container, report
from runner_events import failures

from edgesync.localsshd import LocalSshd, keygen

LON_B = ("edge03", "edge04")


@pytest.fixture
def provider(tmp_path):
    sshd = LocalSshd(tmp_path / "sshd").start()
    key = tmp_path / "provider_key"
    sshd.authorized_keys.write_text(keygen(key) + "\n")
    known = tmp_path / "provider_known_hosts"
    known.write_text(sshd.known_hosts_line())
    yield {"port": sshd.port, "key": key, "known": known}
    sshd.stop()


def inventory_with_provider(fleet, where: Path, provider: dict) -> Path:
    inventory = where / "inventory"
    shutil.copytree(fleet.inventory, inventory)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    lon_b = hosts["all"]["children"]["edges"]["children"]["farm_lon_b"]
    for spec in lon_b["hosts"].values():  # host vars: above group_vars/all's localhost
        spec["edgesync_provider_host"] = "provider01"
    hosts["all"]["children"]["providers"] = {"hosts": {"provider01": {
        "ansible_host": "127.0.0.1",
        "ansible_port": provider["port"],
        "ansible_user": "root",
        "ansible_connection": "ssh",
        "ansible_ssh_private_key_file": str(provider["key"]),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={provider['known']} "
                                   "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
        "edgesync_known_hosts": str(provider["known"]),
        # The Docker SDK the Docker modules need, on this provider host.
        "ansible_python_interpreter": sys.executable,
    }}}  # fmt: skip
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inventory


def forget(fleet, hosts) -> None:
    """The controller forgets how it reached these hosts: the next run bootstraps them."""
    admin = Path(fleet.admin_dir)
    for host in hosts:
        name = container(host)
        (admin / "hosts.d" / f"{name}.conf").unlink(missing_ok=True)
        (admin / "known_hosts.d" / name).unlink(missing_ok=True)


def test_a_farm_on_a_provider_host_reached_over_ssh(built, fleet, provider, tmp_path, say):
    inventory = inventory_with_provider(fleet, tmp_path, provider)
    forget(fleet, LON_B)
    try:
        run = fleet.playbook("site.yml", inventory=inventory)
        report(say, "site.yml with farm lon-b on provider01 (over SSH)", run)
        assert run.rc == 0, failures(run)

        # The provisioning and bootstrap tasks of lon-b ran through provider01's sshd.
        through = {}
        for ev in run.events:
            data = ev.get("event_data") or {}
            delegated = (data.get("res") or {}).get("_ansible_delegated_vars") or {}
            if (ev.get("event") in ("runner_on_ok", "runner_item_on_ok")
                    and delegated.get("ansible_host") == "127.0.0.1"):  # fmt: skip
                assert delegated.get("ansible_port") == provider["port"], delegated
                through.setdefault(data.get("task"), set()).add(data.get("host"))
        say("tasks run through provider01's sshd: " + "; ".join(sorted(through)))
        assert any(t.startswith("Create and start the LXD containers") for t in through)
        assert any(t.startswith("Create and start the Docker containers") for t in through)
        assert through.get(
            "Set up SSH inside the container, through LXD or Docker on its provider host"
        ) == set(LON_B), through  # fmt: skip

        # The controller reaches lon-b's edges by jumping through provider01.
        admin = Path(fleet.admin_dir)
        for host in LON_B:
            conf = admin / "hosts.d" / f"{container(host)}.conf"
            assert "ProxyJump 127.0.0.1" in conf.read_text()
        ping = fleet.module(":".join(LON_B), "ansible.builtin.ping", inventory=inventory)
        assert ping.rc == 0, failures(ping)

        # Nothing but the bootstrap changed: the containers, agents and keys are
        # the ones they were.
        changed = {(ev["event_data"].get("role"), ev["event_data"].get("task"))
                   for ev in run.events if ev.get("event") == "runner_on_ok"
                   and (ev["event_data"].get("res") or {}).get("changed")}  # fmt: skip
        assert {role for role, _task in changed} <= {"access"}, changed
    finally:
        # Reached directly again by the next run, which bootstraps them anew.
        forget(fleet, LON_B)
    again = fleet.playbook("site.yml", tags="access")
    assert again.rc == 0, failures(again)
