"""Augment: alt-text + dense caption → `stage1_captions` (KALE Stage 1b).

Each dense caption of the `cfg.caption` model (revision and prompt) carries its
image's web alt-text (fetch copies `samples.text` into `images.alt_text`, caption
carries it on), so the pairs need no join; the LLM of `cfg.augment` (the paper:
Mistral-7B-Instruct-v0.2 with CapsFusion's prompt) fuses them in a mapInPandas model
function (udf.model_partition_fn), loaded once per Python worker. New dense captions
stream in from `dense_captions`; results are committed in chunks of about
`augment.commit_interval_s` of generation (stages/model_stage.py). `caption_raw` is
the model's answer with echoed scaffolding stripped (fusion.postprocess), before the
leaked-prompt filter. A lake whose dense captions predate the carried alt-text joins
`samples` in Spark SQL instead.

Lineage: model, revision, prompt id, generation parameters, the `samples` and
`dense_captions` versions the run started from, run id. Idempotent on (uid, model,
revision, prompt_id); failures go to `quarantine` (stage `augment`, source_file
`dense_captions`).

    candidates = already_done + generated + failed
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kale_spark import schema
from kale_spark.config import Config
from kale_spark.lake.runs import StageRun, stage_run
from kale_spark.lake.tables import Lake
from kale_spark.split import teacher_only
from kale_spark.stages.model_stage import Target, run_on_cluster

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

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

# Dense captions written before they carried their alt-text take it from `samples`.
LEGACY_PAIRS_SQL = """
SELECT d.uid,
       coalesce(d.alt_text, s.text) AS alt_text,
       d.dense_caption,
       d.model         AS dense_model,
       d.prompt_id     AS dense_prompt_id
FROM {dense} d
JOIN {samples} s ON s.uid = d.uid
"""


def ours(dense: DataFrame, cfg: Config) -> DataFrame:
    """The dense captions of `cfg.caption` (model, revision, prompt) in the teacher's share."""
    from kale_spark.stages.model_stage import key_condition

    return teacher_only(dense.where(key_condition(cfg.caption)), cfg.split.teacher_fraction)


def pairs(lake: Lake, cfg: Config, samples_version: int, legacy: bool):
    """`prepare` for the stream: a batch of dense captions → (alt-text, dense) pairs.
    The alt-text comes with the dense caption; only `legacy` lakes (rows without it)
    join `samples`, a scan of it per micro-batch."""
    from pyspark.sql import functions as F

    def prepare(dense: DataFrame) -> DataFrame:
        mine = ours(dense, cfg)
        if not legacy:
            return mine.select(
                schema.UID,
                "alt_text",
                "dense_caption",
                F.col("model").alias("dense_model"),
                F.col("prompt_id").alias("dense_prompt_id"),
            )
        # In the batch's own session: foreachBatch hands over a clone of the query's.
        session = dense.sparkSession
        samples = lake.read(schema.SAMPLES, version=samples_version, session=session)
        return session.sql(LEGACY_PAIRS_SQL, samples=samples, dense=mine)

    return prepare


def has_legacy_rows(lake: Lake, cfg: Config) -> bool:
    """Whether dense captions of `cfg.caption` lack their alt-text (written before it
    was carried); one scan of two columns per run."""
    from pyspark.sql import functions as F

    dense = lake.read(schema.DENSE_CAPTIONS)
    legacy = ours(dense, cfg).where(F.col("alt_text").isNull()).limit(1).count() > 0
    if legacy:
        log.warning("dense captions without alt-text (an older lake): joining samples per chunk")
    return legacy


def run(spark: SparkSession, cfg: Config) -> StageRun:
    """Fuse alt-text and dense caption for every sample with a `cfg.caption` caption."""
    lake = Lake(spark, cfg.lake)
    spec = cfg.augment
    with stage_run(lake, cfg, STAGE) as run:
        for table, step in ((schema.SAMPLES, "ingest"), (schema.DENSE_CAPTIONS, "caption")):
            if not lake.exists(table):
                raise LookupError(f"no `{table}` table yet: run `kale {step}` first")
        versions = {
            schema.SAMPLES: lake.version(schema.SAMPLES),
            schema.DENSE_CAPTIONS: lake.version(schema.DENSE_CAPTIONS),
        }
        run.input_versions.update(versions)
        run_on_cluster(
            spark,
            cfg,
            lake,
            run,
            target=TARGET,
            spec=spec,
            kind="fuse",
            source=schema.DENSE_CAPTIONS,
            prepare=pairs(lake, cfg, versions[schema.SAMPLES], has_legacy_rows(lake, cfg)),
            source_versions=versions,
            passthrough=PASSTHROUGH,
        )
    return run
