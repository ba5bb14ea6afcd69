"""The whole pipeline in order, as `kale run`, the demo (and a notebook) run it.

    ingest → fetch → caption → augment → filter          (stage 1: the teacher)
           → train-student → student-caption → filter    (stage 2: the student)
           → publish                                      (both stages in `kale`)

Every stage is idempotent, so a rerun on the same input trains nothing new (the
student's checkpoint for the same training rows exists), generates nothing new and
publishes no new release.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kale_spark.config import Config

log = logging.getLogger(__name__)


def stages() -> list:
    """The stage modules, in pipeline order; each has `run(spark, cfg)`."""
    from kale_spark.stages import (
        augment,
        caption,
        fetch,
        ingest,
        publish,
        student_caption,
        train_student,
    )
    from kale_spark.stages import filter as filter_stage

    return [
        ingest,
        fetch,
        caption,
        augment,
        filter_stage,
        train_student,
        student_caption,
        filter_stage,
        publish,
    ]


def run_pipeline(spark, cfg: Config) -> list:
    """Run every stage on `spark`; the StageRun of each, in order."""
    runs = []
    for stage in stages():
        log.info("pipeline: %s", stage.STAGE)
        runs.append(stage.run(spark, cfg))
    return runs


def run_all(cfg: Config) -> str:
    """`kale run`: every stage from `ingest.input` to the published table; the summary."""
    from kale_spark.report import lake_summary
    from kale_spark.session import get_session

    spark = get_session(cfg.spark)
    runs = run_pipeline(spark, cfg)
    return "\n".join([r.summary() for r in runs] + ["", lake_summary(spark, cfg)])


def run_demo(cfg: Config, rows: int | None = None) -> str:
    """Generate the sample if it is missing, run every stage, return the summary."""
    from kale_spark.sources.sample import generate_sample

    rows = rows or cfg.sample.rows
    manifest = Path(cfg.sample.out) / "manifest.json"
    if not manifest.exists():
        generate_sample(
            cfg.sample.out,
            rows,
            bad_fraction=cfg.sample.bad_fraction,
            seed=cfg.sample.seed,
            max_side=cfg.sample.max_side,
        )
    return run_all(cfg)
