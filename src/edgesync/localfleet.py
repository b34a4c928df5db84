"""Config files for a fleet of agents on one machine, each reaching every other
over a ``local:`` peer: the tests' farms, the local demo and the benchmarks.
Every file is written by ``config.dump``; every node reads the fleet's public
keys from one file, ``ROOT/fleet_keys``, which ``share_keys`` writes once the
nodes made their keys (``init``)."""

from __future__ import annotations

from pathlib import Path

from . import topology
from .config import dump

PAGES = {"columns": ["section", "title", "body"], "slug": ["section", "title"]}


def config_path(root: Path, name: str) -> Path:
    return root / f"{name.lower()}.toml"


def keys_path(root: Path) -> Path:
    return root / "fleet_keys"


def share_keys(root: Path, names) -> Path:
    """Write the fleet's keys file from each node's ``signing_key.pub``."""
    lines = [(root / name.lower() / "signing_key.pub").read_text() for name in names]
    path = keys_path(root)
    path.write_text("".join(lines))
    return path


def write(
    root: Path,
    fleet: dict[str, tuple[str, str | None, tuple[str, ...] | list[str]]],
    redis_url: str,
    tables: dict | None = None,
    **node_keys,
) -> dict[str, Path]:
    """Write one config per node of ``fleet`` (name: (role, farm, trusted)) into
    ``root``; each node's data lives in ``root/<name>``; each pushes (with a
    consumer group) to the peers the topology's links have it push to.
    Returns name: path."""
    paths = {}
    hosts = [{"name": n, "role": r, "farm": f, "trusted": list(t)}
             for n, (r, f, t) in fleet.items()]  # fmt: skip
    pushes = {(lk["initiator"], lk["target"]) for lk in topology.links(hosts)
              if lk["action"] == "push"}  # fmt: skip
    for name, (role, farm, trusted) in fleet.items():
        node = {"name": name, "location": "LON", "role": role, "farm": farm,
                "trusted": list(trusted) or None, "data_dir": name.lower(),
                "redis_url": redis_url, "keys_file": str(keys_path(root)),
                **node_keys}  # fmt: skip
        peers = {
            other: {
                "url": f"local:{config_path(root, other).name}",
                "role": orole,
                "farm": ofarm,
                "push": True if (name, other) in pushes else None,
            }  # fmt: skip
            for other, (orole, ofarm, _t) in fleet.items()
            if other != name
        }
        paths[name] = config_path(root, name)
        paths[name].write_text(
            dump({"node": node, "peers": peers, "tables": tables or {"pages": PAGES}})
        )
    return paths
