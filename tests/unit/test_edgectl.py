"""edgectl's own logic, apart from Ansible: the status rows and what needs
attention, the progress it reads from ansible-runner's events, the fleet it
reads from an inventory listing, and its exit codes for bad input."""

from __future__ import annotations

import json
import threading
import time

from rich.console import Console

from edgectl import cli, project, status
from edgectl.errors import FLEET as FLEET_EXIT
from edgectl.errors import USAGE, UsageError
from edgectl.run import Ansible, Progress, Result, _with_all
from edgesync import farms

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


def test_a_forked_origin_needs_attention_naming_it_and_where_it_forked():
    forked = answer()
    forked["status"]["forks"] = [{"origin": "EDGE01", "n": 3, "withheld": 2,
                                  "found": "2026-01-01T00:00:00Z"}]  # fmt: skip
    gone_on = answer()
    gone_on["status"]["forks"] = [{"origin": "EDGE01", "n": 3, "withheld": 0,
                                   "went_on_as": "EDGE01.AB12CD34"}]  # fmt: skip
    rows = status.rows(FLEET, {"master01": forked, "node01": gone_on,
                               "edge01": answer(), "edge02": answer()}, {})  # fmt: skip
    assert status.attention_lines(rows) == [
        "master01: EDGE01 signed two changes numbered 3: quarantined, 2 of its changes held "
        "back here; revoke or replace its key",
        "node01: EDGE01 signed two changes numbered 3: quarantined, 0 of its changes held "
        "back here (its node went on as EDGE01.AB12CD34); revoke or replace its key",
    ]
    odd = answer()
    odd["status"]["forks"] = [{"origin": "EDGE01", "n": "3"}]
    row = by_host(status.rows(FLEET, {**{h["host"]: answer() for h in FLEET}, "edge01": odd}, {}))
    assert row["edge01"]["attention"] == ["answered status out of shape"]


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


def test_an_ignored_failure_is_a_warning_not_a_failure():
    lines = []
    with Progress("sync.yml", lines.append, heartbeat_s=0) as progress:
        progress({"event": "playbook_on_task_start", "event_data": {"task": "Name"}})
        progress({"event": "runner_on_failed", "event_data": {
            "host": "master02", "task": "Name", "ignore_errors": True,
            "res": {"msg": "pull MASTER01: unreachable"}}})  # fmt: skip
    assert progress.failures == []
    assert progress.warnings == ["master02: Name: pull MASTER01: unreachable"]
    assert any("WARNING master02: Name: pull MASTER01: unreachable" in line for line in lines)


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


def test_up_refuses_a_tag_site_yml_does_not_have(capsys):
    assert cli.main(["up", "--tags", "trust,trsut"]) == USAGE
    assert "--tags: unknown part 'trsut'" in capsys.readouterr().err


def test_up_knows_every_tag_of_site_yml():
    import re
    from pathlib import Path

    books = Path(__file__).resolve().parents[2] / "playbooks"
    text = (books / "site.yml").read_text() + (books / "balancers.yml").read_text()
    found = {t.strip() for group in re.findall(r"tags: \[([^\]]*)\]", text)
             for t in group.split(",")} - {"always"}  # fmt: skip
    assert found == set(cli.UP_TAGS)


def test_restore_refuses_a_path_ansible_would_template(capsys, tmp_path):
    named = tmp_path / "master01-schema5-{{ lookup('pipe', 'id') }}Z.db"
    named.write_text("")
    assert cli.main(["restore", "master01", str(named)]) == USAGE
    assert "a path with '{' or '%' is not taken" in capsys.readouterr().err


def test_down_refuses_a_limit(capsys):
    assert cli.main(["down", "--limit", "edge03"]) == USAGE
    assert "--limit is not supported" in capsys.readouterr().err


# -- the farms' balancers -----------------------------------------------------------

BALANCERS = farms.balancers(FLEET, {"a": {"host": "node01"}})  # edges_a: edge01, edge02


def balancer(*servers, error=None, backend="edges_a"):
    """The module's ``balancer`` answer: servers as (name, status, sessions)."""
    backends = {backend: {name: {"status": st, "sessions": n} for name, st, n in servers}}
    return {"socket": "/run/haproxy/edgesync.sock", "error": error,
            "backends": {} if error else backends}  # fmt: skip


def with_balancer(said) -> dict:
    return {"master01": answer(), "node01": {**answer(), "balancer": said},
            "edge01": answer(), "edge02": answer()}  # fmt: skip


def test_a_balancer_sending_to_every_edge_of_its_farm_needs_no_attention():
    said = balancer(("edge01", "UP", 3), ("edge02", "UP 1/2", 0))  # one failed check: still UP
    rows = status.balancer_rows(BALANCERS, with_balancer(said), {})
    assert status.balancer_attention_lines(rows) == []
    (row,) = rows
    assert row["farm"] == "a" and row["host"] == "node01" and row["listen"] == "0.0.0.0:80"
    assert row["backends"] == {"edge01": "UP", "edge02": "UP 1/2"}
    assert row["sessions"] == {"edge01": 3, "edge02": 0}
    console = Console(width=300, record=True)
    console.print(status.balancer_table(rows))
    text = console.export_text()
    assert "balancers: 1 of 1 farms fine" in text
    assert "edge01 UP · 3 sessions" in text and "edge02 UP 1/2 · 0 sessions" in text


def test_each_edge_haproxy_sends_no_user_to_is_named():
    said = balancer(("edge01", "DRAIN", 1), ("edge02", "MAINT", 0), ("edge09", "UP", 0))
    rows = status.balancer_rows(BALANCERS, with_balancer(said), {})
    assert status.balancer_attention_lines(rows) == [
        "balancer of farm a on node01: edge01 DRAIN, edge02 MAINT",
        "balancer of farm a on node01: HAProxy also sends to edge09, no edge of the farm",
    ]
    rows = status.balancer_rows(BALANCERS, with_balancer(balancer(("edge02", "DOWN", 0))), {})
    assert rows[0]["backends"] == {"edge01": None, "edge02": "DOWN"}
    assert status.balancer_attention_lines(rows) == [
        "balancer of farm a on node01: edge02 DOWN",
        "balancer of farm a on node01: not in HAProxy's backend: edge01",
    ]
    console = Console(width=300, record=True)
    console.print(status.balancer_table(rows))
    assert "edge01 not in HAProxy's backend" in console.export_text()


def test_a_balancer_that_could_not_be_read_says_why():
    cases = {
        "not read: HAProxy runtime API at /run/haproxy/edgesync.sock: connection refused":
            with_balancer(balancer(error="HAProxy runtime API at /run/haproxy/edgesync.sock: "
                                         "connection refused")),
        "not read: HAProxy has no backend edges_a":
            with_balancer(balancer(("edge01", "UP", 0), backend="edges_b")),
        "not read: the module was not given the runtime API socket": with_balancer(None),
        "not read: answered balancer out of shape":
            with_balancer({"error": None, "backends": {"edges_a": {"edge01": {"status": 1}}}}),
        "not read: node01: ssh: connection refused": {"master01": answer()},
    }  # fmt: skip
    for why, answers in cases.items():
        rows = status.balancer_rows(BALANCERS, answers, {"node01": "ssh: connection refused"})
        assert rows[0]["attention"] == [why]
        assert rows[0]["backends"] == {}
        Console(width=300).print(status.balancer_table(rows))


def test_what_haproxy_says_is_shown_as_text_never_as_markup():
    said = balancer(("edge01", "[green]UP", 0), ("[bold]x", "UP", 0))
    rows = status.balancer_rows(BALANCERS, with_balancer(said), {})
    console = Console(width=300, record=True)
    console.print(status.balancer_table(rows))  # no MarkupError
    text = console.export_text()
    assert "edge01 [green]UP" in text and "[bold]x UP (no edge of the farm)" in text


def test_the_balancers_come_from_the_inventory_through_edgesync_farms(tmp_path):
    listing = {"_meta": {"hostvars": {
        "node01": {"edgesync_role": "node", "edgesync_balancers": {"a": {"host": "node01",
                                                                         "port": 8000}}},
        "edge01": {"edgesync_role": "edge", "edgesync_farm": "a"},
    }}}  # fmt: skip
    fleet = project.fleet_of(listing)
    assert project.balancers_of(listing, fleet) == [
        {"farm": "a", "host": "node01", "address": "0.0.0.0", "port": 8000,
         "edges": ["edge01"], "backend": "edges_a"},
    ]  # fmt: skip
    listing["_meta"]["hostvars"]["node01"]["edgesync_balancers"] = {"a": "node01"}
    try:
        project.balancers_of(listing, fleet)
    except UsageError as exc:
        assert str(exc) == ("the inventory's edgesync_balancers: farm a: its balancer needs a host "
                            "(edgesync_balancers.a.host)")  # fmt: skip
    else:
        raise AssertionError("an out of shape edgesync_balancers was taken")
    del listing["_meta"]["hostvars"]["node01"]["edgesync_balancers"]
    assert project.balancers_of(listing, fleet) == []


def test_status_asks_the_balancers_host_for_haproxy_and_a_drained_edge_is_exit_1(
    monkeypatch, capsys
):
    listing = {"_meta": {"hostvars": {h["host"]: {
        "edgesync_name": h["name"], "edgesync_role": h["role"], "edgesync_farm": h["farm"],
        "edgesync_balancers": {"a": {"host": "node01"}}} for h in FLEET}}}  # fmt: skip
    asked = {}

    def module(self, pattern, name, args="", extra_limit="", extravars=None):
        asked.update(pattern=pattern, name=name, args=args, extravars=extravars)
        said = balancer(("edge01", "DRAIN", 0), ("edge02", "UP", 2))
        return Result(name, 0, "successful", 1.0, results=with_balancer(said))

    monkeypatch.setattr(project, "read_inventory", lambda root, inv: listing)
    monkeypatch.setattr(Ansible, "module", module)
    assert cli.main(["status", "--json"]) == FLEET_EXIT
    out = json.loads(capsys.readouterr().out)
    assert asked["name"] == "edgesync_info" and asked["args"] == status.INFO_ARGS
    assert asked["extravars"] == {status.BALANCER_HOSTS: ["node01"]}
    assert json.loads(status.INFO_ARGS) == {"balancer_socket": "{{ edgesync_balancer_socket if "
                                            "inventory_hostname in edgectl_balancer_hosts else "
                                            "omit }}"}  # fmt: skip
    (b,) = out["balancers"]
    assert (b["farm"], b["host"], b["listen"]) == ("a", "node01", "0.0.0.0:80")
    assert b["backends"] == {"edge01": "DRAIN", "edge02": "UP"}
    assert out["attention"] == ["balancer of farm a on node01: edge01 DRAIN"]


def test_with_a_master_down_the_other_is_the_reference_and_the_down_one_is_named():
    master02 = {**FLEET[0], "host": "master02", "name": "MASTER02", "provider": "docker"}
    fleet = [FLEET[0], master02, *FLEET[1:]]
    answers = {"master02": answer(digest="d2"), "node01": answer(digest="d2"),
               "edge01": answer(digest="d9"), "edge02": answer(digest="d2")}  # fmt: skip
    rows = by_host(status.rows(fleet, answers, {"master01": "ssh: no route to host"}))
    assert rows["master01"]["attention"] == ["ssh: no route to host"]
    assert rows["master02"]["attention"] == []  # the reference: the first master that answered
    assert rows["node01"]["attention"] == [] and rows["edge02"]["attention"] == []
    assert rows["edge01"]["attention"] == ["content differs from the master's"]
    # Both up: the first master is the reference, the second is compared with it.
    answers["master01"] = answer(digest="d1")
    rows = by_host(status.rows(fleet, answers, {}))
    assert rows["master02"]["attention"] == ["content differs from the master's"]


def test_timings_name_the_slowest_tasks_with_their_play(capsys):
    def ev(kind, **data):
        return {"event": kind, "event_data": data}

    with Progress("site.yml", None, heartbeat_s=0) as progress:
        progress(ev("playbook_on_play_start", play="Install the agent"))
        for task, ran in (("Quick", True), ("Skipped everywhere", False), ("Slow", True)):
            progress(ev("playbook_on_task_start", task=task))
            progress(ev("runner_on_ok" if ran else "runner_on_skipped", host="edge01",
                        task=task, res={}))  # fmt: skip
            time.sleep(0.2 if task == "Slow" else 0.01)
    timed = sorted(progress.timed, reverse=True)
    assert [t for _s, t in timed] == ["Install the agent: Slow", "Install the agent: Quick"]
    result = Result("site.yml", 0, "successful", 1.0, tasks=timed)
    assert result.as_json()["slowest"][0]["task"] == "Install the agent: Slow"
    assert cli._finish(result, as_json=False, timings=True) == 0
    out = capsys.readouterr().out
    assert "slowest tasks:" in out and out.index("Slow") < out.index("Quick")
