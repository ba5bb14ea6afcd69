"""Stage 1 on real local Spark + Delta with the tiny models: sample → ingest → fetch →
caption → augment. One ok image → one dense caption → one stage-1 caption, with lineage;
reruns add nothing; a model loads once per Python worker, not per batch; the SQL UDFs
work; a row whose generation fails lands in quarantine."""

from __future__ import annotations

import io
import json
import os
from collections import Counter

import pytest

from kale_spark import schema
from kale_spark.config import load_config
from kale_spark.lake.tables import Lake
from kale_spark.models.cache import LOAD_LOG_ENV, read_load_log
from kale_spark.models.spec import TINY_REVISION
from kale_spark.sources.sample import generate_sample
from kale_spark.spark.udf import BATCH_LOG_ENV, read_batch_log, register_sql_functions
from kale_spark.stages import augment, caption, fetch, ingest

ROWS = 12
ROWS_PER_COMMIT = 4  # several chunks, each committed on its own


def _config(root, *extra: str):
    """Test settings: local[2], tiny models with few new tokens, small Arrow batches."""
    return load_config(
        None,
        [
            f"lake.root={root / 'lake'}",
            "spark.master=local[2]",
            "spark.shuffle_partitions=2",
            f"sample.out={root / 'sample'}",
            f"ingest.input={root / 'sample' / 'metadata'}",
            f"fetch.file_root={root / 'sample'}",
            # A cache dir of this module's own: the model key is new to every worker,
            # so each worker that runs a batch must load (and log) the model itself.
            f"models.cache_dir={root / 'model-cache'}",
            "caption.batch_size=2",
            f"caption.rows_per_commit={ROWS_PER_COMMIT}",
            f"augment.rows_per_commit={ROWS_PER_COMMIT}",
            "caption.generation.max_new_tokens=8",
            "augment.batch_size=2",
            "augment.generation.max_new_tokens=8",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def stage1(spark, tmp_path_factory):
    """One pipeline run (and a rerun of the model stages) shared by the tests below."""
    root = tmp_path_factory.mktemp("stage1")
    generate_sample(root / "sample", ROWS, bad_fraction=0.0, seed=3, max_side=300)
    cfg = _config(root)
    logs = {LOAD_LOG_ENV: root / "loads.jsonl", BATCH_LOG_ENV: root / "batches.jsonl"}
    saved = {k: os.environ.get(k) for k in logs}
    # Read on the driver when the UDFs are built; they travel in the UDF closures.
    os.environ.update({k: str(v) for k, v in logs.items()})
    try:
        runs = {"ingest": ingest.run(spark, cfg), "fetch": fetch.run(spark, cfg)}
        runs["caption"] = caption.run(spark, cfg)
        runs["augment"] = augment.run(spark, cfg)
        lake = Lake(spark, cfg.lake)
        versions = {t: lake.version(t) for t in (schema.DENSE_CAPTIONS, schema.STAGE1_CAPTIONS)}
        runs["caption_again"] = caption.run(spark, cfg)
        runs["augment_again"] = augment.run(spark, cfg)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {
        "cfg": cfg,
        "runs": runs,
        "versions_after_first": versions,
        "loads": read_load_log(logs[LOAD_LOG_ENV]),
        "batches": read_batch_log(logs[BATCH_LOG_ENV]),
    }


def _uids(df) -> set[str]:
    return {r["uid"] for r in df.select("uid").collect()}


def test_every_ok_image_gets_one_dense_and_one_stage1_caption(spark, stage1) -> None:
    lake = Lake(spark, stage1["cfg"].lake)
    ok = _uids(lake.read(schema.IMAGES).where(f"status = '{schema.IMAGE_OK}'"))
    assert len(ok) == ROWS
    dense = lake.read(schema.DENSE_CAPTIONS)
    stage1_rows = lake.read(schema.STAGE1_CAPTIONS)
    assert dense.count() == len(ok) and _uids(dense) == ok
    assert stage1_rows.count() == len(ok) and _uids(stage1_rows) == ok
    assert all(r["dense_caption"].strip() for r in dense.collect())
    assert all(r["caption_raw"].strip() for r in stage1_rows.collect())
    runs = stage1["runs"]
    assert runs["caption"].counts["candidates"] == ROWS
    assert runs["caption"].counts["generated"] == ROWS
    assert runs["caption"].counts["failed"] == 0
    assert runs["augment"].counts["generated"] == ROWS
    # Committed as it went: one commit per chunk of rows_per_commit rows.
    assert runs["caption"].counts["commits"] >= ROWS // ROWS_PER_COMMIT
    assert runs["augment"].counts["commits"] >= ROWS // ROWS_PER_COMMIT
    assert runs["caption"].counts["progress.done"] == ROWS


def test_stage1_rows_pair_the_alt_text_with_the_dense_caption(spark, stage1) -> None:
    lake = Lake(spark, stage1["cfg"].lake)
    text = {r["uid"]: r["text"] for r in lake.read(schema.SAMPLES).collect()}
    dense = {r["uid"]: r["dense_caption"] for r in lake.read(schema.DENSE_CAPTIONS).collect()}
    for r in lake.read(schema.STAGE1_CAPTIONS).collect():
        assert r["alt_text"] == text[r["uid"]]
        assert r["dense_caption"] == dense[r["uid"]]
        assert (r["dense_model"], r["dense_prompt_id"]) == ("tiny:vlm", "dense_v1")
        assert r["prompt_tokens"] > 0 and 0 < r["new_tokens"] <= 8


def test_lineage_columns(spark, stage1) -> None:
    cfg, runs = stage1["cfg"], stage1["runs"]
    lake = Lake(spark, cfg.lake)
    run_rows = {r["run_id"]: r for r in lake.read(schema.RUNS).collect()}

    dense = lake.read(schema.DENSE_CAPTIONS).collect()
    assert {r["model"] for r in dense} == {"tiny:vlm"}
    assert {r["model_revision"] for r in dense} == {TINY_REVISION}
    assert {r["prompt_id"] for r in dense} == {"dense_v1"}
    assert {r["run_id"] for r in dense} == {runs["caption"].run_id}
    images_version = runs["caption"].input_versions[schema.IMAGES]
    assert images_version == runs["fetch"].output_versions[schema.IMAGES]
    for r in dense:
        assert json.loads(r["gen_params"]) == {
            "max_new_tokens": 8,
            "num_beams": 1,
            "do_sample": False,
        }
        assert r["source_versions"] == {schema.IMAGES: images_version}
        assert r["created_at"] is not None
    caption_run = run_rows[runs["caption"].run_id]
    assert caption_run["stage"] == "caption" and caption_run["status"] == "ok"
    assert caption_run["counts"]["generated"] == ROWS

    stage1_rows = lake.read(schema.STAGE1_CAPTIONS).collect()
    assert {(r["model"], r["prompt_id"]) for r in stage1_rows} == {
        ("tiny:lm", "fuse_capsfusion_v1")
    }
    assert {r["run_id"] for r in stage1_rows} == {runs["augment"].run_id}
    expected_sources = {
        schema.SAMPLES: runs["ingest"].output_versions[schema.SAMPLES],
        schema.DENSE_CAPTIONS: runs["caption"].output_versions[schema.DENSE_CAPTIONS],
    }
    assert {tuple(sorted(r["source_versions"].items())) for r in stage1_rows} == {
        tuple(sorted(expected_sources.items()))
    }
    assert run_rows[runs["augment"].run_id]["stage"] == "augment"


def test_rerun_adds_nothing(spark, stage1) -> None:
    lake = Lake(spark, stage1["cfg"].lake)
    runs = stage1["runs"]
    for stage in ("caption_again", "augment_again"):
        counts = runs[stage].counts
        assert counts["generated"] == 0, stage
        assert counts["already_done"] == counts["candidates"] == ROWS, stage
    for table, version in stage1["versions_after_first"].items():
        assert lake.version(table) == version
    assert lake.count(schema.DENSE_CAPTIONS) == ROWS
    assert lake.count(schema.STAGE1_CAPTIONS) == ROWS


def test_model_loads_once_per_worker_not_per_batch(stage1) -> None:
    loads, batches = stage1["loads"], stage1["batches"]
    for udf_name, kind in (("caption", "vlm|tiny:vlm"), ("fuse", "lm|tiny:lm")):
        mine = [b for b in batches if b["udf"] == udf_name]
        # Every row went through the model exactly once, in several Arrow batches.
        assert sum(b["rows"] for b in mine) == ROWS, udf_name
        # One model batch never spans two commits.
        assert len(mine) >= ROWS // ROWS_PER_COMMIT > 1, udf_name
        assert max(b["rows"] for b in mine) <= ROWS_PER_COMMIT
        loads_per_pid = Counter(e["pid"] for e in loads if e["key"].startswith(kind))
        assert set(loads_per_pid.values()) == {1}, (udf_name, loads_per_pid)
        # Each worker that ran a batch loaded the model itself, once.
        assert {b["pid"] for b in mine} <= set(loads_per_pid), udf_name
        assert sum(loads_per_pid.values()) < len(mine), udf_name


def test_sql_udfs(spark, stage1) -> None:
    cfg = stage1["cfg"]
    Lake(spark, cfg.lake).register_all()
    assert set(register_sql_functions(spark, cfg)) == {"kale_caption", "kale_fuse"}
    rows = spark.sql(
        "SELECT uid, kale_fuse(s.text, d.dense_caption) AS fused "
        "FROM kale.samples s JOIN kale.dense_captions d USING (uid)"
    ).collect()
    assert len(rows) == ROWS
    assert all(isinstance(r["fused"], str) and r["fused"].strip() for r in rows)
    # Greedy decoding: the SQL function gives what the stage stored.
    stored = {
        r["uid"]: r["caption_raw"]
        for r in spark.sql("SELECT uid, caption_raw FROM kale.stage1_captions").collect()
    }
    assert {r["uid"]: r["fused"] for r in rows} == stored

    captions = spark.sql(
        "SELECT kale_caption(image) AS c FROM kale.images WHERE status = 'ok'"
    ).collect()
    assert len(captions) == ROWS and all(r["c"] and r["c"].strip() for r in captions)
    # The same engine as the caption stage: the stored dense caption, row for row, from
    # the same model (greedy decoding; batches of any size give what one row alone gives).
    dense = spark.sql(
        "SELECT d.uid, d.dense_caption, kale_caption(i.image) AS c "
        "FROM kale.dense_captions d JOIN kale.images i USING (uid) "
        f"WHERE d.model = '{cfg.caption.id}' AND d.prompt_id = '{cfg.caption.prompt_id}'"
    ).collect()
    assert len(dense) == ROWS
    assert {r["uid"]: r["c"] for r in dense} == {r["uid"]: r["dense_caption"] for r in dense}


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (40, 30), (seed * 40 % 256, 90, 200))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def test_a_row_whose_generation_fails_goes_to_quarantine(spark, tmp_path) -> None:
    """Two good images and one whose bytes are not an image, all marked ok."""
    import datetime as dt

    cfg = _config(tmp_path)
    lake = Lake(spark, cfg.lake)
    lake.ensure_table(schema.IMAGES, schema.IMAGES_SCHEMA)
    now = dt.datetime.now(dt.timezone.utc)
    uids = [f"{i:032x}" for i in (1, 2, 3)]
    payloads = [_jpeg(1), b"this is not a jpeg", _jpeg(3)]
    rows = [
        (uid, "ok", None, 200, 1, 40, 30, 40, 30, "image/jpeg", None, None, data, "file", now, "t")
        + ("alt text",)
        for uid, data in zip(uids, payloads, strict=True)
    ]
    lake.append(schema.IMAGES, spark.createDataFrame(rows, schema.IMAGES_SCHEMA), {"stage": "test"})

    first = caption.run(spark, cfg)
    assert first.counts["candidates"] == 3
    assert first.counts["generated"] == 2
    assert first.counts["failed"] == 1
    assert first.counts["quarantine_new"] == 1
    assert _uids(lake.read(schema.DENSE_CAPTIONS)) == {uids[0], uids[2]}
    q = lake.read(schema.QUARANTINE).collect()
    assert [(r["stage"], r["source_file"], r["uid"], r["reason"]) for r in q] == [
        ("caption", schema.IMAGES, uids[1], schema.REASON_PREPARE_ERROR)
    ]
    assert "cannot decode" in q[0]["raw"]["error"]
    assert q[0]["raw"]["model"] == "tiny:vlm" and q[0]["run_id"] == first.run_id

    # A rerun leaves it alone; one with retry_failed retries it: it fails again and is
    # not filed twice.
    plain = caption.run(spark, cfg)
    assert (plain.counts["generated"], plain.counts["failed"]) == (0, 0)
    again = caption.run(spark, _config(tmp_path, "caption.retry_failed=true"))
    assert again.counts["already_done"] == 2
    assert again.counts["generated"] == 0
    assert again.counts["failed"] == 1
    assert again.counts["quarantine_new"] == 0
    assert lake.count(schema.QUARANTINE) == 1
