"""Caption: `images` (status ok) → `dense_captions`, one dense caption per image.

The VLM of `cfg.caption` (the paper: CogVLM-17B at 490x490) runs as an iterator
pandas UDF (udf.caption_udf), loaded once per Python worker. Rows carry their
lineage: model, revision, prompt id, generation parameters, the `images` version
they were read from, run id. Idempotent on (uid, model, prompt_id): a rerun
captions only images with no caption yet from this model and prompt. A row whose
generation fails goes to `quarantine` (stage `caption`, source_file `images`).

    candidates = already_done + generated + failed
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kale_spark import schema
from kale_spark.config import Config
from kale_spark.lake import Lake
from kale_spark.runs import StageRun, stage_run
from kale_spark.split import is_teacher_col
from kale_spark.stages.generated import Target, generate

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

STAGE = "caption"
TARGET = Target(
    stage=STAGE,
    table=schema.DENSE_CAPTIONS,
    table_schema=schema.DENSE_CAPTIONS_SCHEMA,
    text_column="dense_caption",
    source_table=schema.IMAGES,
)


def run(spark: SparkSession, cfg: Config) -> StageRun:
    """Caption every `ok` image that has no dense caption from `cfg.caption` yet."""
    from pyspark.sql import functions as F

    from kale_spark import udf

    lake = Lake(spark, cfg.lake)
    spec = cfg.caption
    with (
        stage_run(lake, cfg, STAGE) as run,
        udf.arrow_batch_size(spark, cfg.spark.arrow_batch_size),
    ):
        if not lake.exists(schema.IMAGES):
            raise LookupError("no `images` table yet: run `kale fetch` first")
        images_version = lake.version(schema.IMAGES)
        run.input_versions[schema.IMAGES] = images_version
        candidates = (
            lake.read(schema.IMAGES, version=images_version)
            .where(F.col("status") == schema.IMAGE_OK)
            .where(is_teacher_col(F.col(schema.UID), cfg.split.teacher_fraction))
            .select(schema.UID, "image")
        )
        model = udf.caption_udf(udf.udf_context(spark, cfg, spec))
        generate(
            lake,
            run,
            TARGET,
            spec,
            candidates,
            model(F.col("image")),
            source_versions={schema.IMAGES: images_version},
        )
        if spec.is_tiny:
            run.notes.append(f"{spec.id} is an untrained smoke-test model: captions are noise")
    return run
