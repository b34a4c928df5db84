"""A session sends in batches exactly what it would send all at once: each change
the receiver lacks, once, in log order, never more than MAX_BATCH_BYTES a batch
(unless one change alone is bigger)."""

from __future__ import annotations

import random

import pytest

from edgesync import sync
from edgesync.changelog import take_unheld


def random_log(rng: random.Random) -> list[tuple[int, str, str, int]]:
    """(seq, body, origin, n) rows, origins' changes logged out of order."""
    numbered, count = [], {"A": 0, "B": 0}
    for _ in range(rng.randint(1, 30)):
        origin = rng.choice("AB")
        count[origin] += 1
        numbered.append((origin, count[origin]))
    rng.shuffle(numbered)
    return [(seq, "x" * rng.randint(1, 80) + f"{o}{n}", o, n)
            for seq, (o, n) in enumerate(numbered, 1)]  # fmt: skip


def batched(log, held: dict, limit: int) -> list[list[str]]:
    batches, cursor = [], 0
    while rows := [r for r in log if r[0] > cursor][:limit]:
        bodies, last = sync._next_batch(rows, held)
        assert last > cursor  # the cursor always moves on
        if bodies:
            batches.append(bodies)
        cursor = last
    return batches


@pytest.mark.parametrize("seed", range(300))
def test_batches_send_what_one_pass_would_and_stay_under_the_byte_limit(seed, monkeypatch):
    monkeypatch.setattr(sync, "MAX_BATCH_BYTES", 50)
    rng = random.Random(seed)
    log = random_log(rng)
    held = {"A": rng.randint(0, 5), "B": rng.randint(0, 5)}
    one_pass = dict(held)
    expected = [b for _s, b, o, n in log if take_unheld(one_pass, o, n)]
    for limit in (1, 3, 7, 100):
        batches = batched(log, dict(held), limit)
        assert [b for batch in batches for b in batch] == expected
        for batch in batches:
            assert len(batch) == 1 or sum(map(len, batch)) <= 50


def test_a_change_bigger_than_the_limit_travels_alone(monkeypatch):
    monkeypatch.setattr(sync, "MAX_BATCH_BYTES", 10)
    rows = [(1, "y" * 30, "A", 1), (2, "z", "A", 2)]
    assert sync._next_batch(rows, {}) == (["y" * 30], 1)
