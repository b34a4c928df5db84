"""Peak memory of a process itself: VmHWM from /proc, never getrusage's ru_maxrss.

On Linux a child's ru_maxrss starts from its parent's high-water mark (it is
carried across fork and exec), so a benchmark that holds much memory makes every
process it starts look as big as itself. VmHWM in /proc/PID/status belongs to the
process's own address space, which exec replaces: it is the process's own peak.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from pathlib import Path


def own_peak_mb(pid: int | str = "self") -> float | None:
    """The peak resident set of one live process, in MB (None once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def tree(pid: int) -> list[int]:
    """pid and all its descendants that are alive now."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def _name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    # "python -m edgesync --config x.toml pull EDGE05" -> "pull EDGE05"
    for verb in ("serve", "pull", "push"):
        if verb in words:
            return " ".join(words[words.index(verb) : words.index(verb) + 2])
    return " ".join(words[:3])


def run_measured(argv: list[str], interval: float = 0.01) -> tuple[subprocess.CompletedProcess,
                                                                   dict[str, float]]:  # fmt: skip
    """Run argv to the end; return its result and the own peak (MB) of it and each
    process it started, read every ``interval`` seconds while they live. VmHWM only
    grows, so the last reading before a process exits is its peak up to then."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, tuple[str, float]] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in tree(proc.pid):
                mb = own_peak_mb(pid)
                if mb is not None:
                    name = peaks[pid][0] if pid in peaks else _name(pid)
                    peaks[pid] = (name, max(mb, peaks.get(pid, ("", 0.0))[1]))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    return result, {name: mb for name, mb in peaks.values()}
