"""spark-submit entry point: the whole pipeline, both KALE stages, in one application
(what `kale run` does).

    spark-submit --master spark://HOST:7077 --properties-file conf/spark/local.conf \
        --py-files dist/kale_spark-0.1.0.zip jobs/run_all.py \
        --config conf/local.yaml --input /shared/datacomp/metadata --set lake.root=/shared/kale/lake

`--input PATH` is `ingest.input`, as for `kale run`. `--sample-rows N` first writes the
generated DataComp-format sample (N rows) to `sample.out` unless it is already there.
kale_spark must be importable on the driver and the executors (shipped with
--py-files, or installed in their Python).
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    from kale_spark.cli.entry import (
        CONFIG_ERROR_EXIT,
        add_config_args,
        lake_busy_exit,
        load_or_report,
        setup_logging,
    )
    from kale_spark.cli.pipeline import ensure_sample, run_summary
    from kale_spark.lake.lock import LakeBusy

    parser = argparse.ArgumentParser(prog="jobs/run_all.py", description=__doc__.split("\n")[0])
    add_config_args(parser)
    parser.add_argument("--input", help="DataComp metadata: parquet file, folder or glob")
    parser.add_argument("--sample-rows", type=int, help="generate the sample first (N rows)")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    overrides = [*args.overrides, *([f"ingest.input={args.input}"] if args.input else [])]
    cfg = load_or_report("run_all", args.config, overrides)
    if cfg is None:
        return CONFIG_ERROR_EXIT
    if args.sample_rows:
        ensure_sample(cfg, args.sample_rows)
    try:
        summary, ok = run_summary(cfg)
    except LakeBusy as exc:
        return lake_busy_exit("run", exc)
    print(summary)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
