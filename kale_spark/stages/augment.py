"""Augment: alt-text (`samples.text`) + dense caption → `stage1_captions` (KALE Stage 1b).

A Spark SQL join pairs each sample's web alt-text with its dense caption from the
`cfg.caption` model and prompt; the LLM of `cfg.augment` (the paper:
Mistral-7B-Instruct-v0.2, CapsFusion prompt, 3 beams, 80 new tokens) fuses them
in an iterator pandas UDF (udf.fuse_udf), loaded once per Python worker.
`caption_raw` is the model's answer with echoed scaffolding stripped
(fusion.postprocess), before the leaked-prompt filter.

Lineage: model, revision, prompt id, generation parameters, the `samples` and
`dense_captions` versions read, run id. Idempotent on (uid, model, prompt_id);
failures go to `quarantine` (stage `augment`, source_file `dense_captions`).

    candidates = already_done + generated + failed
"""

from __future__ import annotations

import logging
import re
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

STAGE = "augment"
TARGET = Target(
    stage=STAGE,
    table=schema.STAGE1_CAPTIONS,
    table_schema=schema.STAGE1_CAPTIONS_SCHEMA,
    text_column="caption_raw",
    source_table=schema.DENSE_CAPTIONS,
)
PASSTHROUGH = ("uid", "alt_text", "dense_caption", "dense_model", "dense_prompt_id")

PAIRS_SQL = """
SELECT d.uid,
       s.text          AS alt_text,
       d.dense_caption,
       d.model         AS dense_model,
       d.prompt_id     AS dense_prompt_id
FROM {samples} s
JOIN {dense} d ON s.uid = d.uid
"""


def run(spark: SparkSession, cfg: Config) -> StageRun:
    """Fuse alt-text and dense caption for every sample with a `cfg.caption` caption."""
    from pyspark.sql import functions as F

    from kale_spark import udf

    lake = Lake(spark, cfg.lake)
    spec = cfg.augment
    with (
        stage_run(lake, cfg, STAGE) as run,
        udf.arrow_batch_size(spark, cfg.spark.arrow_batch_size),
    ):
        for table, step in ((schema.SAMPLES, "ingest"), (schema.DENSE_CAPTIONS, "caption")):
            if not lake.exists(table):
                raise LookupError(f"no `{table}` table yet: run `kale {step}` first")
        versions = {
            schema.SAMPLES: lake.version(schema.SAMPLES),
            schema.DENSE_CAPTIONS: lake.version(schema.DENSE_CAPTIONS),
        }
        run.input_versions.update(versions)
        # Temp views over the pinned versions; named per run so runs never share one.
        tag = re.sub(r"\W", "_", run.run_id)
        views = {"samples": f"_kale_{tag}_samples", "dense": f"_kale_{tag}_dense"}
        lake.read(schema.SAMPLES, version=versions[schema.SAMPLES]).createOrReplaceTempView(
            views["samples"]
        )
        # The dense captions of the caption stage's model and prompt only.
        lake.read(schema.DENSE_CAPTIONS, version=versions[schema.DENSE_CAPTIONS]).where(
            (F.col("model") == cfg.caption.id)
            & (F.col("prompt_id") == cfg.caption.prompt_id)
            & is_teacher_col(F.col("uid"), cfg.split.teacher_fraction)
        ).createOrReplaceTempView(views["dense"])
        try:
            pairs = spark.sql(PAIRS_SQL.format(**views))
            model = udf.fuse_udf(udf.udf_context(spark, cfg, spec))
            generate(
                lake,
                run,
                TARGET,
                spec,
                pairs,
                model(F.col("alt_text"), F.col("dense_caption")),
                source_versions=versions,
                passthrough=PASSTHROUGH,
            )
        finally:
            for view in views.values():
                spark.catalog.dropTempView(view)
        if spec.is_tiny:
            run.notes.append(f"{spec.id} is an untrained smoke-test model: captions are noise")
    return run
