"""A model stage's chunk commit under crashes, and Delta's transaction path directly.

A chunk commits its quarantine rows first, then its good rows, each an append with
txnAppId/txnVersion (kale_spark/stages/model_stage.py, ChunkWriter.commit_chunk).
The crash between the two appends is made by a test-only hook: the good rows'
append raises, which ends the run with exactly what a SIGKILL there leaves on disk
(the quarantine commit, no target commit, the micro-batch not marked done).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import threading
from collections import Counter
from pathlib import Path

import pytest

from kale_spark import schema
from kale_spark.config import load_config
from kale_spark.lake.tables import Lake
from kale_spark.spark.udf import BATCH_LOG_ENV, read_batch_log
from kale_spark.stages import caption
from kale_spark.stages.model_stage import ChunkWriter

GOOD, BAD = 10, 2


class Crash(RuntimeError):
    """The process dies here (test-only hook)."""


def _config(root: Path, *extra: str):
    return load_config(
        None,
        [
            f"lake.root={root / 'lake'}",
            "spark.master=local[2]",
            "spark.shuffle_partitions=2",
            f"models.cache_dir={root.parent / 'kale-model-cache'}",
            "caption.batch_size=2",
            "caption.generation.max_new_tokens=6",
            "caption.files_per_trigger=1",
            *extra,
        ],
    )


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (seed * 40 % 256, 90, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def _images(spark, lake: Lake) -> tuple[set[str], set[str]]:
    """An images table of GOOD decodable rows and BAD rows whose bytes are no image,
    all status ok, in one file (one micro-batch). (good uids, bad uids)."""
    now = dt.datetime.now(dt.timezone.utc)
    lake.ensure_table(schema.IMAGES, schema.IMAGES_SCHEMA)
    uids = [f"{i:032x}" for i in range(1, GOOD + BAD + 1)]
    rows = []
    for i, uid in enumerate(uids):
        data = _jpeg(i) if i < GOOD else b"not an image"
        rows.append(
            (uid, "ok", None, 200, 1, 40, 30, 40, 30, "image/jpeg", None, None, data, "file")
            + (now, "t", "alt text")
        )
    df = spark.createDataFrame(rows, schema.IMAGES_SCHEMA).coalesce(1)
    lake.append(schema.IMAGES, df, {"stage": "test"})
    return set(uids[:GOOD]), set(uids[GOOD:])


def _uids(df) -> list[str]:
    return [r["uid"] for r in df.select("uid").collect()]


def _crash_on_write(monkeypatch, after_rows: bool) -> list[int]:
    """Make one good-rows append (of the chunks) die; the calls seen.

    ``after_rows`` False: the first append dies. True: the first append that starts
    once an append with rows has landed dies (two lanes commit at once, and a chunk may
    hold no good row, so a fixed call number would not say what is on disk)."""
    real = ChunkWriter._write_good
    calls: list[int] = []
    lock = threading.Lock()
    state = {"landed": False, "crashed": False}

    def write_good(self, good, n_good, txn):
        with lock:
            calls.append(1)
            crash = not state["crashed"] and (state["landed"] or not after_rows)
            state["crashed"] |= crash
        if crash:
            raise Crash("killed between the quarantine and the target append")
        result = real(self, good, n_good, txn)
        with lock:
            state["landed"] |= result.rows_inserted > 0
        return result

    monkeypatch.setattr(ChunkWriter, "_write_good", write_good)
    return calls


def _rerun(spark, cfg, log: Path):
    os.environ[BATCH_LOG_ENV] = str(log)  # read on the driver when the UDF is built
    try:
        return caption.run(spark, cfg)
    finally:
        os.environ.pop(BATCH_LOG_ENV, None)


def test_a_kill_between_quarantine_and_target_leaves_one_quarantine_row(
    spark, tmp_path, monkeypatch
) -> None:
    """One chunk holding good and bad rows; killed after its quarantine commit."""
    cfg = _config(tmp_path, "caption.rows_per_commit=100")
    lake = Lake(spark, cfg.lake)
    good, bad = _images(spark, lake)
    _crash_on_write(monkeypatch, after_rows=False)
    with pytest.raises(Exception, match="killed between"):
        caption.run(spark, cfg)
    # On disk: the chunk's failures are committed, its good rows are not.
    assert sorted(_uids(lake.read(schema.QUARANTINE))) == sorted(bad)
    assert lake.count(schema.DENSE_CAPTIONS) == 0

    monkeypatch.undo()
    rerun = _rerun(spark, cfg, tmp_path / "batches.jsonl")
    # The chunk is redone once: its model runs again (the only work redone) ...
    assert sum(b["rows"] for b in read_batch_log(tmp_path / "batches.jsonl")) == GOOD + BAD
    # ... its quarantine append is skipped by Delta (same txn), its good rows land once.
    assert rerun.counts["quarantine_new"] == 0
    assert rerun.counts["generated"] == GOOD
    q = _uids(lake.read(schema.QUARANTINE))
    assert sorted(q) == sorted(bad)  # each failed uid filed exactly once
    dense = _uids(lake.read(schema.DENSE_CAPTIONS))
    assert len(dense) == len(set(dense)) and set(dense) == good
    # input = generated + failed, nothing in both
    assert not set(dense) & set(q) and len(dense) + len(q) == GOOD + BAD


def test_a_replay_with_another_chunk_size_cuts_the_recorded_chunks(
    spark, tmp_path, monkeypatch
) -> None:
    """Killed after its first chunk commits; rerun with another rows_per_commit: the
    micro-batch is cut as recorded (kale-chunks/<batch>.json), the committed chunk is
    skipped without running its model, the rest is generated once. This replaces the
    old fallback MERGE: the chunk cut, not the chunk size, decides the txn versions."""
    cfg = _config(tmp_path, "caption.rows_per_commit=3")
    lake = Lake(spark, cfg.lake)
    good, bad = _images(spark, lake)
    _crash_on_write(monkeypatch, after_rows=True)
    with pytest.raises(Exception, match="killed between"):
        caption.run(spark, cfg)
    committed = set(_uids(lake.read(schema.DENSE_CAPTIONS)))
    assert 0 < len(committed) < GOOD
    plans = list((tmp_path / "lake" / "_checkpoints" / "caption").rglob("kale-chunks/0.json"))
    assert len(plans) == 1

    monkeypatch.undo()
    cfg2 = _config(tmp_path, "caption.rows_per_commit=5")  # the chunk size changed
    rerun = _rerun(spark, cfg2, tmp_path / "batches.jsonl")
    assert rerun.counts["chunks_replayed"] >= 1
    assert rerun.counts["generated"] == GOOD - len(committed)
    # The model ran only over what was not committed (bad rows are redone: their
    # chunks' good rows were not committed either, or they were never reached).
    model_rows = sum(b["rows"] for b in read_batch_log(tmp_path / "batches.jsonl"))
    assert GOOD - len(committed) <= model_rows <= GOOD + BAD - len(committed)
    dense = _uids(lake.read(schema.DENSE_CAPTIONS))
    assert len(dense) == len(set(dense)) and set(dense) == good
    assert Counter(_uids(lake.read(schema.QUARANTINE))) == Counter(dict.fromkeys(bad, 1))
    # The rows committed before the kill are still the killed run's.
    killed_run = {
        r["uid"]
        for r in lake.read(schema.DENSE_CAPTIONS).where(f"run_id <> '{rerun.run_id}'").collect()
    }
    assert killed_run == committed


# ------------------------------------------------------------ Delta's txn directly


def _rows(spark, start: int, n: int):
    return spark.createDataFrame(
        [(f"{i:032x}", f"row {i}") for i in range(start, start + n)], "uid string, text string"
    )


def test_an_append_whose_txn_is_committed_is_skipped(spark, tmp_path) -> None:
    from kale_spark.config import LakeConfig

    lake = Lake(spark, LakeConfig(root=str(tmp_path / "lake")))
    first = lake.append("t", _rows(spark, 0, 3), {"stage": "test"}, txn=("app-1", 7))
    assert first.committed and first.rows_inserted == 3
    assert lake.txn_committed("t", "app-1", 7) and lake.txn_committed("t", "app-1", 6)
    assert not lake.txn_committed("t", "app-1", 8) and not lake.txn_committed("t", "app-2", 0)
    version = lake.version("t")
    for replay in (7, 5):  # the same version, or an older one of the same app id
        again = lake.append("t", _rows(spark, 10, 3), {"stage": "test"}, txn=("app-1", replay))
        assert not again.committed and again.rows_inserted == 0
    assert lake.version("t") == version and lake.count("t") == 3
    other = lake.append("t", _rows(spark, 20, 2), {"stage": "test"}, txn=("app-2", 7))
    assert other.committed and lake.count("t") == 5  # app ids are independent


def test_two_writers_replaying_one_micro_batch_commit_it_once(spark, tmp_path) -> None:
    """Two writers append the same chunk (same txnAppId/txnVersion) at the same moment
    (threads on one JVM: Delta's commit protocol, the log's put-if-absent and the txn
    check on conflict, is the same across processes). One commits; the other's commit
    is refused by Delta (ConcurrentTransactionException) or skipped, and Lake.append
    reports both as committed=False. The rows are in the table once."""
    from kale_spark.config import LakeConfig

    lake = Lake(spark, LakeConfig(root=str(tmp_path / "lake")))
    lake.append("t", _rows(spark, 100, 1), {"stage": "test"})
    barrier = threading.Barrier(2)
    results: list = []

    def replay() -> None:
        df = _rows(spark, 0, 4)
        barrier.wait()
        results.append(lake.append("t", df, {"stage": "test"}, txn=("app-x", 3)))

    threads = [threading.Thread(target=replay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert sorted(r.committed for r in results) == [False, True]
    assert [r.rows_inserted for r in results if r.committed] == [4]
    uids = _uids(lake.read("t"))
    assert len(uids) == len(set(uids)) == 5
