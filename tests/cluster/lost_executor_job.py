"""A spark-submit app for tests/cluster/test_lost_executor.py: ingest, fetch and
caption on a sample whose images a local HTTP server serves, under `--set`
overrides; prints what the stages counted (RESULT <json>). The test kills executor
JVMs while it runs."""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> None:
    from kale_spark.config import load_config
    from kale_spark.spark.session import get_session
    from kale_spark.stages import caption, fetch, ingest

    cfg = load_config(None, [a for a in argv if "=" in a])
    spark = get_session(cfg.spark)  # spark-submit's master; Delta's extension and catalog
    print(f"APP {spark.sparkContext.applicationId}", flush=True)
    runs = {s.STAGE: s.run(spark, cfg) for s in (ingest, fetch, caption)}
    print(
        "RESULT "
        + json.dumps({stage: {"status": r.status, **r.counts} for stage, r in runs.items()}),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
