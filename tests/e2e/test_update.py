"""The update cycle: a fleet built at the previous release (its own site.yml,
its own agent) is rolled to this release by upgrade.yml while every host takes
writes and every farm is read; nothing acknowledged is lost, every farm keeps an
edge serving, and every host ends on the new release and schema. Then the
rollback: an edge's update made to fail puts that edge back, stops the
rollout, and loses nothing; the next run finishes it; the one after changes
nothing.

The cycle itself runs first (conftest's ``cycle`` fixture), before every other
end-to-end test, which then run on the updated fleet; these tests check and
print its figures, and the rollback runs last.
"""

from __future__ import annotations

import httpx
from conftest import REPO, report
from runner_events import failures, host_spans

from edgectl import users
from edgesync import __version__, migrations

EDGES = ["edge01", "edge02", "edge03", "edge04"]


def test_the_rollout_loses_no_write_and_keeps_every_farm_serving(cycle, fleet, say):
    upgrade = cycle["runner"]
    failed, present, digests = cycle["converged"]
    spans = host_spans(upgrade, plays="Update the")  # its own update, not the install
    lines = [f"update cycle: upgrade.yml {upgrade.wall_seconds:.0f} s wall (goal: under 300 s)",
             f"  {'host':9s} {'its turn':>9s} {'downtime':>9s}  refused because"]  # fmt: skip
    for host in cycle["fleet"].hosts:  # the fleet as it was rolled out
        why = ", ".join(cycle["refused"][host]) or "-"
        down = cycle["downtime"][host]
        lines.append(f"  {host:9s} {spans.get(host, 0):7.1f} s {down:7.1f} s  {why}")
    lines.append("  fewest serving edges per farm: "
                 + ", ".join(f"{f} {n}" for f, n in cycle["serving"].items()))  # fmt: skip
    for host, (ok, bad, gap) in cycle["reads"].items():
        lines.append(f"  reader on {host}: {ok} reads, {bad} refused, longest gap {gap:.1f} s")
    lines.append(f"  writes made {cycle['made']}, acknowledged {len(cycle['acked'])}, "
                 f"present on every master {len(present & cycle['acked'])}")  # fmt: skip
    say("\n".join(lines))
    assert failed == [], failed
    assert present >= cycle["acked"], f"{len(cycle['acked'] - present)} acknowledged writes lost"
    assert len(set(digests.values())) == 1, digests
    assert all(n >= 1 for n in cycle["serving"].values()), cycle["serving"]
    assert all(ok > 0 for ok, _bad, _gap in cycle["reads"].values())


def test_the_farms_users_saw_no_failed_request_through_the_balancers(cycle, fleet, say):
    """Users of each farm, through its balancer over HTTP during the whole
    rollout: every read and every write answered, and every write the balancer
    acknowledged is on the master after the closing sync."""
    _failed, present, _digests = cycle["converged"]
    shown = {"clients": users.CLIENTS, "rate": users.RATE, "writes_every": users.WRITES_EVERY}
    lines = users.table(cycle["http"], present, shown)
    say("\n".join(lines))
    assert set(cycle["http"]) == {b["farm"] for b in fleet.balancers()}
    for farm, f in cycle["http"].items():
        assert f["requests"] > 0 and f["acked"], farm
        assert (f["failed_reads"], f["failed_writes"]) == (0, 0), (farm, f["why"])
    lost = cycle["http_acked"] - present
    assert not lost, f"{len(lost)} writes acknowledged through the balancers lost"


def test_every_host_runs_the_new_release_and_schema(built, fleet):
    for host in fleet.hosts:
        status = fleet.agent_json(host, "status", "--json")
        assert (status["version"], status["schema"]) == (__version__, migrations.SCHEMA), host
        assert fleet.agent(host, "--version").stdout.split()[1] == __version__
    # Every host's HTTP face runs the new release, ready and out of its drain
    # (upgrade.yml installs it where the previous release had none).
    for host in fleet.hosts:
        assert api_ready(fleet, host), host
        release = fleet.run(host, "readlink", "-f", f"{fleet.facts['edgesync_root']}/current")
        assert release.stdout.strip() + "/bin/python" in api_command(fleet, host), host
    links = fleet.agent_json("node01", "status", "--json")["links"]
    assert {lk["peer"] for lk in links} >= {"EDGE01", "EDGE02", "MASTER01"}
    assert all(lk["peer_release"] == __version__ for lk in links if lk["protocol"] == 3)


def test_the_module_reports_version_and_schema(built, fleet):
    runner = fleet.module("masters:nodes:edges", "edgesync_info")
    assert runner.rc == 0, failures(runner)
    for ev in runner.events:
        if ev.get("event") == "runner_on_ok":
            res = ev["event_data"]["res"]
            assert (res["version"], res["schema"]) == (__version__, migrations.SCHEMA)


def api_ready(fleet, host: str) -> bool:
    """The host's API answers /readyz with 200, and it is not drained."""
    with httpx.Client(timeout=30, trust_env=False) as http:
        ready = http.get(f"{fleet.api_url(host)}/readyz").status_code == 200
    drained = f"{fleet.facts['edgesync_data_dir']}/draining"
    return ready and fleet.run(host, "test", "-e", drained, check=False).returncode != 0


def api_command(fleet, host: str) -> str:
    """The command line of the host's running API (its interpreter names its release)."""
    unit = fleet.facts["edgesync_http_service"]
    pid = fleet.run(host, "systemctl", "show", unit, "-p", "MainPID", "--value").stdout.strip()
    return fleet.run(host, "cat", f"/proc/{pid}/cmdline").stdout.replace("\0", " ")


def roll_back_by_hand(fleet, host: str, release: str, schema: int) -> None:
    """The README's rollback by hand: timers off, the schema back (by the new
    release's agent), current back, the API on the old release (stopped if it
    has none), timers on."""
    root, cfg = fleet.facts["edgesync_root"], fleet.facts["edgesync_config_path"]
    new = fleet.run(host, "readlink", f"{root}/current").stdout.strip()
    old = f"{root}/releases/{release}/venv"
    fleet.run(host, "systemctl", "stop", "edgesync-round.timer")
    fleet.run(host, "runuser", "-u", fleet.facts["edgesync_user"], "--", f"{new}/bin/edgesync",
              "--config", cfg, "migrate", "--to", str(schema))  # fmt: skip
    fleet.run(host, "ln", "-sfn", old, f"{root}/current")
    has_api = fleet.run(host, "test", "-e", f"{old}/bin/edgesync-http", check=False)
    api = fleet.facts["edgesync_http_service"]
    fleet.run(host, "systemctl", "restart" if has_api.returncode == 0 else "stop", api)
    fleet.run(host, "systemctl", "start", "edgesync-round.timer")


def test_a_failed_edge_rolls_back_stops_the_rollout_and_loses_nothing(
    cycle, built, previous_fleet, fleet, say
):
    run = cycle["cycle"]
    was = ["edgesync", previous_fleet.version]
    root = fleet.facts["edgesync_root"]
    old = fleet.run("edge01", "ls", f"{root}/releases").stdout.split()
    previous = [r for r in old if not r.startswith(__version__ + "-")]
    assert len(previous) == 1, old
    # edge03 and edge04 (farm lon-b) back on the previous release, by hand.
    for host in ("edge03", "edge04"):
        roll_back_by_hand(fleet, host, previous[0], previous_fleet.schema)
        assert fleet.agent(host, "--version").stdout.split()[:2] == was
    run.start("rehearsal")
    rehearsal = fleet.playbook("upgrade.yml", extravars={"upgrade_fail_health_on": ["edge03"]})
    logs = run.stop()
    report(say, "upgrade.yml with edge03's health check made to fail", rehearsal)
    assert rehearsal.rc != 0
    said = failures(rehearsal)
    stop = [line for line in said if "Roll back: stop the rollout here" in line]
    assert len(stop) == 1 and stop[0].startswith("edge03:"), said
    assert "failed at 'Health after: the new release runs" in stop[0], stop[0]
    assert "rehearsal" in stop[0] and f"runs {previous_fleet.version}" in stop[0]
    assert f"on schema {previous_fleet.schema}" in stop[0]
    say(f"the rollout stopped: {stop[0][:400]}")
    # edge03 runs what it ran; edge04, in the next batch, was never started.
    for host in ("edge03", "edge04"):
        assert fleet.agent(host, "--version").stdout.split()[:2] == was, host
        assert fleet.agent(host, "digest").returncode == 0
    # edge03's API runs the release it runs again (stopped, if that release has none).
    old_api = f"{root}/releases/{previous[0]}/venv/bin/edgesync-http"
    has_api = fleet.run("edge03", "test", "-e", old_api, check=False).returncode == 0
    api = fleet.run("edge03", "systemctl", "is-active", fleet.facts["edgesync_http_service"],
                    check=False)  # fmt: skip
    assert api.stdout.strip() == ("active" if has_api else "inactive"), api.stdout
    if has_api:
        assert f"{root}/releases/{previous[0]}/venv/bin/python" in api_command(fleet, "edge03")
    drained = f"{fleet.facts['edgesync_data_dir']}/draining"
    assert fleet.run("edge03", "test", "-e", drained, check=False).returncode != 0
    started = {(ev["event_data"].get("host"), ev["event_data"].get("task", "").split(":")[0])
               for ev in rehearsal.events if ev.get("event") == "runner_on_ok"}  # fmt: skip
    assert ("edge03", "Drain") in started and ("edge04", "Drain") not in started
    figures = run.figures(logs)
    failed, present, digests, _rounds = fleet.converge(figures["acked"])
    down = figures["downtime"]["edge03"]
    say(f"rehearsal: writes made {figures['made']}, acknowledged {len(figures['acked'])}, "
        f"present on every master {len(present)}; edge03 down {down:.1f} s")  # fmt: skip
    assert failed == [] and present == figures["acked"] and len(set(digests.values())) == 1


def test_the_next_run_finishes_the_rollout_and_one_more_changes_nothing(built, fleet, say):
    finish = fleet.playbook("upgrade.yml")
    report(say, "upgrade.yml finishing the rollout (edge03, edge04)", finish)
    assert finish.rc == 0, failures(finish)
    changed = {h for h, n in finish.stats["changed"].items() if n}
    assert changed == {"edge03", "edge04"}, changed
    again = fleet.playbook("upgrade.yml")
    report(say, "upgrade.yml again, nothing to do (goal: under 60 s)", again)
    assert again.rc == 0, failures(again)
    assert {h: n for h, n in again.stats["changed"].items() if n} == {}
    for host in fleet.hosts:
        assert fleet.agent_json(host, "status", "--json")["version"] == __version__
        assert api_ready(fleet, host), host


def test_the_users_ci_workflow_runs_the_same_cycle():
    flow = (REPO / ".github" / "workflows" / "update-cycle.yml").read_text()
    for step in ("releases.py tree", "playbooks/site.yml", "playbooks/balancers.yml",
                 "edgectl users -- edgectl rollout",
                 "playbooks/verify.yml", "edgectl verify", "journalctl"):  # fmt: skip
        assert step in flow, step
