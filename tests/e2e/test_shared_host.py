"""Fleets that share a provider host, and the fleet's network against spoofing.

A second inventory, fleet ``twin`` (a master on LXD, a node on Docker, subnets
of its own), is brought up on this machine beside the local fleet, syncs, and
is taken down again with ``edgectl down``: the local fleet loses nothing (its
containers, project, networks, firewall rules and the controller's SSH entries
stay) and keeps syncing.

Root in a container tries to send packets from an address that is not its own
(the gateway the controller's administration key is pinned to, another
container): they never arrive, while its packets from its own address do.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, Fleet, container, report
from runner_events import failures

EDGECTL = str(Path(sys.executable).parent / "edgectl")
TWIN = "twin"
# A port no service of the fleet listens on: UDP datagrams to it are only counted.
PROBE_PORT = 47999


def twin_inventory(fleet: Fleet, where: Path) -> Path:
    """inventory/local's settings for a fleet of its own: another name, other
    subnets, a master on LXD and a node on Docker, no farms."""
    inventory = where / "inventory"
    inventory.mkdir(parents=True)
    (inventory / "group_vars").mkdir()
    common = yaml.safe_load((fleet.inventory / "group_vars" / "all.yml").read_text())
    common.update(fleet_name=TWIN, edgesync_balancers={}, edgesync_lxd_address="10.213.57.1/24",
                  edgesync_docker_subnet="10.213.58.0/24")  # fmt: skip
    (inventory / "group_vars" / "all.yml").write_text(yaml.safe_dump(common))
    hosts = {"all": {"children": {
        "masters": {"hosts": {"master01": {
            "edgesync_name": "MASTER01", "edgesync_role": "master", "edgesync_provider": "lxd"}}},
        "nodes": {"hosts": {"node01": {
            "edgesync_name": "NODE01", "edgesync_role": "node", "edgesync_provider": "docker",
            "edgesync_trusted": ["MASTER01"]}}},
    }}}  # fmt: skip
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inventory


def provider_state(fleet_name: str) -> dict:
    """What of a fleet the provider host holds: containers, networks, rules."""

    def out(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True).stdout

    lxd = out("lxc", "list", "--project", fleet_name, "--format", "csv", "-c", "ns")
    docker = out("docker", "ps", "-a", "--filter", f"name=^{fleet_name}-", "--format",
                 "{{.Names}},{{.State}}")  # fmt: skip
    networks = [
        row.split(",")[0] for row in out("lxc", "network", "list", "--format", "csv").split()
    ]
    return {
        "lxd": sorted(lxd.split()),
        "docker": sorted(docker.split()),
        "network": out("docker", "network", "ls", "--filter", f"name=^{fleet_name}$", "-q").strip(),
        "guard": out("iptables", "-S", f"{fleet_name}-source"),
        "bridge": f"{fleet_name}br0" in networks,
    }


def test_a_second_fleet_on_the_same_host_comes_and_goes_and_ours_keeps_syncing(
    built, fleet, say, tmp_path, twin_cleared
):
    ours = provider_state(fleet.name)
    assert ours["lxd"] and ours["network"] and ours["guard"], ours
    twin = Fleet(tmp_path / "twin", twin_inventory(fleet, tmp_path), say)
    up = twin.playbook("site.yml")
    report(say, "site.yml of a second fleet on the same host", up)
    try:
        assert up.rc == 0, failures(up)
        twin.agent("node01", "put", "pages", "--data", '{"title": "the twin fleet"}')
        assert twin.sync_round() == []
        assert len(set(twin.digests().values())) == 1
        theirs = provider_state(TWIN)
        assert theirs["lxd"] == [f"{container('master01', TWIN)},RUNNING"], theirs
        assert theirs["docker"] == [f"{container('node01', TWIN)},running"], theirs
        assert theirs["network"] and theirs["guard"] and theirs["bridge"], theirs
    finally:
        down = subprocess.run([EDGECTL, "down", "-i", str(twin.inventory)], capture_output=True,
                              text=True, timeout=600)  # fmt: skip
    assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-2000:]
    gone = provider_state(TWIN)
    assert gone["lxd"] == [] and gone["docker"] == [] and not gone["network"], gone
    assert not gone["guard"], gone
    admin = Path(fleet.admin_dir)
    assert not (admin / "hosts.d" / f"{container('node01', TWIN)}.conf").exists()
    # Ours: all there, reachable as before, and syncing.
    assert provider_state(fleet.name) == ours
    assert (admin / "hosts.d" / f"{container('node01')}.conf").exists()
    made = fleet.agent_json("edge04", "put", "pages", "--data", '{"title": "after the twin"}')
    failed, present, digests, _rounds = fleet.converge({made["id"]})
    assert failed == [] and present == {made["id"]}, failed
    assert len(set(digests.values())) == 1, digests
    info = fleet.module("all", "edgesync_info")  # the controller still reaches every host
    assert info.rc == 0, failures(info)


@pytest.fixture
def twin_cleared():
    """What `edgectl down` keeps for the next site.yml of the twin fleet (its
    LXD project, bridge and pool) goes after the test, with lxc itself (`down
    --all` would remove the base image the local fleet's next builds use)."""
    yield
    for cmd in (["project", "delete", TWIN], ["network", "delete", f"{TWIN}br0"],
                ["storage", "delete", TWIN]):  # fmt: skip
        subprocess.run(["lxc", *cmd], capture_output=True)
    # The firewall rules LXD made for the bridge and cannot delete itself.
    stale = REPO / "roles" / "lxd_containers" / "files" / "stale_filters.sh"
    subprocess.run(["bash", str(stale)], capture_output=True, check=True)


# Runs on a host as root: sends datagrams to TARGET from SOURCE. From its own
# address, a plain socket; from another, every way root may try: a socket with
# IP_TRANSPARENT (needs NET_ADMIN or NET_RAW), and a raw socket writing its own
# IP header (needs NET_RAW). Prints what each way's kernel said.
SEND = textwrap.dedent("""
    import socket, struct, sys
    source, target, port, word = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if word == "own":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(3):
            s.sendto(word.encode(), (target, port))
        sys.exit()
    said = []
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, 19, 1)  # IP_TRANSPARENT
        s.bind((source, 0))
        for _ in range(3):
            s.sendto(word.encode(), (target, port))
        said.append("transparent: sent")
    except OSError as e:
        said.append(f"transparent: {e.strerror}")
    try:
        r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        r.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        udp = struct.pack("!HHHH", 40000, port, 8 + len(word), 0) + word.encode()
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         socket.inet_aton(source), socket.inet_aton(target))
        for _ in range(3):
            r.sendto(ip + udp, (target, 0))
        said.append("raw: sent")
    except OSError as e:
        said.append(f"raw: {e.strerror}")
    print("; ".join(said))
""")

# Runs on a host: prints "word from-address" for every datagram for SECONDS.
LISTEN = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    end = time.monotonic() + float(sys.argv[2])
    print("listening", flush=True)
    while (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            data, (addr, _port) = s.recvfrom(100)
        except TimeoutError:
            break
        print(data.decode(), addr, flush=True)
""")


def gateway(fleet, host: str) -> str:
    """The address a host has its default route through: its bridge's, where
    the administration key's from= points."""
    route = fleet.run(host, "ip", "-4", "route", "show", "default").stdout.split()
    return route[route.index("via") + 1]


@pytest.mark.parametrize(
    ("sender", "receiver", "pose_as"),
    [
        ("edge01", "node02", "gateway"),  # LXD to LXD on its bridge, as the gateway
        ("edge01", "node01", "edge03"),  # LXD to Docker, as another LXD container
        ("edge02", "node01", "gateway"),  # Docker to Docker on its bridge, as the gateway
        ("edge02", "node02", "edge04"),  # Docker to LXD, as another Docker container
    ],
)
def test_a_container_cannot_send_from_another_address(built, fleet, sender, receiver, pose_as):
    own, target = fleet.address(sender), fleet.address(receiver)
    fake = gateway(fleet, sender) if pose_as == "gateway" else fleet.address(pose_as)
    listen = subprocess.Popen(fleet.exec_argv(receiver, "python3", "-c", LISTEN, str(PROBE_PORT),
                                              "6"), stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert listen.stdout.readline().strip() == "listening"
    tried = []
    for source, word in ((fake, "spoofed"), (own, "own")):
        sent = fleet.run(sender, "python3", "-c", SEND, source, target, str(PROBE_PORT), word)
        tried.append(sent.stdout.strip())
        if word == "spoofed" and fleet.hosts[sender]["edgesync_provider"] == "docker":
            # A Docker container's own kernel refuses both ways (no NET_RAW, no
            # NET_ADMIN); with every capability (as a container made before
            # 0.4.0 had NET_RAW), the host's source chain must drop them.
            argv = ["docker", "exec", "--privileged", container(sender, fleet.name), "python3",
                    "-c", SEND, source, target, str(PROBE_PORT), word]  # fmt: skip
            privileged = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            tried.append(f"with every capability: {privileged.stdout.strip()}")
        time.sleep(0.5)
    heard = listen.communicate(timeout=30)[0].split("\n")
    got = {tuple(line.split()) for line in heard if line}
    assert ("own", own) in got, f"{sender}'s own datagrams did not reach {receiver}: {got}"
    assert not any(word == "spoofed" for word, _addr in got), (
        f"{sender} posing as {fake} reached {receiver} ({tried}): {got}"
    )
