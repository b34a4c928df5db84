"""The topology table, row by row."""

import pytest

from edgesync.policy import Party, may_accept, may_initiate, push_targets

MASTER = Party("MASTER01", "master")
NODE1 = Party("NODE01", "node", trusted=("MASTER01", "NODE02", "EDGE01"))
NODE2 = Party("NODE02", "node", trusted=("MASTER01", "NODE01"))
EDGE1 = Party("EDGE01", "edge", "a")
EDGE2 = Party("EDGE02", "edge", "a")
EDGE3 = Party("EDGE03", "edge", "b")


@pytest.mark.parametrize("action", ["push", "pull"])
@pytest.mark.parametrize("target", [NODE1, EDGE1, EDGE3])
def test_a_master_may_push_to_and_pull_from_anyone(action, target):
    assert may_initiate(MASTER, action, target)
    assert may_accept(target, action, MASTER)


@pytest.mark.parametrize("action", ["push", "pull"])
def test_a_node_initiates_only_with_its_trusted_list(action):
    assert may_initiate(NODE1, action, MASTER)
    assert may_initiate(NODE1, action, EDGE1)
    refused = may_initiate(NODE1, action, EDGE3)
    assert not refused and "trusted list" in refused.rule and "EDGE03" in refused.rule


def test_a_node_receiver_accepts_only_masters_and_its_trusted_list():
    assert may_accept(NODE2, "push", NODE1)
    assert may_accept(NODE2, "pull", MASTER)
    assert not may_accept(NODE2, "pull", EDGE1)  # an edge not on NODE02's list
    assert may_accept(NODE1, "pull", EDGE1)  # on NODE01's list
    stranger = Party("NODE09", "node")
    assert not may_accept(NODE1, "push", stranger)


def test_masters_and_edges_accept_any_configured_node():
    assert may_accept(Party("MASTER01", "master"), "push", NODE2)
    assert may_accept(EDGE3, "pull", NODE2)


def test_an_edge_pulls_from_anyone_configured_but_pushes_only_within_its_farm():
    for target in (MASTER, NODE1, EDGE2, EDGE3):
        assert may_initiate(EDGE1, "pull", target)
    assert may_initiate(EDGE1, "push", EDGE2)
    for target in (MASTER, NODE1, EDGE3):
        decision = may_initiate(EDGE1, "push", target)
        assert not decision and "own farm" in decision.rule


def test_receivers_accept_edge_pulls_and_only_same_farm_edge_pushes():
    assert may_accept(MASTER, "pull", EDGE1)
    assert may_accept(EDGE3, "pull", EDGE1)
    assert may_accept(EDGE2, "push", EDGE1)
    assert not may_accept(EDGE3, "push", EDGE1)
    assert not may_accept(MASTER, "push", EDGE1)


def test_a_caller_without_a_peer_entry_is_refused():
    decision = may_accept(MASTER, "pull", None)
    assert not decision and "no peer entry" in decision.rule


def test_push_targets_follow_the_same_table():
    assert push_targets(EDGE1, [MASTER, NODE1, EDGE2, EDGE3]) == ["EDGE02"]
    assert push_targets(NODE1, [MASTER, NODE2, EDGE1, EDGE3]) == ["EDGE01", "MASTER01", "NODE02"]
