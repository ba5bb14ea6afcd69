"""The whole pipeline in order, as the demo (and a notebook) runs it."""

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


def run_demo(cfg: Config, rows: int | None = None) -> str:
    """Generate the sample if it is missing, run every stage, return the summary."""
    from kale_spark.report import lake_summary
    from kale_spark.session import get_session
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
    spark = get_session(cfg.spark)
    summaries = []
    for stage in stages():
        run = stage.run(spark, cfg)
        summaries.append(run.summary())
    return "\n".join(summaries + ["", lake_summary(spark, cfg)])
