"""The farms' balancers as the inventory names them (edgesync.farms, through
the filters the validate and balancer roles use)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "filter"))

from edgesync_farms import FilterModule
from test_topology_filters import GOOD, fleet_of

from edgesync import farms

FILTERS = FilterModule().filters()
SPEC = {"lon-a": {"host": "node01"}, "lon-b": {"host": "node01", "port": 81}}


def errors(spec, hostvars=GOOD):
    return FILTERS["edgesync_balancer_errors"](fleet_of(hostvars), spec, hostvars, 8080, 6379, 8404)


def test_each_farm_has_its_balancer_address_and_edges():
    balancers = FILTERS["edgesync_balancers"](fleet_of(GOOD), SPEC)
    assert [farms.label(b) for b in balancers] == [
        "farm lon-a: node01 0.0.0.0:80 -> edge01, edge02",
        "farm lon-b: node01 0.0.0.0:81 -> edge03",
    ]
    assert errors(SPEC) == []
    assert errors({}) == [] and errors(None) == []


def test_frontends_name_each_edge_at_its_address_and_api_port():
    hostvars = {**GOOD, "edge01": {**GOOD["edge01"], "edgesync_address": "10.0.0.11"},
                "edge02": {**GOOD["edge02"], "ansible_default_ipv4": {"address": "10.0.0.12"},
                           "api_port": 8081}}  # fmt: skip
    only_a = {"lon-a": SPEC["lon-a"]}
    fronts = FILTERS["edgesync_balancer_frontends"](fleet_of(hostvars), only_a, "node01", hostvars,
                                                    8080)  # fmt: skip
    assert fronts[0]["backends"] == [
        {"name": "edge01", "address": "10.0.0.11", "port": 8080},
        {"name": "edge02", "address": "10.0.0.12", "port": 8081},
    ]
    assert fronts[0]["max_body_bytes"] == 1048576  # the api role's default, given by the role
    hostvars["edge02"]["api_max_body_bytes"] = 4096
    hostvars["edge01"]["api_max_body_bytes"] = 8192  # the farm takes what its largest takes
    fronts = FILTERS["edgesync_balancer_frontends"](fleet_of(hostvars), only_a, "node01", hostvars,
                                                    8080, 1048576)  # fmt: skip
    assert fronts[0]["max_body_bytes"] == 8192
    with pytest.raises(ValueError, match="farm lon-b: the address of edge edge03 is not known"):
        FILTERS["edgesync_balancer_frontends"](fleet_of(hostvars), SPEC, "node01", hostvars, 8080)
    assert FILTERS["edgesync_balancer_of_edge"](fleet_of(GOOD), SPEC, "edge03")["host"] == "node01"
    assert FILTERS["edgesync_balancer_of_edge"](fleet_of(GOOD), SPEC, "master01") is None


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ({"lon-c": {"host": "node01"}},
         "farm lon-c: its balancer has no edges to send to (no edge has edgesync_farm lon-c)"),
        ({"lon-a": {"host": "node01", "port": 8080}},
         "farm lon-a: balancer port 8080 on node01 clashes with node01's API (api_port)"),
        ({"lon-a": {"host": "node01", "port": 22}},
         "farm lon-a: balancer port 22 on node01 clashes with sshd"),
        ({"lon-a": {"host": "node01", "port": 8404}},
         "farm lon-a: balancer port 8404 on node01 clashes with the balancer's stats page"),
        ({"lon-a": {"host": "node01"}, "lon-b": {"host": "node01"}},
         "farm lon-b: balancer port 80 on node01 clashes with farm lon-a's balancer"),
        ({"lon-a": {"host": "node01", "address": "10.9.9.9"}},
         "farm lon-a: balancer address 10.9.9.9 is not an address of node01 "
         "(its edgesync_address: none given; 0.0.0.0 listens on every address)"),
        ({"lon-a": {"host": "node01", "address": "node01.example"}},
         "farm lon-a: balancer address 'node01.example' is not an IP address"),
        ({"lon-a": {"host": "edge01"}},
         "farm lon-a: balancer host edge01 is an edge; a balancer runs on a node or a master "
         "(an edge goes down in its own update)"),
        ({"lon-a": {"host": "nowhere"}},
         "farm lon-a: balancer host nowhere is not a host of the fleet"),
        ({"lon-a": {"host": "node01", "port": "80"}},
         "farm lon-a: balancer port '80' is not a port (1-65535)"),
        ({"lon-a": {"host": "node01", "prot": 80}},
         "farm lon-a: unknown balancer setting 'prot' (host, port, address)"),
        ({"lon-a": {}}, "farm lon-a: its balancer needs a host (edgesync_balancers.lon-a.host)"),
        (["lon-a"], "edgesync_balancers must map each farm to {host, port, address}"),
    ],
)  # fmt: skip
def test_a_bad_balancer_is_one_line_naming_the_farm(spec, said):
    assert errors(spec) == [said]


def test_an_address_of_the_host_is_taken():
    hostvars = {**GOOD, "node01": {**GOOD["node01"], "edgesync_address": "10.0.0.5"}}
    assert errors({"lon-a": {"host": "node01", "address": "10.0.0.5"}}, hostvars) == []
