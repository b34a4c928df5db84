"""The local fleet (inventory/local) on real LXD and Docker, driven through ansible-runner."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import ansible_runner
import pytest
import yaml
from runner_events import failures, host_seconds
from update_cycle import Cycle, FarmUsers

from edgectl.run import Progress
from edgectl.users import figures as http_figures
from edgesync import farms, topology

REPO = Path(__file__).resolve().parents[2]
# The facts the roles share (agent user, config path, command), read from their one copy.
FACTS = yaml.safe_load((REPO / "playbooks/group_vars/all/edgesync.yml").read_text())
# The unit that runs a host's scheduled round, and its timer (the timers role's names).
ROUND = yaml.safe_load((REPO / "roles/timers/defaults/main.yml").read_text())["timers_round"]
TIMER = f"{ROUND}.timer"
# The units of a round under way: the round's own and its links'.
RUNNING = (f"{ROUND}.service", topology.unit_name("push", "*") + ".service",
           topology.unit_name("pull", "*") + ".service")  # fmt: skip
# The local fleet's name: its LXD project, and the first part of its containers' names.
FLEET = yaml.safe_load((REPO / "inventory/local/group_vars/all.yml").read_text())["fleet_name"]
PROJECT = FLEET


# The plays a change of who trusts whom touches (site.yml's tags): the
# containers' addresses, the agents' configs, the keys, the timers. An operator
# applies such a change with `edgectl up --tags` the same way.
TRUST_TAGS = "provision,agent,trust,timers"


def container(host: str, fleet: str = FLEET) -> str:
    """The container of a host of the local fleet (its inventory's edgesync_container)."""
    return f"{fleet}-{host}"


class Fleet:
    """Runs the project's playbooks and modules and reads the hosts' agents."""

    def __init__(self, workdir: Path, inventory: Path, say):
        self.workdir = workdir
        self.say = say
        self.inventory = inventory
        self.hosts = _inventory_hosts(inventory)
        # Its name: its LXD project and the first part of its containers' names.
        self.name = yaml.safe_load((inventory / "group_vars" / "all.yml").read_text())["fleet_name"]
        self.facts = FACTS  # the shared fleet facts (playbooks/group_vars/all)

    def _run(self, project: Path = REPO, **kwargs) -> ansible_runner.Runner:
        """Run in ``project`` (this one, or a previous release's tree, whose
        plugins then import that release's agent)."""
        private = self.workdir / f"run-{time.monotonic_ns()}"
        private.mkdir(parents=True)
        envvars = {
            "ANSIBLE_CONFIG": str(project / "ansible.cfg"),
            # ansible-runner turns host key checking off unless told (keys are pinned).
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            # The ansible-* commands of the Python running the tests.
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        if project != REPO:
            envvars["PYTHONPATH"] = str(project / "src")
        return ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(project),
            inventory=str(
                kwargs.pop(
                    "inventory",
                    self.inventory if project == REPO else project / "inventory" / "local",
                )
            ),  # fmt: skip
            envvars=envvars,
            quiet=True,
            timeout=kwargs.pop("timeout", 1200),
            **kwargs,
        )

    def playbook(self, name: str, project: Path = REPO, **kwargs) -> ansible_runner.Runner:
        """Run a playbook once (a failure is a failure); its wall time is
        runner.wall_seconds. Its plays, slow tasks and failures are printed as
        they happen (edgectl's progress), so a long set-up is never silent."""
        started = time.monotonic()
        progress = Progress(name, lambda line: self.say(f"  {name}: {line.strip()}", gap=False),
                            min_task_s=10)  # fmt: skip
        with progress:
            runner = self._run(project, playbook=str(project / "playbooks" / name),
                               event_handler=progress, **kwargs)  # fmt: skip
        runner.wall_seconds = time.monotonic() - started
        return runner

    def module(self, hosts: str, module: str, args: str = "", **kwargs) -> ansible_runner.Runner:
        """Run a module once, ad hoc, with the playbooks' shared facts (the
        controller's SSH config among them)."""
        cmdline = f"--playbook-dir {REPO / 'playbooks'} {kwargs.pop('cmdline', '')}"
        return self._run(host_pattern=hosts, module=module, module_args=args, cmdline=cmdline,
                         **kwargs)  # fmt: skip

    @functools.cached_property
    def admin_dir(self) -> str:
        """The controller's administration directory, as the playbooks resolve it."""
        run = self.module("localhost", "ansible.builtin.debug", "var=edgesync_admin_dir")
        answer = next(ev["event_data"]["res"] for ev in run.events
                      if ev.get("event") == "runner_on_ok")  # fmt: skip
        return answer["edgesync_admin_dir"]

    def address(self, host: str) -> str:
        """The host's own address, as the controller reaches it (noted by roles/access)."""
        conf = Path(self.admin_dir) / "hosts.d" / f"{container(host, self.name)}.conf"
        return conf.read_text().split("HostName ", 1)[1].split()[0]

    def api_url(self, host: str) -> str:
        """Where the controller reaches the host's HTTP face (roles/api)."""
        port = self.hosts[host].get("api_port", FACTS["edgesync_http_port"])
        return f"http://{self.address(host)}:{port}"

    def balancers(self) -> list[dict]:
        """The farms' balancers as edgesync.farms gives them from the inventory."""
        spec = next(iter(self.hosts.values())).get("edgesync_balancers") or {}
        return farms.balancers(self.plan, spec)

    def balancer_url(self, farm: str) -> str:
        """Where the farm's users reach it: its balancer's host and port."""
        b = next(b for b in self.balancers() if b["farm"] == farm)
        port = "" if b["port"] == 80 else f":{b['port']}"  # as a browser writes it
        return f"http://{self.address(b['host'])}{port}"

    def api_token(self, host: str) -> str:
        """A bearer token the host's API takes, as the inventory gives it."""
        return next(iter(self.hosts[host]["api_tokens"].values()))

    def agent(self, host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run the agent on a host as its own user, as an operator would."""
        cmd = ["runuser", "-u", FACTS["edgesync_user"], "--", FACTS["edgesync_agent"],
               "--config", FACTS["edgesync_config_path"], *args]  # fmt: skip
        return self.run(host, *cmd, check=check)

    def exec_argv(self, host: str, *cmd: str, stdin: bool = False) -> list[str]:
        """The command line that runs ``cmd`` on a host as root."""
        name = container(host, self.name)
        if self.hosts[host]["edgesync_provider"] == "lxd":
            return ["lxc", "exec", name, "--project", self.name, "--", *cmd]
        return ["docker", "exec", *(["-i"] if stdin else []), name, *cmd]

    def agent_argv(self, host: str, *args: str) -> list[str]:
        return self.exec_argv(host, "runuser", "-u", FACTS["edgesync_user"], "--",
                              FACTS["edgesync_agent"], "--config", FACTS["edgesync_config_path"],
                              *args)  # fmt: skip

    @property
    def python(self) -> str:
        """The agent release's Python on every host."""
        return FACTS["edgesync_agent"].rsplit("/", 1)[0] + "/python"

    def run(
        self, host: str, *cmd: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """Run a command on a host as root."""
        argv = self.exec_argv(host, *cmd, stdin=input is not None)
        res = subprocess.run(argv, capture_output=True, text=True, timeout=300, input=input)
        if check and res.returncode != 0:
            raise AssertionError(f"{host}: {' '.join(cmd)}: {res.stderr}")
        return res

    def edited_inventory(
        self, where: Path, *, drop: str | None = None, untrust: tuple[str, str] | None = None
    ) -> Path:
        """A copy of the fleet's inventory in ``where``: without host ``drop``
        (off every trusted list too, as an operator removes a host), and with
        ``untrust`` = (node host, name) taken off that node's trusted list."""
        inventory = where / "inventory"
        shutil.copytree(self.inventory, inventory)
        hosts = yaml.safe_load((inventory / "hosts.yml").read_text())

        def groups(tree):  # every group's hosts, however deep
            for group in tree.get("children", {}).values():
                yield group.get("hosts", {})
                yield from groups(group)

        gone = [self.hosts[drop]["edgesync_name"]] if drop else []
        for members in groups(hosts["all"]):
            members.pop(drop, None)
            for host, spec in members.items():
                names = [*gone, untrust[1]] if untrust and host == untrust[0] else gone
                if spec and spec.get("edgesync_trusted") and names:
                    spec["edgesync_trusted"] = [t for t in spec["edgesync_trusted"]
                                                if t not in names]  # fmt: skip
        (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
        # A farm fronted by the dropped host loses its balancer with it (the
        # validation play refuses a balancer on a host the fleet lacks).
        common = inventory / "group_vars" / "all.yml"
        settings = yaml.safe_load(common.read_text())
        fronted = settings.get("edgesync_balancers") or {}
        kept = {farm: b for farm, b in fronted.items() if b.get("host") != drop}
        if kept != fronted:
            settings["edgesync_balancers"] = kept
            common.write_text(yaml.safe_dump(settings))
        return inventory

    def agent_json(self, host: str, *args: str):
        return json.loads(self.agent(host, *args).stdout)

    # -- the agents' view of the fleet --------------------------------------------

    @property
    def plan(self) -> list[dict]:
        """The fleet as edgesync.topology takes it."""
        hv = self.hosts
        return [{"name": hv[h]["edgesync_name"], "host": h, "role": hv[h]["edgesync_role"],
                 "farm": hv[h].get("edgesync_farm"),
                 "trusted": hv[h].get("edgesync_trusted") or []} for h in hv]  # fmt: skip

    def host_of(self, name: str) -> str:
        return next(p["host"] for p in self.plan if p["name"] == name)

    def sync_round(self) -> list[str]:
        """One sync round in topology order with the agents; the failed links."""
        failed = []
        for link in topology.links(self.plan):
            res = self.agent(self.host_of(link["initiator"]), link["action"], link["target"],
                             check=False)  # fmt: skip
            if res.returncode != 0:
                failed.append(f"{link['label']}: exit {res.returncode}: {res.stderr.strip()}")
        return failed

    @contextlib.contextmanager
    def rounds_paused(self):
        """No scheduled sync round runs inside the block: every host's round
        timer is stopped and any round under way (its link units, named as
        edgesync.topology.unit_name names them) has finished. The timers
        start again after it (Persistent= catches up a slot missed)."""
        timed = [h for h in self.hosts
                 if "LoadState=loaded" in self.run(h, "systemctl", "show", TIMER,
                                                   "-p", "LoadState").stdout]  # fmt: skip
        for host in timed:
            self.run(host, "systemctl", "stop", TIMER)
        for host in timed:
            deadline = time.monotonic() + 300
            while self.run(host, "systemctl", "list-units", "--no-legend", "--state",
                           "active,activating,deactivating", *RUNNING).stdout.strip():  # fmt: skip
                assert time.monotonic() < deadline, f"{host}: a sync round still running"
                time.sleep(0.5)
        try:
            yield
        finally:
            for host in timed:
                self.run(host, "systemctl", "start", TIMER)

    def ids(self, host: str) -> set[str]:
        """The IDs of the visible records of a host, read from its database."""
        db = f"{self.facts['edgesync_data_dir']}/edgesync.db"
        return set(self.run(host, self.python, "-c", IDS, db).stdout.split())

    def digests(self) -> dict[str, str]:
        return {h: self.agent(h, "digest").stdout.strip() for h in self.hosts}

    @property
    def masters(self) -> list[str]:
        return [p["host"] for p in self.plan if p["role"] == "master"]

    def converge(self, wanted: set[str], most: int = 5) -> tuple[list[str], set[str], dict, int]:
        """Sync rounds until every ID ``wanted`` is on every master and all
        digests agree (``most`` rounds at most): the last round's failed links,
        what of ``wanted`` every master holds, the digests, the rounds run."""
        rounds = 0
        while rounds < most:
            rounds += 1
            failed = self.sync_round()
            present = set(wanted)
            for master in self.masters:
                present &= self.ids(master)
            digests = self.digests()
            if not failed and present == wanted and len(set(digests.values())) == 1:
                break
        return failed, present, digests, rounds


IDS = (
    "import sqlite3, sys; db = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True); "
    "print('\\n'.join(r[0] for r in db.execute('SELECT id FROM pages WHERE _deleted = 0')))"
)


def previous_release() -> tuple[str, Path]:
    """The previous release (releases.toml) and its source tree, exported from its commit."""
    script = [sys.executable, str(REPO / "scripts" / "releases.py")]
    version = subprocess.run([*script, "previous"], capture_output=True, text=True, check=True)
    tree = subprocess.run([*script, "tree"], capture_output=True, text=True)
    assert tree.returncode == 0, tree.stderr
    return version.stdout.strip(), Path(tree.stdout.strip())


@pytest.fixture(scope="session")
def previous_fleet(fleet, say):
    """The local fleet torn down and built from nothing by the previous
    release's own site.yml (its roles, its agent), as its users have it."""
    version, tree = previous_release()
    teardown = fleet.playbook("teardown.yml")
    assert teardown.rc == 0, failures(teardown)
    first = fleet.playbook("site.yml", project=tree)
    report(say, f"site.yml of release {version} from nothing", first)
    assert first.rc == 0, failures(first)
    first.version = version
    known = tomllib.loads((REPO / "releases.toml").read_text())["release"]
    first.schema = next(r["schema"] for r in known if r["version"] == version)
    return first


@pytest.fixture(scope="session")
def was(fleet, tmp_path_factory, say) -> Fleet:
    """The fleet as its users had it at the previous release: inventory/local
    without the hosts that release's own inventory lacks (the second master,
    which the fleet gains after the rollout, in ``built``)."""
    _version, tree = previous_release()
    then = set(_inventory_hosts(tree / "inventory" / "local"))
    inventory = fleet.inventory
    for host in sorted(set(fleet.hosts) - then):
        where = tmp_path_factory.mktemp(f"without-{host}")
        inventory = Fleet(where, inventory, say).edited_inventory(where, drop=host)
    return Fleet(tmp_path_factory.mktemp("was"), inventory, say)


@pytest.fixture(scope="session")
def cycle(previous_fleet, was, say, tmp_path_factory):
    """The update cycle: the fleet built at the previous release gets its
    farms' balancers (balancers.yml, as upgrade.yml would); writers on every
    host, a reader per farm and users reading and writing through the
    balancers over HTTP start; after a while at the previous release (the
    latency the rollout's is compared with) upgrade.yml rolls the fleet to
    this release; then they stop and sync rounds run until everything is
    everywhere. Its figures are checked and printed by test_update.py; every
    other end-to-end test runs on the updated fleet."""
    fleet = was
    balancers = fleet.playbook("balancers.yml")
    report(say, f"balancers.yml on the fleet of {previous_fleet.version}", balancers)
    assert balancers.rc == 0, failures(balancers)
    run = Cycle(fleet, say)
    run.start("rollout")
    users = FarmUsers(fleet, tmp_path_factory.mktemp("users"))
    users.start()
    time.sleep(BEFORE_ROLLOUT_S)
    began = time.time()
    upgrade = fleet.playbook("upgrade.yml")
    ended = time.time()
    logs = run.stop()
    requests = users.stop()
    report(say, f"upgrade.yml from {previous_fleet.version}", upgrade)
    assert upgrade.rc == 0, failures(upgrade)
    figures = run.figures(logs)
    figures["http"] = http_figures(requests, (began, ended))
    figures["http_acked"] = {rid for farm in figures["http"].values() for rid in farm["acked"]}
    figures["converged"] = fleet.converge(figures["acked"] | figures["http_acked"])[:3]
    figures["runner"] = upgrade
    figures["cycle"] = run
    figures["fleet"] = fleet
    return figures


# Seconds of HTTP load through the balancers before the rollout starts: the
# p99 the rollout's is compared with.
BEFORE_ROLLOUT_S = 20


@pytest.fixture(scope="session")
def built(cycle, fleet, say):
    """The local fleet, built from nothing at the previous release, updated to
    this one, then grown to inventory/local by this release's site.yml (its
    second master: made, given its keys and timers, and filled by the next
    rounds), once for every end-to-end test. The site.yml run."""
    grow = fleet.playbook("site.yml")
    new = sorted(set(fleet.hosts) - set(cycle["fleet"].hosts))
    report(say, f"site.yml of this release adds {', '.join(new) or 'no host'}", grow)
    assert grow.rc == 0, failures(grow)
    started = time.monotonic()
    failed, _present, digests, rounds = fleet.converge(set())
    say(f"the grown fleet agrees after {rounds} round(s), {time.monotonic() - started:.0f} s")
    assert failed == [] and len(set(digests.values())) == 1, (failed, digests)
    return grow


def report(say, label, runner):
    """Print a playbook's wall time and each host's seconds in tasks."""
    lines = [f"{label}: {runner.wall_seconds:.0f} s wall, status {runner.status}"]
    lines += [f"  {h:9s} {s:6.1f} s in tasks" for h, s in host_seconds(runner).items()]
    say("\n".join(lines))


def _inventory_hosts(inventory: Path) -> dict[str, dict]:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(inventory), "--list"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    data = json.loads(out.stdout)
    return data["_meta"]["hostvars"]


@pytest.fixture(scope="session")
def fleet(tmp_path_factory, say):
    for tool in ("lxc", "docker", "mmdebstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run the README's test command")
    fleet = Fleet(tmp_path_factory.mktemp("fleet"), REPO / "inventory" / "local", say)
    return fleet
