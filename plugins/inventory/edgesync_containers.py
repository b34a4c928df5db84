"""Inventory plugin: the fleet's containers, found in LXD and Docker by their edgesync labels."""

from __future__ import annotations

DOCUMENTATION = r"""
name: edgesync_containers
short_description: Discover edgesync hosts in LXD and Docker by their labels
description:
  - Lists the LXD instances of a project whose config carries C(user.edgesync.name)
    and the Docker containers labelled C(edgesync.name), with their role, farm,
    location and trusted list, grouped into C(masters), C(nodes), C(edges) and
    one C(farm_<farm>) group per farm (dashes become underscores).
  - Uses pylxd and the Docker SDK.
options:
  plugin:
    description: Must be C(edgesync_containers).
    required: true
    choices: [edgesync_containers]
  fleet:
    description:
      - The fleet's name (the inventory's C(fleet_name)). Its containers' names
        begin with it and a dash; Docker containers labelled with another
        fleet's name are left out.
    type: str
    default: edgesync
  lxd_project:
    description: The LXD project to read (default the fleet's name); C(-) to skip LXD.
    type: str
    default: ""
  lxd_endpoint:
    description: LXD endpoint (empty for the local unix socket).
    type: str
    default: ""
  docker_url:
    description: Docker endpoint; empty to skip Docker.
    type: str
    default: unix://var/run/docker.sock
"""

EXAMPLES = r"""
# inventory/discovered/edgesync_containers.yml
plugin: edgesync_containers
fleet: edgesync
"""

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin

from edgesync.topology import ROLE_GROUPS


def host_entries(records: list[dict], fleet: str = "edgesync") -> list[dict]:
    """Hosts from discovered records ({container, provider, name, role, farm,
    location, trusted}) of fleet ``fleet``: inventory name, groups and
    variables of each."""
    hosts = []
    for r in records:
        container = r["container"]
        inv = container.removeprefix(f"{fleet}-")
        groups = []
        if r.get("role") in ROLE_GROUPS:
            groups.append(ROLE_GROUPS[r["role"]])
        if r.get("farm"):
            groups.append("farm_" + r["farm"].replace("-", "_"))
        variables = {
            "edgesync_name": r["name"],
            "edgesync_role": r.get("role"),
            "edgesync_location": r.get("location"),
            "edgesync_provider": r["provider"],
            "edgesync_container": container,
            "ansible_host": container,
            "ansible_python_interpreter": "/usr/bin/python3",
        }
        if r.get("farm"):
            variables["edgesync_farm"] = r["farm"]
        trusted = [t for t in (r.get("trusted") or "").split(",") if t]
        if trusted:
            variables["edgesync_trusted"] = trusted
        if r["provider"] == "lxd":
            variables["ansible_connection"] = "community.general.lxd"
            variables["ansible_lxd_project"] = r.get("project", fleet)
        else:
            variables["ansible_connection"] = "community.docker.docker"
        hosts.append({"name": inv, "groups": groups, "vars": variables})
    return hosts


class InventoryModule(BaseInventoryPlugin):
    NAME = "edgesync_containers"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(
            ("edgesync_containers.yml", "edgesync_containers.yaml")
        )

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        records = []
        fleet = self.get_option("fleet")
        project = self.get_option("lxd_project") or fleet
        if project != "-":
            records += self._lxd(project, self.get_option("lxd_endpoint") or None)
        if self.get_option("docker_url"):
            records += self._docker(self.get_option("docker_url"), fleet)
        for group in ROLE_GROUPS.values():
            self.inventory.add_group(group)
        for host in host_entries(records, fleet):
            self.inventory.add_host(host["name"])
            for group in host["groups"]:
                self.inventory.add_group(group)
                self.inventory.add_child(group, host["name"])
            for key, value in host["vars"].items():
                self.inventory.set_variable(host["name"], key, value)

    def _lxd(self, project, endpoint):
        try:
            import pylxd

            client = pylxd.Client(endpoint=endpoint, project=project)
            instances = client.instances.all()
        except Exception as exc:  # the SDK raises several kinds; all mean "cannot read LXD"
            raise AnsibleParserError(
                f"edgesync_containers: cannot read LXD project {project}: {exc}"
            ) from None
        out = []
        for inst in instances:
            cfg = inst.config
            if "user.edgesync.name" not in cfg:
                continue
            out.append(
                {
                    "container": inst.name,
                    "provider": "lxd",
                    "project": project,
                    "name": cfg["user.edgesync.name"],
                    "role": cfg.get("user.edgesync.role"),
                    "farm": cfg.get("user.edgesync.farm"),
                    "location": cfg.get("user.edgesync.location"),
                    "trusted": cfg.get("user.edgesync.trusted"),
                }
            )
        return out

    def _docker(self, url, fleet):
        try:
            import docker

            client = docker.DockerClient(base_url=url)
            containers = client.containers.list(all=True, filters={"label": "edgesync.name"})
        except Exception as exc:  # the SDK raises several kinds; all mean "cannot read Docker"
            raise AnsibleParserError(
                f"edgesync_containers: cannot read Docker at {url}: {exc}"
            ) from None
        out = []
        for c in containers:
            labels = c.labels
            # Containers made before they carried their fleet's name: by name.
            mine = labels.get("edgesync.fleet", fleet) == fleet and c.name.startswith(f"{fleet}-")
            if not mine:
                continue
            out.append(
                {
                    "container": c.name,
                    "provider": "docker",
                    "name": labels["edgesync.name"],
                    "role": labels.get("edgesync.role"),
                    "farm": labels.get("edgesync.farm") or None,
                    "location": labels.get("edgesync.location"),
                    "trusted": labels.get("edgesync.trusted"),
                }
            )
        return out
