"""The spark-submit entry of a stage: what every jobs/<stage>.py calls.

    raise SystemExit(job_main(ingest))     # in jobs/ingest.py

Parse args, load the config, get the session, run the stage, print its summary.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from types import ModuleType

from kale_spark.cli.entry import (
    CONFIG_ERROR_EXIT,
    add_config_args,
    load_or_report,
    run_stage,
    setup_logging,
)

__all__ = ["job_main"]


def job_main(stage: ModuleType, argv: Sequence[str] | None = None) -> int:
    """Run the stage module `stage` (it has `run(spark, cfg)`) as a spark-submit job."""
    name = stage.__name__.rsplit(".", 1)[-1]
    doc = (stage.__doc__ or "").strip().split("\n")[0]
    parser = argparse.ArgumentParser(prog=f"jobs/{name}.py", description=doc)
    add_config_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    cfg = load_or_report(name, args.config, args.overrides)
    if cfg is None:
        return CONFIG_ERROR_EXIT
    return run_stage(stage, cfg)
