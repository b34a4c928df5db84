"""Runs the project's playbooks and modules through ansible-runner and follows
their events: the live progress, the per-host results and the failures.

Progress goes to stderr (a live line on a terminal, one line per finished
task otherwise, as in CI logs); results are returned for the command to print,
so ``--json`` keeps stdout for JSON only.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ansible_runner
from rich.console import Console
from rich.live import Live
from rich.text import Text

from edgesync.errors import one_line

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_DONE = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
}


@dataclass
class Task:
    name: str
    started: float
    counts: dict = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def line(self, now: float) -> str:
        done = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "running"
        return f"{now - self.started:6.1f}s  {self.name}  [{done}]"


@dataclass
class Result:
    """One run: its status, per-host results and failures, and its wall time."""

    label: str
    rc: int
    status: str
    seconds: float
    hosts: dict = field(default_factory=dict)  # host -> {ok, changed, failed, unreachable}
    failures: list = field(default_factory=list)  # "host: task: message"
    # Failures the playbook chose to go on past (ignore_errors), e.g. a master
    # out of reach while the round went on through the other: named, not fatal.
    warnings: list = field(default_factory=list)  # "host: task: message"
    results: dict = field(default_factory=dict)  # host -> the module's result (ad-hoc)
    error: str = ""  # why a run failed with no failed task (Ansible's own error)
    # (seconds, "play: task") of every task that ran, slowest first (--timings)
    tasks: list = field(default_factory=list)

    def slowest(self, most: int = 5) -> list[tuple[float, str]]:
        return self.tasks[:most]

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.failures

    def as_json(self) -> dict:
        return {"run": self.label, "ok": self.ok, "rc": self.rc, "status": self.status,
                "seconds": round(self.seconds, 1), "hosts": self.hosts,
                "failures": self.failures, "warnings": self.warnings,
                "error": self.error,
                "slowest": [{"task": t, "seconds": round(s, 1)}
                            for s, t in self.slowest()]}  # fmt: skip


class Progress:
    """Follows a run's events and says where it is: the plays, each finished
    task (those taking ``min_task_s`` or more) with its ok/changed/failed
    counts, each failure at once, and while a task runs with nothing to say,
    every ``heartbeat_s`` which hosts it still waits for. ``emit`` takes each
    line; on a terminal a live status line shows the running task too."""

    def __init__(self, label: str, emit: Callable[[str], None] | None,
                 live_console: Console | None = None, min_task_s: float = 0.0,
                 heartbeat_s: float = 30.0):  # fmt: skip
        self.label = label
        self.emit = emit
        self.live_console = live_console
        self.min_task_s = min_task_s
        self.heartbeat_s = heartbeat_s
        self.start = time.monotonic()
        self.task: Task | None = None
        self.waiting: dict[str, str] = {}  # host -> the task it runs
        self.hosts: dict[str, dict] = {}
        self.failures: list[str] = []
        self.warnings: list[str] = []
        self.results: dict[str, dict] = {}
        self.play = ""
        self.timed: list[tuple[float, str]] = []  # (seconds, "play: task") of each task run
        self.live: Live | None = None
        self._said = self.start
        self._lock = threading.Lock()
        self._done = threading.Event()

    # -- the event stream -------------------------------------------------------

    def __call__(self, event: dict) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        now = time.monotonic()
        with self._lock:
            if kind == "playbook_on_play_start":
                self._finish_task(now)
                self.play = data.get("play", "")
                self._say(f"{now - self.start:6.0f}s  PLAY {self.play}")
            elif kind == "playbook_on_task_start":
                self._finish_task(now)
                self.task = Task(data.get("task", ""), now)
            elif kind == "runner_on_start":
                self.waiting[data.get("host", "?")] = data.get("task", "")
            elif kind in _DONE:
                self.waiting.pop(data.get("host", "?"), None)
                self._host_done(kind, data)
            if self.live is not None:
                self.live.update(self._status_line(now))
        return True

    def _host_done(self, kind: str, data: dict) -> None:
        host = data.get("host", "?")
        res = data.get("res") or {}
        what = _DONE[kind]
        if what == "ok" and res.get("changed"):
            what = "changed"
        if data.get("ignore_errors") and what == "failed":
            what = "ignored"
        tally = self.hosts.setdefault(host, {"ok": 0, "changed": 0, "failed": 0,
                                             "unreachable": 0, "skipped": 0})  # fmt: skip
        if what in tally:
            tally[what] += 1
        if what == "changed":
            tally["ok"] += 1
        if self.task is not None:
            self.task.count(what)
        if what in ("failed", "unreachable", "ignored"):
            line = f"{host}: {data.get('task') or self.label}: {_message(res)}"
            (self.warnings if what == "ignored" else self.failures).append(line)
            self._say(f"{'WARNING' if what == 'ignored' else what.upper()} {one_line(line)}")
        if what in ("ok", "changed"):
            self.results[host] = res  # the last answer (an ad-hoc module's)

    def _finish_task(self, now: float) -> None:
        task = self.task
        ran = {k for k in task.counts if k != "skipped"} if task else set()
        if task is not None and ran:
            self.timed.append((now - task.started, f"{self.play}: {task.name}"))
        # Tasks skipped on every host and Ansible's own argument checks say nothing.
        if (task is not None and ran and now - task.started >= self.min_task_s
                and not task.name.startswith("Validating arguments against arg spec")):  # fmt: skip
            self._say(task.line(now))
        self.task = None

    def _status_line(self, now: float) -> Text:
        line = self.task.line(now) if self.task else "starting"
        return Text(f"{self.label} {now - self.start:5.0f}s  {line}", style="cyan")

    def _say(self, text: str) -> None:
        self._said = time.monotonic()
        if self.emit is not None:
            self.emit(text)

    def _heartbeat(self) -> None:
        """While a task runs with nothing said for heartbeat_s, say who it waits for."""
        while not self._done.wait(1.0):
            with self._lock:
                now = time.monotonic()
                if self.task is None or now - self._said < self.heartbeat_s:
                    continue
                hosts = sorted(self.waiting) or ["the controller"]
                self._say(f"{now - self.start:6.0f}s  still running {self.task.name!r} "
                          f"on {', '.join(hosts[:8])}{' …' if len(hosts) > 8 else ''}")  # fmt: skip

    # -- the run's frame ----------------------------------------------------------

    def __enter__(self) -> Progress:
        if self.live_console is not None and self.live_console.is_terminal:
            self.live = Live(self._status_line(self.start), console=self.live_console,
                             refresh_per_second=4, transient=True)  # fmt: skip
            self.live.__enter__()
        if self.emit is not None and self.heartbeat_s:
            threading.Thread(target=self._heartbeat, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        with self._lock:
            self._finish_task(time.monotonic())
        if self.live is not None:
            self.live.__exit__(*exc)


def _message(res: dict) -> str:
    msg = str(res.get("msg") or "")
    err = str(res.get("stderr") or res.get("module_stderr") or "").strip()
    if err and err not in msg:
        msg = f"{msg}: {err.splitlines()[-1]}" if msg else err.splitlines()[-1]
    return msg or "failed"


class Ansible:
    """The project's playbooks and modules, run through ansible-runner."""

    def __init__(self, project: Path, inventory: Path, limit: str | None = None,
                 quiet: bool = False, console: Console | None = None):  # fmt: skip
        self.project = project
        self.inventory = inventory
        self.limit = limit
        self.quiet = quiet
        self.console = console or Console(
            stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160
        )

    def _emit(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)

    def _run(self, label: str, **kwargs) -> Result:
        envvars = {
            "ANSIBLE_CONFIG": str(self.project / "ansible.cfg"),
            # ansible-runner turns host key checking off unless told: the
            # hosts' keys are pinned (roles/access), so it stays on.
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            # The ansible-* commands beside the Python running edgectl.
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        }
        with tempfile.TemporaryDirectory(prefix="edgectl-") as private:
            emit = None if self.quiet else self._emit
            live = None if self.quiet else self.console
            with Progress(label, emit, live) as progress:
                runner = ansible_runner.run(
                    private_data_dir=private,
                    project_dir=str(self.project),
                    inventory=str(self.inventory),
                    envvars=envvars,
                    quiet=True,
                    event_handler=progress,
                    **kwargs,
                )
            seconds = time.monotonic() - progress.start
            error = ""
            if runner.rc != 0 and not progress.failures:
                lines = [ln.strip() for ln in (runner.stdout.read() or "").splitlines()]
                error = next((ln for ln in reversed(lines) if "ERROR" in ln), "") or next(
                    (ln for ln in reversed(lines) if ln), f"{label} exited {runner.rc}"
                )
        return Result(label, runner.rc, runner.status, seconds, progress.hosts,
                      progress.failures, progress.warnings, progress.results,
                      _ANSI.sub("", error), sorted(progress.timed, reverse=True))  # fmt: skip

    def playbook(self, name: str, extravars: dict | None = None,
                 tags: str | None = None) -> Result:  # fmt: skip
        """A playbook; a --limit keeps localhost, whose plays (validation, the
        image, provisioning, the release) every limited run needs; ``tags``
        runs only the plays so tagged (and those tagged always)."""
        limit = f"{_with_all(self.limit)}:localhost" if self.limit else None
        more = {"tags": tags} if tags else {}
        return self._run(name, playbook=str(self.project / "playbooks" / name),
                         extravars=extravars or {}, limit=limit, **more)  # fmt: skip

    def list_hosts(self, pattern: str) -> set[str]:
        """The hosts of ``pattern`` under this --limit, as Ansible resolves them."""
        args = [pattern, "-i", str(self.inventory), "--list-hosts"]
        if self.limit:
            args += ["--limit", _with_all(self.limit)]
        text, _err, rc = ansible_runner.run_command(
            executable_cmd=str(Path(sys.executable).parent / "ansible"),
            cmdline_args=args,
            envvars={"ANSIBLE_CONFIG": str(self.project / "ansible.cfg")},
            quiet=True,
        )
        if rc != 0:
            return set()
        return {line.strip() for line in text.splitlines()[1:] if line.strip()}

    def module(self, pattern: str, module: str, args: str = "", extra_limit: str = "",
               extravars: dict | None = None) -> Result:  # fmt: skip
        """A module on the hosts of ``pattern``, ad hoc, with the playbooks'
        shared facts (the controller's SSH config among them) and
        ``extravars``, which its ``args`` may name; ``extra_limit`` adds hosts
        to a --limit."""
        limit = _with_all(self.limit) if self.limit else None
        if limit and extra_limit:
            limit = f"{limit}:{extra_limit}"
        return self._run(module, host_pattern=pattern, module=module, module_args=args,
                         cmdline=f"--playbook-dir {self.project / 'playbooks'}",
                         extravars=extravars or {}, limit=limit)  # fmt: skip


def _with_all(limit: str) -> str:
    """A --limit made only of exclusions (``!edge03``) or intersections means
    them applied to every host, as Ansible reads it alone; say so, so that
    hosts added to it (localhost, the master) do not become all it selects."""
    terms = [t for t in re.split(r"[:,]", limit) if t]
    if terms and all(t[0] in "!&" for t in terms):
        return f"all:{limit}"
    return limit
