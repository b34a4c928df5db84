"""Reading ansible-runner's per-host events."""

from __future__ import annotations

import re

_FAILED = ("runner_on_failed", "runner_on_unreachable", "runner_item_on_failed")

# The only failures the tests run a playbook again for: what Debian 12's LXD
# (5.0.2) does to `lxc exec` and `lxc file push` when several run at once.
# - lost output: the mkdir of Ansible's temporary directory ran (exit 0), but
#   its echo of the path never came back;
# - a dropped push: the file a template or copy task just sent is not there;
# - lost module output: a module ran through the pipe, exited 0, said nothing.
_LXD_LOST_OUTPUT = "failed to resolve remote temporary directory"
_LXD_DROPPED_PUSH = re.compile(r"^Source \S*/\.ansible/tmp/ansible-tmp-\S+ not found$")
# A host that dropped out (for one of the reasons above) leaves the hosts that
# template its keys without them: a knock-on failure, not a fault of its own.
# (ansible-core 2.19 says it as "… has no attribute 'trust_signkey'").
_KNOCK_ON = re.compile(
    r"'trust_(pubkey|hostkey|signkey)' is undefined"
    r"|has no attribute 'trust_(pubkey|hostkey|signkey)'"
)


def _detail(res: dict) -> str:
    """The task's message with the stderr behind it (a validate failure says only
    'failed to validate'; the reason is in stderr)."""
    msg = str(res.get("msg", ""))
    err = str(res.get("stderr") or res.get("module_stderr") or "").strip()
    if err and err not in msg:
        msg = f"{msg} | stderr: {err}"
    return msg


def failures(runner) -> list[str]:
    """Each failed task as 'host: task: message | stderr: …', from the runner's events."""
    out = []
    for ev in runner.events:
        if ev.get("event") in _FAILED:
            data = ev["event_data"]
            if data.get("ignore_errors"):
                continue
            detail = _detail(data.get("res") or {})[:600]
            out.append(f"{data.get('host')}: {data.get('task')}: {detail}")
    return out


def host_seconds(runner) -> dict[str, float]:
    """Seconds spent in tasks per host, from the runner's events."""
    totals: dict[str, float] = {}
    for ev in runner.events:
        if ev.get("event") in ("runner_on_ok", "runner_on_failed", "runner_on_skipped"):
            data = ev["event_data"]
            totals[data["host"]] = totals.get(data["host"], 0.0) + float(data.get("duration") or 0)
    return dict(sorted(totals.items()))


def _lxd_symptom(res: dict) -> bool:
    msg = str(res.get("msg", ""))
    if _LXD_LOST_OUTPUT in msg or _LXD_DROPPED_PUSH.match(msg):
        return True
    return (
        msg.startswith("MODULE FAILURE")
        and res.get("rc") == 0
        and not str(res.get("module_stdout", "")).strip()
        and not str(res.get("module_stderr", "")).strip()
    )


def _pending_tasks(runner) -> list[tuple[str, str]]:
    """(host, task) of every task that started and never finished."""
    started: dict[str, tuple[str, str]] = {}
    for ev in runner.events:
        data = ev.get("event_data") or {}
        uuid = data.get("task_uuid", "") + data.get("host", "")
        if ev.get("event") == "runner_on_start":
            started[uuid] = (data.get("host", ""), data.get("task", ""))
        elif ev.get("event", "").startswith("runner_on_"):
            started.pop(uuid, None)
    return list(started.values())


def lxd_exec_failure(runner, lxd_hosts: set[str]) -> str | None:
    """Why a failed run failed, when it failed ONLY through LXD's exec, else None.

    Every failed task must be on an LXD host with one of the exact symptoms
    above (or be the knock-on failure of such a host), or the run must have hung
    inside a task on an LXD host. Anything else is a real fault: no rerun.
    """
    if runner.status == "timeout":
        hung = [(h, t) for h, t in _pending_tasks(runner) if h in lxd_hosts]
        if hung and len(hung) == len(_pending_tasks(runner)):
            return "; ".join(f"{h}: {t}: hung in lxc exec" for h, t in hung)
        return None
    if runner.rc == 0:
        return None
    symptoms, others = [], []
    for ev in runner.events:
        if ev.get("event") not in _FAILED:
            continue
        data = ev["event_data"]
        if data.get("ignore_errors"):
            continue
        res = data.get("res") or {}
        line = f"{data.get('host')}: {data.get('task')}: {_detail(res)[:300]}"
        if data.get("host") in lxd_hosts and _lxd_symptom(res):
            symptoms.append(line)
        elif not _KNOCK_ON.search(str(res.get("msg", ""))):
            others.append(line)
    if symptoms and not others:
        return "; ".join(symptoms)
    return None


def host_spans(runner, plays: str = "") -> dict[str, float]:
    """Seconds from each host's first task to its last in the plays whose names
    begin with ``plays`` (its turn in a serial play)."""
    first: dict[str, str] = {}
    last: dict[str, str] = {}
    for ev in runner.events:
        data = ev.get("event_data") or {}
        if (
            ev.get("event") in ("runner_on_ok", "runner_on_failed", "runner_on_skipped")
            and data.get("start")
            and data.get("end")
            and str(data.get("play", "")).startswith(plays)
        ):
            host = data["host"]
            first[host] = min(first.get(host, data["start"]), data["start"])
            last[host] = max(last.get(host, data["end"]), data["end"])
    return {h: _seconds(last[h]) - _seconds(first[h]) for h in sorted(first)}


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()
