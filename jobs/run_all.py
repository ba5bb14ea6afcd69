"""spark-submit entry point: the whole pipeline, ingest → fetch → caption → augment →
filter → publish, in one application.

    spark-submit --master spark://HOST:7077 --properties-file conf/spark/local.conf \
        --py-files dist/kale_spark-0.1.0.zip jobs/run_all.py \
        --config conf/local.yaml --sample-rows 120 --set lake.root=/shared/kale/lake

`--sample-rows N` first writes the generated DataComp-format sample (N rows) to
`sample.out` unless it is already there. kale_spark must be importable on the driver
and the executors (shipped with --py-files, or installed in their Python).
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    from kale_spark.cli.pipeline import ensure_sample, run_all, stages
    from kale_spark.config import ConfigError, load_config
    from kale_spark.spark.session import get_session

    parser = argparse.ArgumentParser(prog="jobs/run_all.py", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="pipeline profile YAML")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    parser.add_argument("--sample-rows", type=int, help="generate the sample first (N rows)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"run_all: config error: {exc}", file=sys.stderr)
        return 2
    if args.sample_rows:
        ensure_sample(cfg, args.sample_rows)
    runs = run_all(get_session(cfg.spark), cfg)
    for run in runs:
        print(run.summary())
    ok = len(runs) == len(stages()) and all(run.status == "ok" for run in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
