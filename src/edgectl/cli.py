"""edgectl: the operator's tool. It drives the project's playbooks and modules
through ansible-runner and reads the fleet's answers.

    edgectl up | sync | rollout | down     site.yml, sync.yml, upgrade.yml, teardown.yml
    edgectl status                         one table for the fleet
    edgectl verify                         prove convergence, or narrow down the difference
    edgectl graph [--all-links]            draw who pushes to and pulls from whom (Graphviz)

Exit codes: 0 done (status: no host needs attention; verify: all agree),
1 the fleet let it down (a failed task, an unreachable host, a host needing
attention, differing content), 2 bad usage or input (graph: also no working
Graphviz).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgesync.errors import one_line

from . import graph as graphs
from . import project, verify
from . import status as statuses
from . import users as farm_users
from .errors import FLEET, OK, USAGE, UsageError
from .run import Ansible, Result

HOSTS = "masters:nodes:edges"
# A log or a pipe gets lines wide enough for the status table.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False)


def _common(fn):
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON only (for CI).")(fn)
    fn = click.option("-l", "--limit", metavar="PATTERN",
                      help="Only these hosts (an Ansible host pattern).")(fn)  # fmt: skip
    fn = click.option("-i", "--inventory", metavar="PATH",
                      help="The inventory (default: inventory/local).")(fn)  # fmt: skip
    return fn


def _context(inventory: str | None, limit: str | None, as_json: bool):
    root = project.project_dir()
    inv = project.inventory_path(root, inventory)
    return root, inv, Ansible(root, inv, limit, quiet=False)


def _extravars(pairs: tuple[str, ...]) -> dict:
    out_ = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"-e {pair!r}: expected KEY=VALUE")
        out_[key] = value
    return out_


def _finish(result: Result, as_json: bool, timings: bool = False) -> int:
    """Print a run's summary (or its JSON) and give its exit code; with
    ``timings``, the five slowest tasks too (always in the JSON)."""
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        t = Table(title=f"{result.label}: {result.status} in {result.seconds:.0f} s",
                  title_justify="left", header_style="bold")  # fmt: skip
        for col in ("host", "ok", "changed", "failed", "unreachable"):
            t.add_column(col, justify="left" if col == "host" else "right")
        for host, c in sorted(result.hosts.items()):
            bad = c["failed"] or c["unreachable"]
            t.add_row(f"[red]{host}[/red]" if bad else host, str(c["ok"]), str(c["changed"]),
                      str(c["failed"]), str(c["unreachable"]))  # fmt: skip
        out.print(t)
        for line in result.failures:
            out.print(f"[red]failed[/red] {escape(one_line(line))}")
        for line in result.warnings:
            out.print(f"[yellow]warning[/yellow] {escape(one_line(line))}")
        if result.error:
            out.print(f"[red]error[/red] {escape(one_line(result.error))}")
        if timings:
            out.print("slowest tasks:")
            for seconds, task in result.slowest():
                out.print(f"  {seconds:7.1f} s  {escape(task)}")
    return OK if result.ok else FLEET


def _playbook(name: str, inventory, limit, as_json, extravars: dict | None = None,
              tags: str | None = None, timings: bool = False) -> int:  # fmt: skip
    _root, _inv, ansible = _context(inventory, limit, as_json)
    if limit and not ansible.list_hosts(f"localhost:{HOSTS}"):
        raise UsageError(f"--limit {limit!r} selects no host of the fleet")
    return _finish(ansible.playbook(name, extravars, tags), as_json, timings)


_timings = click.option("--timings", is_flag=True,
                        help="End with the five slowest tasks (always in --json).")  # fmt: skip


@click.group(help=__doc__.split("\n\n")[0])
def main_group():
    pass


# site.yml's play tags: what `edgectl up --tags` may name.
UP_TAGS = ("image", "provision", "access", "agent", "trust", "timers", "api", "balancer")


@main_group.command(help="Build or converge the fleet (site.yml).")
@_common
@click.option("-e", "--extra-vars", "extra", multiple=True, metavar="KEY=VALUE")
@click.option("-t", "--tags", metavar="TAG,...",
              help="Only these parts (e.g. provision,agent,trust,timers for a changed "
                   "trusted list); one of: " + ", ".join(UP_TAGS))  # fmt: skip
@_timings
def up(inventory, limit, as_json, extra, tags, timings):
    if tags:
        unknown = [t for t in tags.split(",") if t.strip() not in UP_TAGS]
        if unknown:
            raise UsageError(f"--tags: unknown part {unknown[0]!r} (one of: {', '.join(UP_TAGS)})")
    return _playbook("site.yml", inventory, limit, as_json, _extravars(extra), tags, timings)


@main_group.command(help="Copy the masters' backups to the controller, checked on arrival "
                         "(backup.yml).")  # fmt: skip
@_common
def backup(inventory, limit, as_json):
    return _playbook("backup.yml", inventory, limit, as_json)


@main_group.command(help="Restore a host's database from a copy on the controller "
                         "(restore.yml).")  # fmt: skip
@click.option("-i", "--inventory", metavar="PATH")
@click.option("--json", "as_json", is_flag=True, help="Print JSON only (for CI).")
@click.argument("host")
@click.argument("copy", type=click.Path(dir_okay=False))
def restore(inventory, as_json, host, copy):
    _root, _inv, ansible = _context(inventory, None, as_json)
    if ansible.list_hosts(host) != {host}:
        raise UsageError(f"restore: {host!r} is not one host of the fleet")
    if not Path(copy).is_file():
        raise UsageError(f"restore: no copy at {copy}")
    if "{" in copy or "%" in copy:  # Ansible would template it (a name made to run code)
        raise UsageError(f"restore: {copy!r}: a path with '{{' or '%' is not taken")
    extravars = {"restore_host": host, "restore_from": str(Path(copy).resolve())}
    return _finish(ansible.playbook("restore.yml", extravars), as_json)


@main_group.command(help="One sync round in topology order (sync.yml).")
@_common
@_timings
def sync(inventory, limit, as_json, timings):
    return _playbook("sync.yml", inventory, limit, as_json, timings=timings)


@main_group.command(help="A rolling update to this checkout's release (upgrade.yml).")
@_common
@click.option("-e", "--extra-vars", "extra", multiple=True, metavar="KEY=VALUE")
@_timings
def rollout(inventory, limit, as_json, extra, timings):
    return _playbook("upgrade.yml", inventory, limit, as_json, _extravars(extra), timings=timings)


@main_group.command(
    name="users",
    help="Run COMMAND while users read and write through every farm's balancer over HTTP; "
    "say what they saw (exit 1 on a failed request, a lost write or a failed COMMAND).",
)
@click.option("-i", "--inventory", metavar="PATH", help="The inventory (default: inventory/local).")
@click.option("--before", default=20.0, show_default=True,
              help="Seconds of users before COMMAND (the p99 it is compared with).")  # fmt: skip
@click.option("--clients", default=farm_users.CLIENTS, show_default=True, help="Clients a farm.")
@click.option("--rate", default=farm_users.RATE, show_default=True,
              help="Requests a second per client.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON only (for CI).")
@click.argument("command", nargs=-1, required=True)
def users_(inventory, before, clients, rate, as_json, command):
    import tempfile

    root, inv, ansible = _context(inventory, None, as_json)
    ansible.quiet = True
    listing = project.read_inventory(root, inv)
    fleet = farm_users.Fleet(ansible, listing, project.fleet_of(listing))
    settings = {"clients": clients, "rate": rate}
    with tempfile.TemporaryDirectory(prefix="edgectl-users-") as workdir:
        rc, figs, present = farm_users.around(fleet, list(command), Path(workdir), before,
                                              **settings)  # fmt: skip
    failed = sum(f["failed_reads"] + f["failed_writes"] for f in figs.values())
    acked = {rid for f in figs.values() for rid in f["acked"]}
    if as_json:
        shown = {farm: {**{k: v for k, v in f.items() if k != "acked"},
                        "acked": len(f["acked"]), "present": len(f["acked"] & present)}
                 for farm, f in figs.items()}  # fmt: skip
        print(json.dumps({"command_rc": rc, "lost": len(acked - present), "farms": shown},
                         indent=2))  # fmt: skip
    else:
        shown = {**settings, "writes_every": farm_users.WRITES_EVERY}
        for line in farm_users.table(figs, present, shown):
            out.print(escape(line))
        if rc:
            out.print(f"[red]![/red] {escape(' '.join(command))} exited {rc}")
    return FLEET if rc or failed or acked - present else OK


@main_group.command(
    help="Remove this fleet's containers (teardown.yml); another fleet_name's on the same "
    "host stay; --all: everything edgesync made."
)
@_common
@click.option("--all", "everything", is_flag=True, help="Images, LXD project, keys too.")
def down(inventory, limit, as_json, everything):
    if limit:
        # teardown.yml removes what this fleet made on each provider host, whole.
        raise UsageError("edgectl down takes the whole fleet down; --limit is not supported")
    return _playbook("teardown.yml", inventory, limit, as_json,
                     {"teardown_all": "true"} if everything else {})  # fmt: skip


@main_group.command(
    name="status", help="One table for the fleet; hosts needing attention marked (exit 1)."
)
@_common
def status_(inventory, limit, as_json):
    root, inv, ansible = _context(inventory, limit, as_json)
    listing = project.read_inventory(root, inv)
    everyone = project.fleet_of(listing)
    fleet = _limited(everyone, limit, ansible)
    masters = [h["host"] for h in everyone if h["role"] == "master"]
    # The balancers in front of the farms of the selected hosts, or on them.
    chosen = {h["host"] for h in fleet}
    balancers = [b for b in project.balancers_of(listing, everyone)
                 if b["host"] in chosen or chosen & set(b["edges"])]  # fmt: skip
    fronting = sorted({b["host"] for b in balancers})
    ansible.quiet = True
    # The masters are always asked too: the others' release and content are
    # compared with the first that answers, whatever --limit selects; and a balancer's host
    # is asked how HAProxy sees the selected edges.
    result = ansible.module(HOSTS, "edgesync_info", statuses.INFO_ARGS,
                            extra_limit=":".join(["masters", *fronting]),
                            extravars={statuses.BALANCER_HOSTS: fronting})  # fmt: skip
    unreachable = _unreachable(result)
    rows_ = statuses.rows(fleet, result.results, unreachable, masters)
    brows = statuses.balancer_rows(balancers, result.results, unreachable)
    needs = statuses.attention_lines(rows_) + statuses.balancer_attention_lines(brows)
    if as_json:
        print(json.dumps({"hosts": rows_, "balancers": brows, "attention": needs,
                          "reference": statuses.reference(masters, result.results),
                          "seconds": round(result.seconds, 1)}, indent=2))  # fmt: skip
    else:
        ok = len(rows_) - len({r["host"] for r in rows_ if r["attention"]})
        out.print(statuses.table(rows_, f"edgesync fleet: {ok} of {len(rows_)} hosts fine "
                                      f"({result.seconds:.1f} s)"))  # fmt: skip
        if brows:
            out.print(statuses.balancer_table(brows))
        for line in needs:
            out.print(f"[red]![/red] {escape(one_line(line))}")
    return FLEET if needs else OK


@main_group.command(
    name="verify", help="Prove every host holds the same content, or name where it differs."
)
@_common
@click.option("--max-records", default=50, show_default=True, help="Records to list at most.")
def verify_(inventory, limit, as_json, max_records):
    root, inv, ansible = _context(inventory, limit, as_json)
    fleet = _limited(project.fleet_of(project.read_inventory(root, inv)), limit, ansible)
    names = {h["host"]: h["name"] for h in fleet}
    ansible.quiet = True

    def ask(table: str | None, prefix: str) -> dict[str, dict]:
        # JSON, not key=value: nothing from a host's answer becomes an argument
        # of its own (narrow also lets only a table name and a hex prefix by).
        verify.check_question(table, prefix)
        args = "" if table is None else json.dumps({"table": table, "prefix": prefix})
        res = ansible.module(HOSTS, "edgesync_digest", args)
        keep = ("digest", "tables", "table", "prefix", "rows", "buckets", "records")
        return {names.get(h, h): {k: v for k, v in r.items() if k in keep}
                for h, r in res.results.items()}  # fmt: skip

    report = verify.narrow(ask, [h["name"] for h in fleet], max_records=max_records)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        for line in verify.summary_lines(report):
            out.print(one_line(line), markup=False)
    return OK if report["agree"] else FLEET


@main_group.command(help="Draw the topology with Graphviz: OUT.dot, and from it OUT.svg and "
                         "OUT.png (exit 2 without Graphviz's dot, OUT.dot written).")  # fmt: skip
@click.option("-i", "--inventory", metavar="PATH")
@click.option("-o", "--out", "where", default="fleet", show_default=True,
              help="Path of the files to write, without suffix.")  # fmt: skip
@click.option("--all-links", is_flag=True,
              help="Also what the policy allows but no timer runs (dashed, grey).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON only: the files written.")
def graph(inventory, where, all_links, as_json):
    root = project.project_dir()
    inv = project.inventory_path(root, inventory)
    listing = project.read_inventory(root, inv)
    fleet = project.fleet_of(listing)
    written = graphs.render(fleet, Path(where), project.balancers_of(listing, fleet), all_links)
    if as_json:
        print(json.dumps({"files": [str(p) for p in written]}))
    else:
        for p in written:
            out.print(str(p), markup=False)
    return OK


def _limited(fleet: list[dict], limit: str | None, ansible: Ansible) -> list[dict]:
    """The fleet's hosts that --limit selects (as Ansible resolves the pattern)."""
    if not limit:
        return fleet
    listed = ansible.list_hosts(HOSTS)
    if not listed:
        raise UsageError(f"--limit {limit!r} selects no host of the fleet")
    return [h for h in fleet if h["host"] in listed]


def _unreachable(result: Result) -> dict[str, str]:
    return {line.split(":", 1)[0]: line.split(": ", 2)[-1] for line in result.failures}


def main(argv: list[str] | None = None) -> int:
    # ansible-runner looks for the ansible-* commands on PATH: those beside
    # the Python running edgectl (its virtualenv) come first.
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    try:
        rc = main_group.main(args=argv, prog_name="edgectl", standalone_mode=False)
    except UsageError as exc:
        err.print(f"edgectl: {one_line(str(exc))}", markup=False, soft_wrap=True)
        return USAGE
    except click.UsageError as exc:
        err.print(f"edgectl: {one_line(exc.format_message())}", markup=False, soft_wrap=True)
        return USAGE
    except click.exceptions.Abort:
        err.print("edgectl: interrupted", markup=False)
        return FLEET
    return rc if isinstance(rc, int) else OK


if __name__ == "__main__":
    sys.exit(main())
