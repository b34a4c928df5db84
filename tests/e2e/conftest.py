"""The local fleet (inventory/local) on real LXD and Docker, driven through ansible-runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import ansible_runner
import pytest
from runner_events import run_failure

REPO = Path(__file__).resolve().parents[2]
PROJECT = "edgesync"


class Fleet:
    """Runs the project's playbooks and modules and reads the hosts' agents."""

    def __init__(self, workdir: Path, inventory: Path):
        self.workdir = workdir
        self.inventory = inventory
        self.hosts = _inventory_hosts(inventory)
        self.retried: list[str] = []

    def _run(self, **kwargs) -> ansible_runner.Runner:
        private = self.workdir / f"run-{time.monotonic_ns()}"
        private.mkdir(parents=True)
        return ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(REPO),
            inventory=str(kwargs.pop("inventory", self.inventory)),
            # The ansible-* commands of the Python running the tests.
            envvars={
                "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
                "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            },  # fmt: skip
            quiet=True,
            timeout=kwargs.pop("timeout", 1200),
            **kwargs,
        )

    def playbook(self, name: str, **kwargs) -> ansible_runner.Runner:
        """Run a playbook; run it again (twice at most) if a run fails.

        Debian 12's LXD (5.0.2) now and then loses the output of `lxc exec`,
        drops an `lxc file push`, or hangs, when several run at once; Ansible
        reports a task that could not make its temporary directory or find the
        file it just sent. The playbooks are idempotent, so an operator simply
        runs them again; so does the test, and it prints every rerun and why.
        A real fault fails every attempt and still fails the test.
        """
        started = time.monotonic()
        for _attempt in range(3):
            runner = self._run(playbook=str(REPO / "playbooks" / name), **kwargs)
            why = run_failure(runner)
            if why is None:
                break
            self.retried.append(f"{name}: {why}")
        runner.wall_seconds = time.monotonic() - started
        return runner

    def module(self, hosts: str, module: str, args: str = "", **kwargs) -> ansible_runner.Runner:
        return self._run(host_pattern=hosts, module=module, module_args=args, **kwargs)

    def module_ok(self, hosts: str, module: str, args: str = "", **kwargs) -> ansible_runner.Runner:
        """A module run expected to succeed, run again (twice at most) like playbook()."""
        for _attempt in range(3):
            runner = self.module(hosts, module, args, **kwargs)
            why = run_failure(runner)
            if why is None:
                break
            self.retried.append(f"{module}: {why}")
        return runner

    def agent(self, host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run the agent on a host as its own user, as an operator would."""
        cmd = ["runuser", "-u", "edgesync", "--", "edgesync", "--config",
               "/etc/edgesync/edgesync.toml", *args]  # fmt: skip
        provider = self.hosts[host]["edgesync_provider"]
        name = f"edgesync-{host}"
        if provider == "lxd":
            argv = ["lxc", "exec", name, "--project", PROJECT, "--", *cmd]
        else:
            argv = ["docker", "exec", name, *cmd]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if check and res.returncode != 0:
            raise AssertionError(f"{host}: {' '.join(args)}: {res.stderr}")
        return res

    def agent_json(self, host: str, *args: str):
        return json.loads(self.agent(host, *args).stdout)


def _inventory_hosts(inventory: Path) -> dict[str, dict]:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(inventory), "--list"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    data = json.loads(out.stdout)
    return data["_meta"]["hostvars"]


@pytest.fixture(scope="session")
def fleet(tmp_path_factory):
    for tool in ("lxc", "docker", "mmdebstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run the README's test command")
    return Fleet(tmp_path_factory.mktemp("fleet"), REPO / "inventory" / "local")


@pytest.fixture(scope="session")
def say(request):
    """Print past pytest's output capture: the timings are part of the run's report."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def _say(text: str) -> None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for line in text.splitlines():
                reporter.write_line(line)

    return _say
