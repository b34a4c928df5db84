"""Reading ansible-runner's per-host events."""

from __future__ import annotations


def failures(runner) -> list[str]:
    """Each failed task as 'host: task: message', from the runner's events."""
    out = []
    for ev in runner.events:
        if ev.get("event") in (
            "runner_on_failed",
            "runner_on_unreachable",
            "runner_item_on_failed",
        ):
            data = ev["event_data"]
            if data.get("ignore_errors"):
                continue
            msg = (data.get("res") or {}).get("msg", "")
            out.append(f"{data.get('host')}: {data.get('task')}: {str(msg)[:300]}")
    return out


def host_seconds(runner) -> dict[str, float]:
    """Seconds spent in tasks per host, from the runner's events."""
    totals: dict[str, float] = {}
    for ev in runner.events:
        if ev.get("event") in ("runner_on_ok", "runner_on_failed", "runner_on_skipped"):
            data = ev["event_data"]
            totals[data["host"]] = totals.get(data["host"], 0.0) + float(data.get("duration") or 0)
    return dict(sorted(totals.items()))


def run_failure(runner) -> str | None:
    """Why a run failed (its failed tasks, or a hang), or None when it did not."""
    if runner.status == "timeout":
        return "the run hung and timed out"
    if runner.rc == 0:
        return None
    return "; ".join(failures(runner))[:400] or f"rc {runner.rc}"
