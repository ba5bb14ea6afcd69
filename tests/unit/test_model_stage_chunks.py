"""How a model stage cuts a micro-batch into commits (stages/model_stage.py)."""

from __future__ import annotations

import pytest

from kale_spark.stages.model_stage import CHUNKS_PER_BATCH, even_parts


def test_even_parts_never_leave_a_runt_chunk() -> None:
    parts = even_parts(list(range(300)), 256)
    assert [len(p) for p in parts] == [150, 150]
    assert [x for p in parts for x in p] == list(range(300))


@pytest.mark.parametrize(
    ("n", "limit", "sizes"),
    [
        (0, 4, []),
        (3, 4, [3]),
        (4, 4, [4]),
        (5, 4, [3, 2]),
        (9, 4, [3, 3, 3]),
        (10, 4, [4, 3, 3]),
        (1025, 1024, [513, 512]),
    ],
)
def test_even_parts_sizes(n: int, limit: int, sizes: list[int]) -> None:
    parts = even_parts([f"u{i:04d}" for i in range(n)], limit)
    assert [len(p) for p in parts] == sizes
    assert all(len(p) <= limit for p in parts)


def test_even_parts_are_the_same_on_a_replay() -> None:
    # A replayed micro-batch has the same candidates; its chunks (and so their Delta
    # transaction versions) must be the same too.
    keys = sorted(f"{i * 7919 % 1000:04d}" for i in range(1000))
    assert even_parts(keys, 96) == even_parts(list(keys), 96)


def test_chunk_versions_of_consecutive_batches_never_collide() -> None:
    # txnVersion = batch id x CHUNKS_PER_BATCH + chunk index: increasing in both.
    last_of_batch_0 = 0 * CHUNKS_PER_BATCH + len(even_parts(list(range(10**6)), 1)) - 1
    assert last_of_batch_0 < 1 * CHUNKS_PER_BATCH
