"""How a model stage cuts its work into commits (stages/chunks.py)."""

from __future__ import annotations

import pytest

from kale_spark.stages.chunks import (
    CHUNKS_PER_BATCH,
    CHUNKS_PER_VERSION,
    HASH_SPACE,
    LANES,
    MIN_BATCHES_PER_TASK,
    ChunkSizer,
    chunk_txn,
    even_bounds,
    files_for,
)


def sizer(**kw) -> ChunkSizer:
    args = {"slots": 4, "batch_size": 8, "interval_s": 10.0, "rows_per_file": 1000.0}
    return ChunkSizer(**{**args, **kw})


def test_without_a_rate_a_warm_up_chunk_then_the_rest() -> None:
    s = sizer()
    warm = 4 * MIN_BATCHES_PER_TASK * 8
    assert s.chunk_rows() == warm
    bounds = s.chunks_for(10 * warm)
    assert bounds == [0, HASH_SPACE // 10]  # the warm-up chunk only: the rest waits
    assert s.chunks_for(warm) == [0, HASH_SPACE]  # a small batch is one chunk
    assert s.cut_rest(bounds[-1], 9 * warm) == [HASH_SPACE // 10, HASH_SPACE]  # no rate yet
    s.record(rows=warm, seconds=1.0)  # the warm-up chunk ran: warm rows/s
    rest = s.cut_rest(bounds[-1], 9 * warm * 10)  # 10 s of it per chunk: 9 chunks
    assert len(rest) - 1 == 9 and rest[0] == bounds[-1] and rest[-1] == HASH_SPACE


def test_a_measured_rate_sizes_chunks_by_time_and_never_below_the_warm_up() -> None:
    s = sizer()
    s.record(rows=1000, seconds=10.0)  # 100 rows/s over the cluster
    assert s.rate() == pytest.approx(100.0, rel=0.01)
    assert s.chunk_rows() == pytest.approx(1000, rel=0.01)  # 10 s of it
    assert len(s.chunks_for(4500)) - 1 == 5  # ceil(4500 / ~1000) chunks
    slow = sizer()
    slow.record(rows=1, seconds=100.0)
    assert slow.chunk_rows() == slow.min_rows


def test_the_last_runs_rate_per_slot_scales_with_the_slots() -> None:
    s = sizer(slots=8, slot_rate=5.0)
    assert s.rate() == 40.0
    assert s.chunk_rows() == 400
    # Micro-batches hold about CHUNKS_PER_BATCH chunks' rows of source files.
    assert s.files_per_trigger() == -(-CHUNKS_PER_BATCH * 400 // 1000)


def test_rows_per_commit_fixes_the_size() -> None:
    s = sizer(rows_per_commit=300)
    s.record(rows=10**6, seconds=1.0)
    assert s.chunk_rows() == 300
    assert s.chunks_for(1000) == even_bounds(4)
    assert s.resize_after_first_batch() is None


def test_a_first_run_asks_once_for_bigger_micro_batches() -> None:
    s = sizer()
    first = s.files_per_trigger()
    assert first == 1
    s.record(rows=10_000, seconds=1.0)  # 10^4 rows/s: chunks of 10^5 rows
    wanted = s.resize_after_first_batch()
    assert wanted == CHUNKS_PER_BATCH * 100
    s.use_files(wanted)
    assert s.files_per_trigger() == wanted
    assert s.resize_after_first_batch() is None  # once: the rate is known now


def test_even_bounds_cover_the_hash_space_in_order() -> None:
    b = even_bounds(3)
    assert b[0] == 0 and b[-1] == HASH_SPACE and b == sorted(b) and len(b) == 4


def test_each_lane_commits_rising_versions_and_batches_never_collide() -> None:
    versions = {}
    for batch in (0, 1):
        for k in range(5):
            app, v = chunk_txn("q", batch, k)
            assert app == f"q:{k % LANES}"
            assert v > versions.get(app, -1)
            versions[app] = v
    assert chunk_txn("q", 0, CHUNKS_PER_VERSION - 1)[1] < chunk_txn("q", 1, 0)[1]
    assert chunk_txn(None, 3, 1) is None


@pytest.mark.parametrize(
    ("nbytes", "files"), [(0, 1), (100, 1), (128 * 2**20, 1), (128 * 2**20 + 1, 2)]
)
def test_files_for(nbytes: int, files: int) -> None:
    assert files_for(nbytes, 128 * 2**20) == files


def test_the_models_own_rate_wins_over_the_wall_clock() -> None:
    """A first chunk's wall time holds Python worker starts and model loads; the batches'
    own seconds do not: 1000 rows in 10 s of generate per slot, 4 slots = 400 rows/s."""
    s = sizer()
    s.record(rows=1000, seconds=100.0)  # 10 rows/s on the wall clock
    s.observe(model_rows=1000, model_ms=10_000)
    assert s.rate() == pytest.approx(400.0)
    assert s.chunk_rows() == 4000
