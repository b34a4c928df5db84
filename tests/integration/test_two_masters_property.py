"""Two masters, writes on both (and everywhere else) with clashing titles,
delivered in any order: partial rounds, links taken at random, duplicated
and shuffled deliveries; then one round in topology order, and every host
holds the same content (one digest), whichever master a host heard last.
Slug clashes between records made on the two masters settle alike
everywhere."""

import tempfile
from pathlib import Path

import pytest
from farm import Farm, play
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesync import topology
from edgesync.sync import sync

FLEET = {
    "MASTER01": ("master", None, ()),
    "MASTER02": ("master", None, ()),
    "NODE01": ("node", None, ("MASTER01", "MASTER02", "EDGE01")),
    "NODE02": ("node", None, ("MASTER01", "MASTER02", "EDGE02")),
    "EDGE01": ("edge", "a", ()),
    "EDGE02": ("edge", "b", ()),
}
PLAN = [{"name": n, "role": r, "farm": f, "trusted": list(t)} for n, (r, f, t) in FLEET.items()]
ROUND = [(lk["initiator"], lk["action"], lk["target"]) for lk in topology.links(PLAN)]
NAMES = sorted(FLEET)
MASTERS = ["MASTER01", "MASTER02"]
TITLES = st.sampled_from(["home", "news", "about"])  # few: slugs clash

STEP = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(MASTERS), TITLES),  # on a master, often
    st.tuples(st.just("create"), st.sampled_from(NAMES), TITLES),
    st.tuples(st.just("edit"), st.sampled_from(NAMES), st.integers(0, 50),
              st.sampled_from(["title", "body"]), TITLES),
    st.tuples(st.just("delete"), st.sampled_from(NAMES), st.integers(0, 50)),
    st.tuples(st.just("sync"), st.sampled_from(ROUND)),
    st.tuples(st.just("redeliver"), st.sampled_from(NAMES), st.sampled_from(NAMES),
              st.integers(0, 2**32)),
)  # fmt: skip


def test_one_round_is_the_topologys_and_reaches_both_masters_both_ways():
    assert ("MASTER01", "pull", "MASTER02") in ROUND and ("MASTER02", "push", "MASTER01") in ROUND
    assert ("NODE01", "push", "MASTER02") in ROUND and ("NODE02", "pull", "MASTER01") in ROUND


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("two-masters")


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(STEP, min_size=5, max_size=25))
def test_writes_on_both_masters_in_any_delivery_order_end_in_one_digest(
    steps, tmp_root, redis_server
):
    redis_server.client().flushall()
    farm = Farm(Path(tempfile.mkdtemp(dir=tmp_root)), redis_server.url, FLEET)
    try:
        created, deleted = play(farm, steps)
        for initiator, action, target in ROUND:
            sync(farm.store(initiator), target, action)
        digests = farm.digests()
        assert len(set(digests.values())) == 1, digests
        alive = set(created) - deleted
        for master in MASTERS:
            store = farm.store(master)
            assert store.rows("pages") == len(alive), master
            for rid in alive:
                assert store.get("pages", rid)["id"] == rid
        # One slug per record, the same on every host.
        slugs = {n: {r: farm.store(n).get("pages", r)["slug"] for r in alive} for n in NAMES}
        assert all(s == slugs["MASTER01"] for s in slugs.values())
        assert len(set(slugs["MASTER01"].values())) == len(alive)
    finally:
        farm.close()
