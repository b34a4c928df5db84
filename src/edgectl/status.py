"""The fleet's status as one table: each host's agent answer (edgesync_info)
joined with the inventory, and the hosts that need attention marked.

A host needs attention when it did not answer, its Redis is not ok, its API
(the HTTP face) does not answer or is not ready, it runs another release than the
master, holds other content than the master (while nothing is pending), has
changes waiting in its outbox with no successful sync for a while, has a link
whose last session failed, or refused a peer recently.

The API column is what the module read on the host from the API's own
/metrics, twice a second apart: the users' requests per second between the
two reads and the 99th percentile of their time (— when there were none).

Each farm's balancer (``edgesync.farms``: which host fronts which farm) is a
row of a table of its own: the state HAProxy gives each of the farm's edges,
read by the module on the balancer's host from HAProxy's runtime API. A
balancer needs attention when an edge of its farm is not UP there (DRAIN,
MAINT, DOWN, or not in its backend at all), HAProxy sends to a server that is
no edge of the farm, or it could not be read.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.markup import escape
from rich.table import Table

from edgesync import farms, topology

# A link or outbox older than this, in seconds, is stale (the timers run every
# few minutes; an operator looks after one that has not synced in ten).
STALE_S = 600


def reference(masters: list[str], answers: dict[str, dict]) -> str | None:
    """The master the others are compared with: the first that answered (with
    one master down the fleet still has a reference), else the first."""
    return next((m for m in masters if m in answers), masters[0] if masters else None)


def rows(fleet: list[dict], answers: dict[str, dict], unreachable: dict[str, str],
         masters: list[str] | None = None) -> list[dict]:  # fmt: skip
    """One row per host of the fleet, in the fleet's order, each compared with
    the answer of the first of ``masters`` (the fleet's masters by default)
    that answered."""
    if masters is None:
        masters = [h["host"] for h in fleet if h["role"] == "master"]
    master = reference(masters, answers)
    reference_answer = answers.get(master, {}) if master else {}
    scheduled = {(lk["initiator"], lk["action"], lk["target"]) for lk in topology.links(fleet)}
    out = []
    for h in fleet:
        answer = answers.get(h["host"])
        row = {"host": h["host"], "name": h["name"], "role": h["role"], "farm": h["farm"],
               "provider": h["provider"] if h["provider_host"] == "localhost"
               else f"{h['provider']}@{h['provider_host']}"}  # fmt: skip
        if answer is None:
            row["attention"] = [unreachable.get(h["host"], "no answer")]
            out.append(row)
            continue
        try:
            _answered(row, h, answer, scheduled)
            row["attention"] = _attention(row, reference_answer, h["host"] == master)
        except (AttributeError, KeyError, TypeError, ValueError):
            for key in list(row):
                if key not in ("host", "name", "role", "farm", "provider"):
                    del row[key]
            row["attention"] = ["answered status out of shape"]
        out.append(row)
    return out


def _answered(row: dict, h: dict, answer: dict, scheduled: set) -> None:
    """Fill ``row`` from a host's edgesync_info answer (raises on one out of shape)."""
    st = answer.get("status") or {}
    links = st.get("links") or []
    row.update(
        version=answer.get("version"),
        schema=answer.get("schema"),
        rows=sum((st.get("rows") or {}).values()),
        pending=st.get("outbox_pending", 0),
        digest=answer.get("digest", ""),
        links=[
            _link(lk, (h["name"], lk.get("action"), lk.get("peer")) in scheduled)
            for lk in links
            if lk.get("initiated")
        ],  # fmt: skip
        redis=st.get("redis"),
        refusals=(st.get("refusals") or {}).get("count", 0),
        last_refusal=_last_refusal(st),
        api=_api(answer.get("api")),
        forks=[_fork(f) for f in st.get("forks") or []],
    )
    row["rows"] = int(row["rows"])
    row["pending"] = int(row["pending"] or 0)


def _link(lk: dict, scheduled: bool) -> dict:
    return {"peer": lk.get("peer"), "action": lk.get("action"), "scheduled": scheduled,
            "last_ok": lk.get("last_ok"), "age_s": lk.get("last_ok_age_s"),
            "failed": _failed_last(lk), "failed_at": lk.get("last_failed"),
            "error": lk.get("last_error")}  # fmt: skip


def _api(api: dict | None) -> dict:
    """The API part of an answer, checked for its shape (a host may say anything)."""
    if api is None:
        return {"up": False, "ready": False, "reason": "not reported",
                "requests_per_s": None, "p99_s": None}  # fmt: skip
    out = {"up": api["up"], "ready": api["ready"], "reason": api.get("reason"),
           "requests_per_s": api.get("requests_per_s"), "p99_s": api.get("p99_s")}  # fmt: skip
    if not isinstance(out["up"], bool) or not isinstance(out["ready"], bool):
        raise TypeError("api: up and ready are booleans")
    if out["reason"] is not None and not isinstance(out["reason"], str):
        raise TypeError("api: reason is text")
    for key in ("requests_per_s", "p99_s"):
        value = out[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not 0 <= value < 1e12):  # fmt: skip
            raise ValueError(f"api: {key} is a number")
    return out


def _fork(f: dict) -> dict:
    """A fork a host reports (edgesync.forks.summary), checked for its shape."""
    out = {"origin": f["origin"], "n": f["n"], "withheld": f.get("withheld", 0),
           "went_on_as": f.get("went_on_as")}  # fmt: skip
    if not isinstance(out["origin"], str):
        raise TypeError("forks: origin is text")
    for key in ("n", "withheld"):
        if isinstance(out[key], bool) or not isinstance(out[key], int) or out[key] < 0:
            raise ValueError(f"forks: {key} is a count")
    if out["went_on_as"] is not None and not isinstance(out["went_on_as"], str):
        raise TypeError("forks: went_on_as is text")
    return out


def _failed_last(lk: dict) -> bool:
    return bool(lk.get("last_failed")) and (lk.get("last_ok") or "") < lk["last_failed"]


def _last_refusal(st: dict) -> dict | None:
    last = (st.get("refusals") or {}).get("last") or []
    return last[0] if last else None


def _attention(row: dict, reference: dict, is_master: bool) -> list[str]:
    why = []
    if row["redis"] != "ok":
        why.append(f"Redis: {row['redis']}")
    api = row["api"]
    if not api["up"]:
        why.append(f"API down: {api['reason'] or 'no detail'}")
    elif not api["ready"]:
        why.append(f"API not ready: {api['reason'] or 'no detail'}")
    if reference and not is_master:
        if row["version"] != reference.get("version"):
            why.append(f"runs {row['version']}, the master {reference.get('version')}")
        if row["digest"] != reference.get("digest") and not row["pending"]:
            why.append("content differs from the master's")
    for lk in row["links"]:
        # A link of the round that fails needs looking at however long ago; one
        # tried by hand outside it, only while it is recent.
        if lk["failed"] and (lk["scheduled"] or _age_s(lk["failed_at"]) < STALE_S):
            why.append(f"{lk['action']} {lk['peer']} failed: {lk['error'] or 'no detail'}")
    ages = [lk["age_s"] for lk in row["links"] if lk["age_s"] is not None and lk["scheduled"]]
    if row["pending"] and (not ages or min(ages) > STALE_S):
        why.append(f"{row['pending']} changes pending, no sync in {STALE_S // 60} min")
    for f in row["forks"]:
        # Two changes signed in one origin's name and number: its key is in
        # other hands (or its node was restored and handed a number on twice).
        went = f" (its node went on as {f['went_on_as']})" if f["went_on_as"] else ""
        why.append(f"{f['origin']} signed two changes numbered {f['n']}: quarantined, "
                   f"{f['withheld']} of its changes held back here{went}; revoke or "
                   f"replace its key")  # fmt: skip
    refusal = row["last_refusal"]
    if refusal and _age_s(refusal.get("at")) < STALE_S:
        why.append(f"refused {refusal.get('peer')} {refusal.get('action')}: {refusal.get('rule')}")
    return why


def _age_s(at: str | None) -> float:
    if not at:
        return float("inf")
    try:
        when = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - when).total_seconds()


def age(seconds: float | None) -> str:
    """``seconds`` as an operator reads an age: 42s, 7m, 3h, 2d; never as ``-``."""
    if seconds is None:
        return "never"
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def table(rows_: list[dict], title: str) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for col in ("", "host", "role", "farm", "provider", "version", "rows", "pending", "API",
                "last sync ↓pull ↑push", "last refusal", "digest"):  # fmt: skip
        t.add_column(col, no_wrap=col not in ("last sync ↓pull ↑push", "last refusal"))
    for r in rows_:
        mark = "[red]![/red]" if r["attention"] else "[green]✓[/green]"
        # Everything a host said is text, never markup: an edge may say anything.
        r = {k: escape(v) if isinstance(v, str) else v for k, v in r.items()}
        if "version" in r:
            r.update({k: r[k] if isinstance(r[k], str) else escape(str(r[k]))
                      for k in ("version", "schema", "rows", "pending")})  # fmt: skip
        if "version" not in r:
            t.add_row(mark, r["host"], r["role"], r["farm"] or "", r["provider"],
                      "[red]unreachable[/red]", "", "", "", "", "", "")  # fmt: skip
            continue
        links = _links_cell(r["links"])
        refusal = r["last_refusal"]
        t.add_row(mark, r["host"], r["role"], r["farm"] or "", r["provider"],
                  f"{r['version']}/s{r['schema']}", str(r["rows"]), str(r["pending"]),
                  _api_cell(r["api"]), links,
                  f"{escape(str(refusal.get('peer')))} {age(_age_s(refusal.get('at')))} ago"
                  if refusal else "—",
                  escape(str(r["digest"])[:12]))  # fmt: skip
    return t


def _api_cell(api: dict) -> str:
    """``up 12.0/s 4.2ms``: users' requests a second and their p99; or why not."""
    if not api["up"]:
        return "[red]down[/red]"
    if not api["ready"]:
        return "[red]not ready[/red]"
    rate, p99 = api["requests_per_s"], api["p99_s"]
    return (f"up {'?' if rate is None else f'{rate:.1f}'}/s "
            f"{'—' if p99 is None else f'{p99 * 1000:.1f}ms'}")  # fmt: skip


def _links_cell(links: list[dict]) -> str:
    """The round's links, one line per peer: ``EDGE01 ↓12m ↑12m`` (pull, push ages)."""
    by_peer: dict[str, list[str]] = {}
    for lk in links:
        if lk["scheduled"]:
            mark = "↓" if lk["action"] == "pull" else "↑"
            cell = f"{mark}{age(lk['age_s'])}" + ("[red]✗[/red]" if lk["failed"] else "")
            by_peer.setdefault(escape(str(lk["peer"])), []).append(cell)
    return "\n".join(f"{peer} {' '.join(cells)}" for peer, cells in by_peer.items()) or "—"


def attention_lines(rows_: list[dict]) -> list[str]:
    return [f"{r['host']}: {why}" for r in rows_ for why in r["attention"]]


# -- the farms' balancers ---------------------------------------------------------

# The module is given the runtime API socket (the playbooks' shared fact) only
# on the hosts that front farms, which edgectl passes as BALANCER_HOSTS.
BALANCER_HOSTS = "edgectl_balancer_hosts"
INFO_ARGS = ('{"balancer_socket": "{{ edgesync_balancer_socket if inventory_hostname in '
             + BALANCER_HOSTS + ' else omit }}"}')  # fmt: skip


def balancer_rows(balancers: list[dict], answers: dict[str, dict],
                  unreachable: dict[str, str]) -> list[dict]:  # fmt: skip
    """One row per farm's balancer (``edgesync.farms.balancers``), with the state
    HAProxy gives each edge of the farm as the balancer's host answered it:
    {farm, host, address, port, listen, backend, edges, backends: {server:
    state, None for an edge not in HAProxy's backend}, sessions: {server: n},
    error, attention}."""
    out = []
    for b in balancers:
        row = {**b, "listen": farms.listen(b), "backends": {}, "sessions": {}, "error": None}
        answer = answers.get(b["host"])
        try:
            if answer is None:
                row["error"] = f"{b['host']}: {unreachable.get(b['host'], 'no answer')}"
            else:
                _balanced(row, answer.get("balancer"))
        except (AttributeError, KeyError, TypeError, ValueError):
            row.update(backends={}, sessions={}, error="answered balancer out of shape")
        row["attention"] = _balancer_attention(row)
        out.append(row)
    return out


def _balanced(row: dict, said) -> None:
    """Fill ``row`` from the module's ``balancer`` answer (raises on one out of shape)."""
    if said is None:
        row["error"] = "the module was not given the runtime API socket"
        return
    if said["error"] is not None:
        row["error"] = str(said["error"])
        return
    servers = said["backends"].get(row["backend"])
    if servers is None:
        row["error"] = f"HAProxy has no backend {row['backend']}"
        return
    for edge in row["edges"]:
        row["backends"][edge] = None
    for server, st in servers.items():
        sessions = st.get("sessions")
        if not isinstance(server, str) or not isinstance(st["status"], str):
            raise TypeError("balancer: server names and states are text")
        if sessions is not None and (isinstance(sessions, bool) or not isinstance(sessions, int)):
            raise TypeError("balancer: sessions are counts")
        row["backends"][server] = st["status"]
        row["sessions"][server] = sessions


def serving(state: str | None) -> bool:
    """HAProxy sends users to a server in this state: UP, or UP while failed
    checks count toward DOWN (``UP 1/2``)."""
    return bool(state) and state.split()[0] == "UP"


def _balancer_attention(row: dict) -> list[str]:
    if row["error"]:
        return [f"not read: {row['error']}"]
    if not row["edges"]:
        return ["the farm has no edge to send to"]
    why = []
    missing = [e for e in row["edges"] if row["backends"][e] is None]
    down = [f"{e} {row['backends'][e]}" for e in row["edges"]
            if e not in missing and not serving(row["backends"][e])]  # fmt: skip
    strangers = [s for s in row["backends"] if s not in row["edges"]]
    if down:
        why.append(", ".join(down))
    if missing:
        why.append(f"not in HAProxy's backend: {', '.join(missing)}")
    if strangers:
        why.append(f"HAProxy also sends to {', '.join(strangers)}, no edge of the farm")
    return why


def balancer_attention_lines(rows_: list[dict]) -> list[str]:
    return [f"balancer of farm {r['farm']} on {r['host']}: {why}"
            for r in rows_ for why in r["attention"]]  # fmt: skip


def balancer_table(rows_: list[dict]) -> Table:
    """The farms' balancers, one row each: its edges as HAProxy sees them."""
    fine = sum(1 for r in rows_ if not r["attention"])
    t = Table(title=f"balancers: {fine} of {len(rows_)} farms fine", title_justify="left",
              header_style="bold")  # fmt: skip
    for col in ("", "farm", "host", "listen", "edges as HAProxy sees them"):
        t.add_column(col, no_wrap=True)
    for r in rows_:
        mark = "[red]![/red]" if r["attention"] else "[green]✓[/green]"
        if r["error"]:
            cell = f"[red]{escape(r['error'])}[/red]"
        else:
            cell = "\n".join(_backend_cell(r, server, state)
                             for server, state in r["backends"].items()) or "—"  # fmt: skip
        t.add_row(mark, escape(str(r["farm"])), escape(r["host"]), escape(r["listen"]), cell)
    return t


def _backend_cell(row: dict, server: str, state: str | None) -> str:
    """``edge01 UP · 3 sessions``, in red what is not as it should be."""
    words = escape(state or "not in HAProxy's backend")
    ours = server in row["edges"]
    cell = f"{escape(server)} {words if ours and serving(state) else f'[red]{words}[/red]'}"
    if not ours:
        cell += " [red](no edge of the farm)[/red]"
    sessions = row["sessions"].get(server)
    if sessions is not None:
        cell += f" · {sessions} session{'' if sessions == 1 else 's'}"
    return cell
