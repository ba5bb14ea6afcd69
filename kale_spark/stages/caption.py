"""Caption: `images` (status ok) → `dense_captions`, one dense caption per image.

The VLM of `cfg.caption` (the paper: CogVLM-17B at 490x490) runs in a mapInPandas
model function (udf.model_partition_fn), loaded once per Python worker. Work streams
from the `images` table and is committed in chunks of about `caption.commit_interval_s` of
generation (stages/model_stage.py): a killed run loses at most the chunks in flight.
Rows carry their lineage: model, revision, prompt id, generation parameters, the
`images` version the run started from, run id. Idempotent on (uid, model,
revision, prompt_id). A row whose generation fails goes to `quarantine` (stage `caption`,
source_file `images`).

    candidates = already_done + generated + failed
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kale_spark import schema
from kale_spark.config import Config
from kale_spark.lake.runs import StageRun, stage_run
from kale_spark.lake.tables import Lake
from kale_spark.split import teacher_only
from kale_spark.stages.model_stage import Target, run_on_cluster

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


STAGE = "caption"
TARGET = Target(
    stage=STAGE,
    table=schema.DENSE_CAPTIONS,
    table_schema=schema.DENSE_CAPTIONS_SCHEMA,
    text_column="dense_caption",
    source_table=schema.IMAGES,
)


def ok_images(images: DataFrame) -> DataFrame:
    """The images the teacher captions: fetched ok, with their bytes and alt-text (which
    the dense caption row carries on, for augment)."""
    from pyspark.sql import functions as F

    return images.where(F.col("status") == schema.IMAGE_OK).select(schema.UID, "image", "alt_text")


def run(spark: SparkSession, cfg: Config) -> StageRun:
    """Caption every `ok` image that has no dense caption from `cfg.caption` yet."""
    lake = Lake(spark, cfg.lake)
    spec = cfg.caption
    with stage_run(lake, cfg, STAGE) as run:
        if not lake.exists(schema.IMAGES):
            raise LookupError("no `images` table yet: run `kale fetch` first")
        images_version = lake.version(schema.IMAGES)
        run.input_versions[schema.IMAGES] = images_version
        run_on_cluster(
            spark,
            cfg,
            lake,
            run,
            target=TARGET,
            spec=spec,
            kind="caption",
            source=schema.IMAGES,
            prepare=lambda images: teacher_only(ok_images(images), cfg.split.teacher_fraction),
            source_versions={schema.IMAGES: images_version},
            passthrough=(schema.UID, "alt_text"),
        )
    return run
