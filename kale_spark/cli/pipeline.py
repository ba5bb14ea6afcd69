"""The whole pipeline in order, as `kale run`, the demo, `jobs/run_all.py` and a notebook
run it.

    ingest → fetch → caption → augment → filter          (stage 1: the teacher)
           → train-student → student-caption → filter    (stage 2: the student)
           → publish                                      (both stages in `kale`)

Every stage is idempotent, so a rerun on the same input trains nothing new (the
student's checkpoint for the same training rows exists), generates nothing new and
publishes no new release. A run holds the lake's run lock (lake/lock.py) from before
Spark starts to its end: a second run on the same lake fails at start with `LakeBusy`,
naming the first run's id.
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


def run_all(spark, cfg: Config) -> list:
    """Run every stage in order on `spark` under the lake's run lock; return each
    stage's run record. LakeBusy when another run holds the lake."""
    from kale_spark.lake.lock import lake_lock
    from kale_spark.lake.runs import new_run_id

    with lake_lock(cfg.lake, new_run_id("run"), "kale run"):
        return _run_stages(spark, cfg)


def _run_stages(spark, cfg: Config) -> list:
    """Every stage in order; stops at the first stage whose run is not ok (the next
    stage would read its missing output)."""
    runs = []
    for stage in stages():
        run = stage.run(spark, cfg)
        log.info("%s", run.summary())
        runs.append(run)
        if run.status != "ok":
            break
    return runs


def ensure_sample(cfg: Config, rows: int | None = None) -> Path:
    """The generated sample's folder, written first if its manifest is missing."""
    from kale_spark.sources.sample import generate_sample

    manifest = Path(cfg.sample.out) / "manifest.json"
    if not manifest.exists():
        generate_sample(
            cfg.sample.out,
            rows or cfg.sample.rows,
            bad_fraction=cfg.sample.bad_fraction,
            seed=cfg.sample.seed,
            max_side=cfg.sample.max_side,
        )
    return Path(cfg.sample.out)


def run_summary(cfg: Config) -> tuple[str, bool]:
    """`kale run`: every stage from `ingest.input` to the published table; the summary
    and whether every stage ran ok."""
    from kale_spark.lake.lock import lake_lock
    from kale_spark.lake.runs import new_run_id
    from kale_spark.release.report import lake_summary
    from kale_spark.spark.session import get_session

    run_id = new_run_id("run")
    with lake_lock(cfg.lake, run_id, "kale run"):  # before Spark: a busy lake fails fast
        log.info("kale run %s", run_id)
        spark = get_session(cfg.spark)
        runs = _run_stages(spark, cfg)
        ok = len(runs) == len(stages()) and all(r.status == "ok" for r in runs)
        return "\n".join([r.summary() for r in runs] + ["", lake_summary(spark, cfg)]), ok


def run_demo(cfg: Config, rows: int | None = None) -> str:
    """Generate the sample if it is missing, run every stage, return the summary."""
    ensure_sample(cfg, rows)
    return run_summary(cfg)[0]
