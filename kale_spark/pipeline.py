"""The whole pipeline in order, as the demo, `jobs/run_all.py` and a notebook run it."""

from __future__ import annotations

import logging
from pathlib import Path

from kale_spark.config import Config

log = logging.getLogger(__name__)


def stages() -> list:
    """The stage modules, in pipeline order; each has `run(spark, cfg)`."""
    from kale_spark.stages import augment, caption, fetch, ingest, publish
    from kale_spark.stages import filter as filter_stage

    return [ingest, fetch, caption, augment, filter_stage, publish]


def run_all(spark, cfg: Config) -> list:
    """Run every stage in order on `spark`; return each stage's run record.

    Stops at the first stage whose run is not ok (the next stage would read its
    missing output).
    """
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


def run_demo(cfg: Config, rows: int | None = None) -> str:
    """Generate the sample if it is missing, run every stage, return the summary."""
    from kale_spark.report import lake_summary
    from kale_spark.session import get_session

    ensure_sample(cfg, rows)
    spark = get_session(cfg.spark)
    summaries = [run.summary() for run in run_all(spark, cfg)]
    return "\n".join(summaries + ["", lake_summary(spark, cfg)])
