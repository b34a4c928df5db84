"""Config files for a fleet of agents on one machine, each reaching every other
over a ``local:`` peer: the tests' farms, the local demo and the benchmarks.
Every file is written by ``config.dump``."""

from __future__ import annotations

from pathlib import Path

from .config import dump

PAGES = {"columns": ["section", "title", "body"], "slug": ["section", "title"]}


def config_path(root: Path, name: str) -> Path:
    return root / f"{name.lower()}.toml"


def write(
    root: Path,
    fleet: dict[str, tuple[str, str | None, tuple[str, ...] | list[str]]],
    redis_url: str,
    tables: dict | None = None,
    **node_keys,
) -> dict[str, Path]:
    """Write one config per node of ``fleet`` (name: (role, farm, trusted)) into
    ``root``; each node's data lives in ``root/<name>``. Returns name: path."""
    paths = {}
    for name, (role, farm, trusted) in fleet.items():
        node = {"name": name, "location": "LON", "role": role, "farm": farm,
                "trusted": list(trusted) or None, "data_dir": name.lower(),
                "redis_url": redis_url, **node_keys}  # fmt: skip
        peers = {
            other: {"url": f"local:{config_path(root, other).name}", "role": orole, "farm": ofarm}
            for other, (orole, ofarm, _t) in fleet.items()
            if other != name
        }
        paths[name] = config_path(root, name)
        paths[name].write_text(
            dump({"node": node, "peers": peers, "tables": tables or {"pages": PAGES}})
        )
    return paths
