"""edgectl's own logic, apart from Ansible: the status rows and what needs
attention, the progress it reads from ansible-runner's events, the fleet it
reads from an inventory listing, and its exit codes for bad input."""

from __future__ import annotations

import threading
import time

from rich.console import Console

from edgectl import cli, project, status
from edgectl.errors import USAGE
from edgectl.run import Progress, _with_all

FLEET = [
    {"host": "master01", "name": "MASTER01", "role": "master", "farm": None, "trusted": [],
     "provider": "lxd", "provider_host": "localhost"},
    {"host": "node01", "name": "NODE01", "role": "node", "farm": None,
     "trusted": ["MASTER01", "EDGE01", "EDGE02"], "provider": "docker",
     "provider_host": "localhost"},
    {"host": "edge01", "name": "EDGE01", "role": "edge", "farm": "a", "trusted": [],
     "provider": "lxd", "provider_host": "lon-host-1"},
    {"host": "edge02", "name": "EDGE02", "role": "edge", "farm": "a", "trusted": [],
     "provider": "docker", "provider_host": "localhost"},
]  # fmt: skip


def answer(digest="d1", version="0.2.0", pending=0, links=(), redis="ok", refusals=(), api=None):
    return {"version": version, "schema": 3, "digest": digest,
            "status": {"rows": {"pages": 10}, "outbox_pending": pending, "redis": redis,
                       "links": list(links),
                       "refusals": {"count": len(refusals), "last": list(refusals)}},
            "api": api or api_state()}  # fmt: skip


def api_state(up=True, ready=True, reason=None, rate=12.0, p99=0.0042):
    return {"up": up, "ready": ready, "reason": reason, "address": "127.0.0.1:8080",
            "requests_per_s": rate, "p99_s": p99, "sample_s": 1.0}  # fmt: skip


def link(peer, action, ok_age=5.0, last_ok="2026-01-01T00:00:10Z", last_failed=None, error=None):
    return {"peer": peer, "action": action, "initiated": True, "last_ok": last_ok,
            "last_ok_age_s": ok_age, "last_failed": last_failed, "last_error": error}  # fmt: skip


def by_host(rows):
    return {r["host"]: r for r in rows}


def test_a_healthy_fleet_needs_no_attention():
    answers = {
        "master01": answer(),
        "node01": answer(links=[link("EDGE01", "pull"), link("MASTER01", "push")]),
        "edge01": answer(links=[link("EDGE02", "push")]),
        "edge02": answer(links=[link("EDGE01", "push")]),
    }
    rows = status.rows(FLEET, answers, {})
    assert status.attention_lines(rows) == []
    assert by_host(rows)["edge01"]["provider"] == "lxd@lon-host-1"
    assert by_host(rows)["edge02"]["provider"] == "docker"


def test_each_reason_for_attention_is_named():
    late = "2999-01-01T00:00:00Z"  # a failure after the last success
    answers = {
        "master01": answer(),
        "node01": answer(links=[link("EDGE01", "pull", last_failed=late, error="timed out")]),
        "edge01": answer(digest="other", version="0.1.0", redis="error: refused"),
        # edge02 pushed to the master by hand long ago and was refused: not the round's
        "edge02": answer(pending=3, links=[
            link("EDGE01", "push", ok_age=3600),
            link("MASTER01", "push", last_ok=None, ok_age=None,
                 last_failed="2000-01-01T00:00:00Z", error="refused"),
        ]),
    }  # fmt: skip
    lines = status.attention_lines(status.rows(FLEET, answers, {}))
    assert "node01: pull EDGE01 failed: timed out" in lines
    assert "edge01: Redis: error: refused" in lines
    assert "edge01: runs 0.1.0, the master 0.2.0" in lines
    assert "edge01: content differs from the master's" in lines
    assert "edge02: 3 changes pending, no sync in 10 min" in lines
    assert not any("MASTER01" in line for line in lines)


def test_an_api_that_is_down_or_not_ready_needs_attention_and_says_why():
    answers = {
        "master01": answer(),
        "node01": answer(api=api_state(up=False, ready=False, rate=None, p99=None,
                                       reason="no answer on 127.0.0.1:8080: Connection refused")),
        "edge01": answer(api=api_state(ready=False,
                                       reason="/readyz answers 503: not ready: draining")),
        "edge02": answer(api=api_state(rate=0.0, p99=None)),  # idle: fine
    }  # fmt: skip
    rows = status.rows(FLEET, answers, {})
    assert status.attention_lines(rows) == [
        "node01: API down: no answer on 127.0.0.1:8080: Connection refused",
        "edge01: API not ready: /readyz answers 503: not ready: draining",
    ]
    console = Console(width=300, record=True)
    console.print(status.table(rows, "t"))
    lines = {line.split("│")[2].strip(): line for line in console.export_text().splitlines()
             if line.count("│") > 3}  # fmt: skip
    assert "up 12.0/s 4.2ms" in lines["master01"]
    assert "down" in lines["node01"] and "not ready" in lines["edge01"]
    assert "up 0.0/s —" in lines["edge02"]


def test_an_api_answer_out_of_shape_is_named_not_shown():
    for odd in ({"up": "yes", "ready": True}, {"up": True, "ready": True, "p99_s": "[red]x"},
                {"up": True, "ready": True, "requests_per_s": float("nan")}, "up"):  # fmt: skip
        rows = by_host(status.rows(FLEET, {"master01": answer(), "edge01": answer(api=odd)}, {}))
        assert rows["edge01"]["attention"] == ["answered status out of shape"], odd


def test_a_host_that_did_not_answer_says_why():
    rows = status.rows(FLEET, {"master01": answer()}, {"node01": "ssh: connection refused"})
    assert by_host(rows)["node01"]["attention"] == ["ssh: connection refused"]
    assert by_host(rows)["edge01"]["attention"] == ["no answer"]


def test_ages_read_as_an_operator_reads_them():
    assert [status.age(s) for s in (None, 42, 420, 7200, 200000)] == [
        "never", "42s", "7m", "2h", "2d"]  # fmt: skip


def events():
    def ev(kind, **data):
        return {"event": kind, "event_data": data}

    return [
        ev("playbook_on_play_start", play="Install the agent"),
        ev("playbook_on_task_start", task="Write the config"),
        ev("runner_on_start", host="edge01", task="Write the config"),
        ev("runner_on_ok", host="edge01", task="Write the config", res={"changed": True}),
        ev("runner_on_failed", host="edge02", task="Write the config",
           res={"msg": "boom", "stderr": "disk full\n"}),
        ev("runner_on_unreachable", host="node01", task="Write the config",
           res={"msg": "ssh: no route"}),
        ev("playbook_on_task_start", task="Next"),
    ]  # fmt: skip


def test_progress_counts_hosts_and_says_each_failure_at_once():
    lines = []
    with Progress("site.yml", lines.append, heartbeat_s=0) as progress:
        for e in events():
            progress(e)
    assert progress.hosts["edge01"]["changed"] == 1 and progress.hosts["edge01"]["ok"] == 1
    assert progress.failures == ["edge02: Write the config: boom: disk full",
                                 "node01: Write the config: ssh: no route"]  # fmt: skip
    assert any("PLAY Install the agent" in line for line in lines)
    assert any("FAILED edge02: Write the config: boom: disk full" in line for line in lines)
    assert any("Write the config  [changed 1, failed 1, unreachable 1]" in line for line in lines)


def test_a_quiet_task_gets_a_heartbeat_naming_the_hosts_it_waits_for():
    lines = []
    said = threading.Event()

    def emit(line):
        lines.append(line)
        if "still running" in line:
            said.set()

    with Progress("site.yml", emit, heartbeat_s=0.5) as progress:
        progress(events()[1])
        progress(events()[2])
        assert said.wait(5)
    assert any("still running 'Write the config' on edge01" in line for line in lines)


def test_short_tasks_can_be_left_unsaid():
    lines = []
    with Progress("site.yml", lines.append, min_task_s=60, heartbeat_s=0) as progress:
        for e in events()[:4]:
            progress(e)
        time.sleep(0.01)
    assert not any("Write the config  [" in line for line in lines)


def test_the_fleet_is_read_in_the_agents_terms_masters_first():
    listing = {"_meta": {"hostvars": {
        "edge01": {"edgesync_name": "EDGE01", "edgesync_role": "edge", "edgesync_farm": "a",
                   "edgesync_provider": "lxd"},
        "provider01": {"ansible_host": "10.0.0.1"},
        "master01": {"edgesync_name": "MASTER01", "edgesync_role": "master",
                     "edgesync_provider": "lxd", "edgesync_provider_host": "fra-host-1"},
    }}}  # fmt: skip
    fleet = project.fleet_of(listing)
    assert [h["host"] for h in fleet] == ["master01", "edge01"]
    assert fleet[0]["provider_host"] == "fra-host-1" and fleet[1]["provider_host"] == "localhost"


def test_bad_input_is_exit_2(capsys):
    assert cli.main(["up", "-e", "novalue"]) == USAGE
    assert cli.main(["status", "-i", "/nonexistent/inv"]) == USAGE
    assert cli.main(["nosuchcommand"]) == USAGE
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "edgectl: -e 'novalue': expected KEY=VALUE"
    assert err[1] == "edgectl: inventory /nonexistent/inv does not exist"


def test_what_a_host_says_is_shown_as_text_never_as_markup():
    hostile = answer(version="0.2.0[/]", links=[link("[link=https://x]EDGE02[/link]", "push")],
                     refusals=[{"at": "2999-01-01T00:00:00Z", "peer": "[green]✓", "action": "push",
                                "rule": "[bold]x"}])  # fmt: skip
    rows = status.rows(FLEET, {"master01": answer(), "edge01": hostile}, {})
    console = Console(width=300, record=True)
    console.print(status.table(rows, "t"))  # no MarkupError
    text = console.export_text()
    assert "0.2.0[/]" in text and "[green]✓" in text


def test_a_status_answer_out_of_shape_is_named_not_a_crash():
    odd = answer()
    odd["status"]["rows"] = {"pages": "many"}
    odd2 = answer()
    odd2["status"]["links"] = [{"initiated": True, "peer": "EDGE02", "action": "push",
                                "last_ok_age_s": "soon"}]  # fmt: skip
    rows = by_host(status.rows(FLEET, {"master01": answer(), "edge01": odd, "edge02": odd2}, {}))
    assert rows["edge01"]["attention"] == ["answered status out of shape"]
    Console(width=300).print(status.table(list(rows.values()), "t"))


def test_limits_of_only_exclusions_apply_to_every_host():
    assert _with_all("!edge03") == "all:!edge03"
    assert _with_all("&farm_lon_a:!edge03") == "all:&farm_lon_a:!edge03"
    assert _with_all("farm_lon_a:!edge03") == "farm_lon_a:!edge03"


def test_down_refuses_a_limit(capsys):
    assert cli.main(["down", "--limit", "edge03"]) == USAGE
    assert "--limit is not supported" in capsys.readouterr().err
