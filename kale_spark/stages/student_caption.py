"""Student-caption: the student's share of the ok images → `stage2_captions` (KALE Stage 2b).

The split (split.py, `split.teacher_fraction`) gives every ok image to the teacher or
to the student; this stage captions the student's share, image + alt-text in
(prompt `student_v1`), with the checkpoint train-student made last (or
`student.checkpoint`). It runs through the shared model-stage machinery
(stages/generated.py) as an iterator pandas UDF that loads the student once per
Python worker (``StudentCaptioner``, models/student.py).

Rows have no dense caption (`dense_caption`, `dense_model`, `dense_prompt_id` null).
Lineage: `model` is the checkpoint's path, `model_revision` its content hash, plus
the prompt id, generation parameters, the `images` / `samples` versions read and the
`filtered_captions` version the student was trained on
(`source_versions["student_train.filtered_captions"]`). A uid that already has a
stage-1 caption is never captioned here. Idempotent on (uid, model, prompt_id).

    candidates = already_done + generated + failed
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kale_spark import schema
from kale_spark.config import Config
from kale_spark.lake import Lake
from kale_spark.runs import StageRun, stage_run
from kale_spark.split import is_teacher_col
from kale_spark.stages.generated import Target, generate

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

STAGE = "student-caption"
TARGET = Target(
    stage=STAGE,
    table=schema.STAGE2_CAPTIONS,
    table_schema=schema.STAGE2_CAPTIONS_SCHEMA,
    text_column="caption_raw",
    source_table=schema.IMAGES,
)
PASSTHROUGH = ("uid", "alt_text", "dense_caption", "dense_model", "dense_prompt_id")


def resolve_checkpoint(lake: Lake, cfg: Config) -> tuple[str, str, dict[str, Any]]:
    """(path, content hash, pointer) of the student to caption with."""
    from kale_spark.models.student import content_hash
    from kale_spark.stages.train_student import read_latest

    if cfg.student.checkpoint:
        path = cfg.student.checkpoint
        return path, content_hash(path), {"path": path}
    pointer = read_latest(lake, cfg)
    if pointer is None:
        raise LookupError("no student checkpoint yet: run `kale train-student` first")
    if not Path(pointer["path"]).is_dir():
        raise LookupError(f"the student checkpoint {pointer['path']} is gone")
    return pointer["path"], pointer["content_hash"], pointer


def student_batch(captioner: Any, images: pd.Series, alt_texts: pd.Series) -> pd.DataFrame:
    """Captions for (image bytes, alt-text) rows: one ``udf.RESULT_COLUMNS`` row each."""
    from kale_spark.udf import _error_row, _frame, _generate_isolated, _result_row

    rows: list[dict[str, Any] | None] = [None] * len(images)
    todo: list[int] = []
    for i, data in enumerate(images):
        if data is None or len(data) == 0:
            rows[i] = _error_row(schema.REASON_MISSING_INPUT, "no image bytes")
        else:
            todo.append(i)
    items = [
        (bytes(images.iloc[i]), alt_texts.iloc[i] if isinstance(alt_texts.iloc[i], str) else "")
        for i in todo
    ]

    def caption(batch: list[tuple[bytes, str]]) -> list:
        return captioner.caption([b for b, _ in batch], [a for _, a in batch])

    for i, result in zip(todo, _generate_isolated(caption, items), strict=True):
        rows[i] = _result_row(result)
    return _frame(rows)  # type: ignore[arg-type]


def student_udf(ctx: Any):
    """``(image binary, alt_text string) -> udf.RESULT_TYPE``, the student loaded once
    per Python worker."""
    from pyspark.sql.functions import pandas_udf

    from kale_spark.udf import RESULT_TYPE

    def student(pairs: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        from kale_spark.models.student import StudentCaptioner

        captioner = None
        for images, alt_texts in pairs:
            if captioner is None:
                ctx.enter_worker()
                captioner = StudentCaptioner.from_spec(ctx.spec, cache_dir=ctx.cache_dir)
            start = time.monotonic()
            frame = student_batch(captioner, images, alt_texts)
            ctx.log_batch("student", len(frame), time.monotonic() - start)
            yield frame

    return pandas_udf(student, RESULT_TYPE)  # type: ignore[call-overload]


def run(spark: SparkSession, cfg: Config) -> StageRun:
    """Caption every ok image of the student's share that has no caption from this
    checkpoint yet."""
    from pyspark.sql import functions as F

    from kale_spark import udf
    from kale_spark.models.student import student_spec

    lake = Lake(spark, cfg.lake)
    with (
        stage_run(lake, cfg, STAGE) as run,
        udf.arrow_batch_size(spark, cfg.spark.arrow_batch_size),
    ):
        for table, step in ((schema.IMAGES, "fetch"), (schema.SAMPLES, "ingest")):
            if not lake.exists(table):
                raise LookupError(f"no `{table}` table yet: run `kale {step}` first")
        path, digest, pointer = resolve_checkpoint(lake, cfg)
        spec = student_spec(cfg.student, path, digest)
        versions = {t: lake.version(t) for t in (schema.IMAGES, schema.SAMPLES)}
        run.input_versions.update(versions)
        trained_on = (pointer.get("source_versions") or {}).get(schema.FILTERED_CAPTIONS)
        source_versions = dict(versions)
        if trained_on is not None:
            source_versions[f"student_train.{schema.FILTERED_CAPTIONS}"] = int(trained_on)
        candidates = (
            lake.read(schema.IMAGES, version=versions[schema.IMAGES])
            .where(F.col("status") == schema.IMAGE_OK)
            .where(~is_teacher_col(F.col(schema.UID), cfg.split.teacher_fraction))
            .select(schema.UID, "image")
            .join(
                lake.read(schema.SAMPLES, version=versions[schema.SAMPLES]).select(
                    schema.UID, F.col("text").alias("alt_text")
                ),
                schema.UID,
            )
        )
        if lake.exists(schema.STAGE1_CAPTIONS):
            stage1 = lake.read(schema.STAGE1_CAPTIONS).select(schema.UID)
            candidates = candidates.join(stage1, schema.UID, "left_anti")
        for name in ("dense_caption", "dense_model", "dense_prompt_id"):
            candidates = candidates.withColumn(name, F.lit(None).cast("string"))
        model = student_udf(udf.udf_context(spark, cfg, spec))
        generate(
            lake,
            run,
            TARGET,
            spec,
            candidates,
            model(F.col("image"), F.col("alt_text")),
            source_versions=source_versions,
            passthrough=PASSTHROUGH,
        )
        run.notes.append(f"student checkpoint {path} ({digest})")
    return run
