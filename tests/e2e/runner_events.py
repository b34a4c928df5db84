"""Reading ansible-runner's per-host events."""

from __future__ import annotations

_FAILED = ("runner_on_failed", "runner_on_unreachable", "runner_item_on_failed")


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
