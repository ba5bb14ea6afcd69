"""Student-caption: the student's share of the ok images → `stage2_captions` (KALE Stage 2b).

The split (split.py, `split.teacher_fraction`) gives every ok image to the teacher or
to the student; this stage captions the student's share, image + alt-text in
(prompt `student_v1`), with the checkpoint train-student made last (or
`student.caption.id`). It runs through the shared model-stage machinery
(stages/model_stage.py: streamed from `images`, committed chunk by chunk), model kind
"student" of udf.model_partition_fn: the student loaded once per Python worker
(``StudentCaptioner``, student/captioner.py).

Rows have no dense caption (`dense_caption`, `dense_model`, `dense_prompt_id` null).
Lineage: `model` is the checkpoint's path, `model_revision` its content hash, plus
the prompt id, generation parameters, the `images` / `samples` versions read and the
`filtered_captions` version the student was trained on
(`source_versions["student_train.filtered_captions"]`). The uid-hash split keeps the
teacher's share out (publish prefers a stage-1 caption should a uid have both, after a
change of `split.teacher_fraction`). Idempotent on (uid, model, revision, prompt_id).

    candidates = already_done + generated + failed
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale_spark import schema
from kale_spark.config import LATEST_STUDENT, Config
from kale_spark.lake.runs import StageRun, stage_run
from kale_spark.lake.tables import Lake
from kale_spark.split import is_teacher_col
from kale_spark.stages.model_stage import Target, run_on_cluster

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

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
    from kale_spark.stages.train_student import read_latest
    from kale_spark.student.captioner import content_hash

    if cfg.student.caption.id != LATEST_STUDENT:
        path = cfg.student.caption.id
        return path, content_hash(path), {"path": path}
    pointer = read_latest(lake, cfg)
    if pointer is None:
        raise LookupError("no student checkpoint yet: run `kale train-student` first")
    if not Path(pointer["path"]).is_dir():
        raise LookupError(f"the student checkpoint {pointer['path']} is gone")
    return pointer["path"], pointer["content_hash"], pointer


def student_share(lake: Lake, cfg: Config, samples_version: int, legacy: bool):
    """`prepare` for the stream: a batch of `images` rows → the student's candidates
    (uid, image, alt-text; dense columns null). The split keeps the teacher's uids
    out; `legacy` lakes (images rows without their alt-text) join `samples`."""
    from pyspark.sql import functions as F

    def prepare(images: DataFrame) -> DataFrame:
        out = student_rows(images, cfg).select(schema.UID, "image", "alt_text")
        if legacy:
            session = images.sparkSession  # foreachBatch hands over a clone of the query's
            samples = lake.read(schema.SAMPLES, version=samples_version, session=session)
            out = out.join(
                samples.select(schema.UID, F.col("text").alias("_text")), schema.UID
            ).select(schema.UID, "image", F.coalesce("alt_text", "_text").alias("alt_text"))
        for name in ("dense_caption", "dense_model", "dense_prompt_id"):
            out = out.withColumn(name, F.lit(None).cast("string"))
        return out

    return prepare


def student_rows(images: DataFrame, cfg: Config) -> DataFrame:
    """The student's share of the ok images."""
    from pyspark.sql import functions as F

    return images.where(F.col("status") == schema.IMAGE_OK).where(
        ~is_teacher_col(F.col(schema.UID), cfg.split.teacher_fraction)
    )


def has_legacy_rows(lake: Lake, cfg: Config) -> bool:
    """Whether the student's images lack their alt-text (fetched before it was carried)."""
    from pyspark.sql import functions as F

    rows = student_rows(lake.read(schema.IMAGES), cfg).where(F.col("alt_text").isNull())
    legacy = rows.limit(1).count() > 0
    if legacy:
        log.warning("images without alt-text (an older lake): joining samples per chunk")
    return legacy


def run(spark: SparkSession, cfg: Config) -> StageRun:
    """Caption every ok image of the student's share that has no caption from this
    checkpoint yet."""
    from kale_spark.student.captioner import student_spec

    lake = Lake(spark, cfg.lake)
    with stage_run(lake, cfg, STAGE) as run:
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
        run_on_cluster(
            spark,
            cfg,
            lake,
            run,
            target=TARGET,
            spec=spec,
            kind="student",
            source=schema.IMAGES,
            prepare=student_share(lake, cfg, versions[schema.SAMPLES], has_legacy_rows(lake, cfg)),
            source_versions=source_versions,
            passthrough=PASSTHROUGH,
        )
        run.notes.append(f"student checkpoint {path} ({digest})")
    return run
