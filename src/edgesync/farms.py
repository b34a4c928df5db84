"""The farms' balancers: which host fronts which farm, where users reach it,
and which edges it sends them to. One copy of that fleet fact, read by the
validate and balancer roles (plugins/filter/edgesync_farms.py), upgrade.yml's
drain, and edgectl's status and graph.

The inventory names them once for the whole fleet::

    edgesync_balancers:
      lon-a: {host: node01}                            # port 80, every address
      lon-b: {host: node02, port: 80, address: 10.0.0.5}

A balancer runs on a master or a node (an edge goes down in its own update),
one HAProxy per host, one frontend per farm it fronts. Its backends are the
farm's edges' HTTP faces, named by their inventory host names.
"""

from __future__ import annotations

import ipaddress

DEFAULT_PORT = 80
WILDCARDS = ("0.0.0.0", "::")


def farms(fleet: list[dict]) -> dict[str, list[dict]]:
    """The edges of each farm, in inventory order."""
    out: dict[str, list[dict]] = {}
    for h in fleet:
        if h.get("role") == "edge" and h.get("farm"):
            out.setdefault(h["farm"], []).append(h)
    return out


def balancers(fleet: list[dict], spec: dict | None) -> list[dict]:
    """The fleet's balancers, farm by farm as the inventory names them:
    {farm, host, address, port, edges: [edge host, ...]}. For a valid spec
    (see ``errors``)."""
    edges = farms(fleet)
    return [
        {
            "farm": str(farm),
            "host": str(conf["host"]),
            "address": str(conf.get("address") or WILDCARDS[0]),
            "port": int(conf.get("port") or DEFAULT_PORT),
            "edges": [e["host"] for e in edges.get(farm, [])],
            "backend": backend(str(farm)),
        }
        for farm, conf in (spec or {}).items()
    ]


def backend(farm: str) -> str:
    """The name of a farm's backend in HAProxy (the runtime API's ``BACKEND/EDGE``)."""
    return f"edges_{farm}"


def of_host(fleet: list[dict], spec: dict | None, host: str) -> list[dict]:
    """The farms ``host`` fronts (its HAProxy's frontends)."""
    return [b for b in balancers(fleet, spec) if b["host"] == host]


def of_edge(fleet: list[dict], spec: dict | None, edge: str) -> dict | None:
    """The balancer in front of edge host ``edge``, or None."""
    return next((b for b in balancers(fleet, spec) if edge in b["edges"]), None)


def errors(fleet: list[dict], spec, taken: dict[str, dict[int, str]]) -> list[str]:
    """Every problem of the inventory's ``edgesync_balancers``, one line each
    naming the farm. ``taken`` gives, per host, the ports something else of
    the host listens on already ({port: what})."""
    if spec in (None, {}):
        return []
    if not isinstance(spec, dict):
        return ["edgesync_balancers must map each farm to {host, port, address}"]
    hosts = {h["host"]: h for h in fleet}
    edges = farms(fleet)
    out: list[str] = []
    used: dict[tuple[str, int], str] = {}
    for farm, conf in spec.items():
        where = f"farm {farm}"
        if not isinstance(conf, dict) or not conf.get("host"):
            out.append(f"{where}: its balancer needs a host (edgesync_balancers.{farm}.host)")
            continue
        unknown = sorted(set(conf) - {"host", "port", "address"})
        if unknown:
            out.append(f"{where}: unknown balancer setting {unknown[0]!r} (host, port, address)")
        if farm not in edges:
            out.append(f"{where}: its balancer has no edges to send to "
                       f"(no edge has edgesync_farm {farm})")  # fmt: skip
        host = hosts.get(conf["host"])
        if host is None:
            out.append(f"{where}: balancer host {conf['host']} is not a host of the fleet")
            continue
        if host.get("role") == "edge":
            out.append(f"{where}: balancer host {host['host']} is an edge; a balancer runs on "
                       f"a node or a master (an edge goes down in its own update)")  # fmt: skip
        port = conf.get("port", DEFAULT_PORT)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            out.append(f"{where}: balancer port {port!r} is not a port (1-65535)")
            continue
        clash = taken.get(host["host"], {}).get(port) or used.get((host["host"], port))
        if clash:
            out.append(f"{where}: balancer port {port} on {host['host']} clashes with {clash}")
        used[(host["host"], port)] = f"farm {farm}'s balancer"
        address = str(conf.get("address") or WILDCARDS[0])
        try:
            ipaddress.ip_address(address)
        except ValueError:
            out.append(f"{where}: balancer address {address!r} is not an IP address")
            continue
        if address not in WILDCARDS and address != host.get("address"):
            known = host.get("address") or "none given"
            out.append(f"{where}: balancer address {address} is not an address of "
                       f"{host['host']} (its edgesync_address: {known}; 0.0.0.0 listens on "
                       f"every address)")  # fmt: skip
    return out


def listen(balancer: dict) -> str:
    """Where users reach it: ``0.0.0.0:80``, ``[::]:80``."""
    b = balancer
    where = f"[{b['address']}]" if ":" in b["address"] else b["address"]
    return f"{where}:{b['port']}"


def label(balancer: dict) -> str:
    """One line: ``farm lon-a: node01 0.0.0.0:80 -> edge01, edge02``."""
    b = balancer
    return f"farm {b['farm']}: {b['host']} {listen(b)} -> {', '.join(b['edges'])}"
