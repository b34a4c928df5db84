"""Farm filters: the inventory's balancers (``edgesync_balancers``) in the
agent's own terms (``edgesync.farms``), for the validate and balancer roles
and upgrade.yml's drain."""

from __future__ import annotations

from edgesync import farms


def edgesync_balancers(fleet: list[dict], spec) -> list[dict]:
    """Every balancer: {farm, host, address, port, edges}."""
    return farms.balancers(fleet, spec)


def edgesync_balancer_frontends(fleet: list[dict], spec, host: str, hostvars,
                                http_port, max_body_bytes=1048576) -> list[dict]:  # fmt: skip
    """The frontends of ``host``'s HAProxy, each with its backends:
    {farm, address, port, max_body_bytes, backends: [{name, address, port}]}.
    An edge's address is the one provisioning noted (edgesync_address), else
    the one its facts give; its port is its API's (api_port, else the
    fleet's). ``max_body_bytes`` is the largest request body an edge of the
    farm takes (api_max_body_bytes, else the api role's default given here)."""
    out = []
    for b in farms.of_host(fleet, spec, host):
        backends = []
        for edge in b["edges"]:
            hv = hostvars[edge]
            facts = hv.get("ansible_default_ipv4") or {}
            address = hv.get("edgesync_address") or facts.get("address")
            if not address:
                raise ValueError(f"farm {b['farm']}: the address of edge {edge} is not known")
            port = int(hv.get("api_port", http_port))
            backends.append({"name": edge, "address": address, "port": port})
        limit = max(int(hostvars[e].get("api_max_body_bytes", max_body_bytes)) for e in b["edges"])
        out.append({**b, "backends": backends, "max_body_bytes": limit})
    return out


def edgesync_balancer_of_edge(fleet: list[dict], spec, edge: str) -> dict | None:
    """The balancer in front of edge host ``edge`` (None: it has none)."""
    return farms.of_edge(fleet, spec, edge)


def edgesync_balancer_errors(fleet: list[dict], spec, hostvars, http_port, redis_port,
                             stats_port) -> list[str]:  # fmt: skip
    """Every problem of ``edgesync_balancers``, one line each naming the farm:
    a farm without edges, a host that is not a node or master of the fleet, a
    port that clashes (with sshd, Redis, the host's API, the balancers' stats
    page, another farm's balancer on the host), an address not the host's."""
    taken = {}
    for h in fleet:
        hv = hostvars[h["host"]]
        api = hv.get("api_port", http_port)
        taken[h["host"]] = {
            22: "sshd",
            int(redis_port): "Redis",
            int(api) if str(api).isdigit() else -1: f"{h['host']}'s API (api_port)",
            int(hv.get("balancer_stats_port", stats_port)): "the balancer's stats page",
        }
    return farms.errors(fleet, spec, taken)


class FilterModule:
    def filters(self):
        return {
            "edgesync_balancers": edgesync_balancers,
            "edgesync_balancer_frontends": edgesync_balancer_frontends,
            "edgesync_balancer_of_edge": edgesync_balancer_of_edge,
            "edgesync_balancer_errors": edgesync_balancer_errors,
            "edgesync_balancer_label": farms.label,
        }
