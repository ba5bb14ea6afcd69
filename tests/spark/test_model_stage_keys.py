"""What makes a model-stage row "done", and what a run over an existing table does:
a new revision regenerates; a new checkpoint over an old target generates only what
is missing; a fetch retry that turns a row ok reaches a resumed stream (the source's
change feed); the model loads once per Python worker across many chunks."""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil

from kale_spark import schema
from kale_spark.config import load_config
from kale_spark.lake.tables import Lake
from kale_spark.models.tiny import ensure_tiny_model
from kale_spark.spark.udf import BATCH_LOG_ENV, read_batch_log
from kale_spark.stages import caption

ROWS = 8


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (40, 30), (seed * 40 % 256, 90, 200))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def _image_rows(spark, uids: list[str], status: str = "ok"):
    now = dt.datetime.now(dt.timezone.utc)
    rows = [
        (uid, status, None, 200, 1, 40, 30, 40, 30, "image/jpeg", None, None)
        + (_jpeg(i) if status == "ok" else None, "file", now, "t", f"alt {uid}")
        for i, uid in enumerate(uids)
    ]
    return spark.createDataFrame(rows, schema.IMAGES_SCHEMA)


def _config(root, *extra: str):
    return load_config(
        None,
        [
            f"lake.root={root / 'lake'}",
            "spark.master=local[2]",
            "spark.shuffle_partitions=2",
            f"models.cache_dir={root / 'models'}",  # a fresh cache key: every worker loads
            "caption.batch_size=2",
            "caption.generation.max_new_tokens=4",
            *extra,
        ],
    )


def _images_lake(spark, root, uids: list[str]) -> Lake:
    cfg = _config(root)
    lake = Lake(spark, cfg.lake)
    lake.ensure_table(schema.IMAGES, schema.IMAGES_SCHEMA, change_feed=True)
    lake.append(schema.IMAGES, _image_rows(spark, uids), {"stage": "test"})
    return lake


def _uids(n: int, start: int = 0) -> list[str]:
    return [f"{i:032x}" for i in range(start, start + n)]


def _keys(lake: Lake) -> list[tuple]:
    rows = lake.read(schema.DENSE_CAPTIONS).collect()
    return [(r["uid"], r["model"], r["model_revision"], r["prompt_id"]) for r in rows]


def test_a_new_revision_regenerates_and_the_same_one_does_not(spark, tmp_path) -> None:
    lake = _images_lake(spark, tmp_path, _uids(ROWS))
    model_dir = str(ensure_tiny_model("tiny:vlm", tmp_path / "models"))
    pinned = (f"caption.id={model_dir}", "caption.device=cpu")
    first = caption.run(spark, _config(tmp_path, *pinned, "caption.revision=r1"))
    again = caption.run(spark, _config(tmp_path, *pinned, "caption.revision=r1"))
    second = caption.run(spark, _config(tmp_path, *pinned, "caption.revision=r2"))
    assert (first.counts["generated"], again.counts["generated"]) == (ROWS, 0)
    assert second.counts["generated"] == ROWS
    keys = _keys(lake)
    assert len(keys) == len(set(keys)) == 2 * ROWS
    assert {k[2] for k in keys} == {"r1", "r2"}


def test_a_new_checkpoint_over_an_old_target_generates_only_what_is_missing(
    spark, tmp_path
) -> None:
    from delta.tables import DeltaTable

    lake = _images_lake(spark, tmp_path, _uids(ROWS))
    cfg = _config(tmp_path)
    assert caption.run(spark, cfg).counts["generated"] == ROWS
    gone = _uids(3)
    DeltaTable.forPath(spark, lake.path(schema.DENSE_CAPTIONS)).delete(
        f"uid IN ({', '.join(repr(u) for u in gone)})"
    )
    shutil.rmtree(tmp_path / "lake" / "_checkpoints")  # the stream starts afresh
    log = tmp_path / "batches.jsonl"
    os.environ[BATCH_LOG_ENV] = str(log)  # read on the driver when the UDF is built
    try:
        rerun = caption.run(spark, cfg)
    finally:
        os.environ.pop(BATCH_LOG_ENV, None)
    assert rerun.counts["generated"] == 3
    assert sum(b["rows"] for b in read_batch_log(log)) == 3  # the model saw only those
    uids = [k[0] for k in _keys(lake)]
    assert sorted(uids) == _uids(ROWS)


def test_a_retried_fetch_that_turns_ok_reaches_a_resumed_stream(spark, tmp_path) -> None:
    lake = _images_lake(spark, tmp_path, _uids(ROWS))
    late = _uids(2, start=100)
    lake.append(schema.IMAGES, _image_rows(spark, late, status="timeout"), {"stage": "test"})
    cfg = _config(tmp_path)
    assert caption.run(spark, cfg).counts["generated"] == ROWS
    # As a fetch retry writes it: a MERGE that replaces the failed rows (an update).
    fixed = _image_rows(spark, late)
    lake.upsert(schema.IMAGES, fixed, ["uid"], {"stage": "test"}, "t.status <> 'ok'")
    again = caption.run(spark, cfg)
    assert again.counts["generated"] == 2
    assert sorted(k[0] for k in _keys(lake)) == sorted(_uids(ROWS) + late)


def test_the_model_loads_once_per_worker_across_many_chunks(spark, tmp_path) -> None:
    _images_lake(spark, tmp_path, _uids(3 * ROWS))
    run = caption.run(spark, _config(tmp_path, "caption.rows_per_commit=4"))
    assert run.counts["generated"] == 3 * ROWS
    assert run.counts["commits"] == 6
    workers, loads = run.metrics["model_workers"], run.metrics["model_loads"]
    assert 1 <= workers <= 2  # local[2]: at most two Python workers run the model
    assert loads == workers
    assert run.metrics["loads_per_worker"] == 1.0
    # One file per chunk: no task-sized fragments.
    assert run.counts["files"] == run.counts["commits"]
