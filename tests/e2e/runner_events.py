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


_LXD_FLAKE = "failed to resolve remote temporary directory"


def lxd_exec_flake(runner) -> str | None:
    """Why a run failed only through LXD's exec (lost output, or a hang), if it did."""
    if runner.status == "timeout":
        return "the run hung and timed out"
    if runner.rc == 0:
        return None
    failed = failures(runner)
    if failed and all(_LXD_FLAKE in f for f in failed if "trust_pubkey" not in f):
        # trust_pubkey: hosts that dropped out earlier leave the others without their keys.
        return "; ".join(f for f in failed if _LXD_FLAKE in f)
    return None
