"""The inventory plugin's grouping, from records as LXD and Docker report them."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "inventory"))

from edgesync_containers import host_entries


def test_records_become_hosts_grouped_by_role_and_farm():
    hosts = host_entries([
        {"container": "edgesync-edge01", "provider": "lxd", "project": "edgesync", "name": "EDGE01",
         "role": "edge", "farm": "lon-a", "location": "LON", "trusted": None},
        {"container": "edgesync-node01", "provider": "docker", "name": "NODE01", "role": "node",
         "farm": None, "location": "LON", "trusted": "MASTER01,EDGE01"},
    ])  # fmt: skip
    edge, node = hosts
    assert edge["name"] == "edge01" and edge["groups"] == ["edges", "farm_lon_a"]
    assert edge["vars"]["ansible_connection"] == "community.general.lxd"
    assert edge["vars"]["ansible_lxd_project"] == "edgesync"
    assert edge["vars"]["edgesync_farm"] == "lon-a"
    assert node["groups"] == ["nodes"]
    assert node["vars"]["ansible_connection"] == "community.docker.docker"
    assert node["vars"]["edgesync_trusted"] == ["MASTER01", "EDGE01"]
    assert "edgesync_farm" not in node["vars"]
