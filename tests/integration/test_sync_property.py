"""Random writes on random nodes, random allowed syncs with duplicated and
reordered deliveries, then one full round: every node agrees."""

import tempfile
from pathlib import Path

import pytest
from farm import ALLOWED, REFUSED_BY_RECEIVER, ROUND, SEVEN, Farm, play
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesync.sync import sync

LINKS = sorted(ALLOWED - REFUSED_BY_RECEIVER)
NAMES = sorted(SEVEN)

STEP = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(NAMES), st.text(max_size=12)),
    st.tuples(st.just("edit"), st.sampled_from(NAMES), st.integers(0, 50),
              st.sampled_from(["section", "title", "body"]), st.text(max_size=12)),
    st.tuples(st.just("delete"), st.sampled_from(NAMES), st.integers(0, 50)),
    st.tuples(st.just("sync"), st.sampled_from(LINKS)),
    st.tuples(st.just("redeliver"), st.sampled_from(NAMES), st.sampled_from(NAMES),
              st.integers(0, 2**32)),
)  # fmt: skip


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("property")


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(STEP, min_size=5, max_size=25))
def test_random_histories_converge(steps, tmp_root, redis_server):
    redis_server.client().flushall()
    root = Path(tempfile.mkdtemp(dir=tmp_root))
    farm = Farm(root, redis_server.url, SEVEN)
    try:
        created, deleted = play(farm, steps)
        for initiator, action, target in ROUND:
            sync(farm.store(initiator), target, action)
        digests = farm.digests()
        assert len(set(digests.values())) == 1, digests
        master = farm.store("MASTER01")
        for rid in created:
            if rid not in deleted:
                assert master.get("pages", rid)["id"] == rid
        assert master.rows("pages") == len(set(created) - deleted)

        # Concurrent edits to different columns of one record are both kept.
        survivors = [rid for rid in created if rid not in deleted]
        if survivors:
            rid = survivors[0]
            farm.store("EDGE01").put("pages", {"id": rid, "title": "title from EDGE01"})
            farm.store("EDGE04").put("pages", {"id": rid, "body": "body from EDGE04"})
            for initiator, action, target in ROUND:
                sync(farm.store(initiator), target, action)
            got = master.get("pages", rid)
            assert (got["title"], got["body"]) == ("title from EDGE01", "body from EDGE04")
            assert len(set(farm.digests().values())) == 1
    finally:
        farm.close()
