"""The `kale` command.

    kale sample  --rows 200 --out data/sample --bad-fraction 0.1
    kale ingest  --config conf/local.yaml --input data/sample/metadata
    kale sql     "SELECT count(*) FROM kale.samples VERSION AS OF 0"
    kale history samples
    kale caption && kale augment
    kale filter  && kale publish
    kale train-student && kale student-caption && kale filter && kale publish
    kale run     --input data/sample/metadata     (every stage, both KALE stages)
    kale diff    kale --from 3 --to 5
    kale export  --version 3
    kale demo    --config conf/local.yaml

Every command takes `--config FILE` and any number of `--set a.b=value` overrides.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from kale_spark.config import Config, ConfigError, load_config

log = logging.getLogger("kale")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="pipeline profile YAML (default: built-in local defaults)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set lake.root=/tmp/lake (repeatable)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kale", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("sample", help="write a DataComp-format sample with its images")
    _common(p)
    p.add_argument("--rows", type=int, help="rows to generate (default: sample.rows)")
    p.add_argument("--out", help="output folder (default: sample.out)")
    p.add_argument("--bad-fraction", type=float, help="share of deliberately broken rows")
    p.add_argument("--seed", type=int)
    p.add_argument("--base-url", help="serve images from this http base instead of file://")

    p = sub.add_parser("ingest", help="DataComp metadata parquet → samples (+ quarantine)")
    _common(p)
    p.add_argument("--input", help="parquet file, folder or glob (default: ingest.input)")

    p = sub.add_parser("fetch", help="samples → images: download, decode, resize")
    _common(p)

    p = sub.add_parser("caption", help="images → dense_captions: the dense-caption VLM")
    _common(p)

    p = sub.add_parser("augment", help="alt-text + dense caption → stage1_captions: fusion LLM")
    _common(p)

    p = sub.add_parser("filter", help="captions → filtered_captions: drop leaked-prompt sentences")
    _common(p)

    p = sub.add_parser("publish", help="kept captions → the gold `kale` table, a release, exports")
    _common(p)

    p = sub.add_parser(
        "train-student", help="kept stage-1 captions → the stage-2 student (TorchDistributor)"
    )
    _common(p)

    p = sub.add_parser("student-caption", help="the student's share of ok images → stage2_captions")
    _common(p)

    p = sub.add_parser("run", help="the whole pipeline, both stages: metadata → published `kale`")
    _common(p)
    p.add_argument("--input", help="DataComp metadata: parquet file, folder or glob")

    p = sub.add_parser("diff", help="rows added, removed and changed between two table versions")
    _common(p)
    p.add_argument("table")
    p.add_argument("--from", dest="from_version", type=int, required=True, metavar="V1")
    p.add_argument("--to", dest="to_version", type=int, help="V2 (default: the latest version)")
    p.add_argument("--limit", type=int, default=20, help="uids to print per kind of change")

    p = sub.add_parser("export", help="(re-)export a version of `kale`: Parquet shards + card")
    _common(p)
    p.add_argument("--version", type=int, help="kale table version (default: the latest)")
    p.add_argument("--out", help="folder (default: <lake.root>/exports/kale/v<version>)")

    p = sub.add_parser("sql", help="run Spark SQL against the lake's tables")
    _common(p)
    p.add_argument("query")
    p.add_argument("--limit", type=int, default=50, help="rows to print")

    p = sub.add_parser("history", help="print a table's Delta history")
    _common(p)
    p.add_argument("table")
    p.add_argument("--limit", type=int, default=20)

    p = sub.add_parser("summary", help="rows and versions of every table in the lake")
    _common(p)

    p = sub.add_parser("demo", help="generate the sample and `kale run` every stage on it")
    _common(p)
    p.add_argument("--rows", type=int, help="sample rows (default: sample.rows)")
    return parser


def _config(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    return load_config(args.config, overrides)


def _session(cfg: Config):
    from kale_spark.session import get_session

    return get_session(cfg.spark)


def cmd_sample(args: argparse.Namespace, cfg: Config) -> int:
    from kale_spark.sources.sample import generate_sample

    result = generate_sample(
        args.out or cfg.sample.out,
        args.rows or cfg.sample.rows,
        bad_fraction=cfg.sample.bad_fraction if args.bad_fraction is None else args.bad_fraction,
        seed=cfg.sample.seed if args.seed is None else args.seed,
        base_url=args.base_url,
        max_side=cfg.sample.max_side,
    )
    print(
        f"wrote {result.rows} rows ({len(result.defects)} with defects) to {result.out}\n"
        f"metadata: {result.metadata_dir}"
    )
    return 0


def cmd_stage(args: argparse.Namespace, cfg: Config) -> int:
    """ingest, fetch, caption, augment, filter, publish: run the stage, print its summary."""
    import importlib

    stage = importlib.import_module(f"kale_spark.stages.{args.command.replace('-', '_')}")
    run = stage.run(_session(cfg), cfg)
    print(run.summary())
    return 0 if run.status == "ok" else 1


def cmd_diff(args: argparse.Namespace, cfg: Config) -> int:
    from kale_spark.lake import Lake
    from kale_spark.versioning import diff_versions

    lake = Lake(_session(cfg), cfg.lake)
    to_version = lake.version(args.table) if args.to_version is None else args.to_version
    if to_version is None:
        print(f"kale: no table {args.table!r} under {lake.root}", file=sys.stderr)
        return 1
    result = diff_versions(lake, args.table, args.from_version, to_version)
    print(result.summary(args.limit))
    return 0


def cmd_export(args: argparse.Namespace, cfg: Config) -> int:
    from kale_spark import schema
    from kale_spark.export import export_release
    from kale_spark.lake import Lake

    lake = Lake(_session(cfg), cfg.lake)
    version = lake.version(schema.KALE) if args.version is None else args.version
    if version is None:
        print(f"kale: no {schema.KALE} table under {lake.root}; run publish", file=sys.stderr)
        return 1
    print(export_release(lake, cfg, version, out=args.out))
    return 0


def cmd_sql(args: argparse.Namespace, cfg: Config) -> int:
    from kale_spark.lake import Lake
    from kale_spark.udf import register_sql_functions

    spark = _session(cfg)
    Lake(spark, cfg.lake).register_all()
    # kale_caption(image) and kale_fuse(alt_text, dense_caption); models load lazily,
    # only if the query calls them.
    register_sql_functions(spark, cfg)
    spark.sql(args.query).show(args.limit, truncate=80)
    return 0


def cmd_history(args: argparse.Namespace, cfg: Config) -> int:
    from pyspark.sql import functions as F

    from kale_spark.lake import Lake

    lake = Lake(_session(cfg), cfg.lake)
    # Row counts only: the full operationMetrics map is two dozen timings and byte counts.
    rows = F.map_filter("operationMetrics", lambda k, v: k.rlike("^num(Output|Target)Rows"))
    lake.history(args.table, args.limit).select(
        "version", "timestamp", "operation", "userMetadata", rows.alias("rows")
    ).show(args.limit, truncate=False)
    return 0


def cmd_summary(args: argparse.Namespace, cfg: Config) -> int:
    from kale_spark.report import lake_summary

    print(lake_summary(_session(cfg), cfg))
    return 0


def cmd_run(args: argparse.Namespace, cfg: Config) -> int:
    from kale_spark.pipeline import run_summary

    summary, ok = run_summary(cfg)
    print(summary)
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace, cfg: Config) -> int:
    from kale_spark.pipeline import run_demo

    print(run_demo(cfg, rows=args.rows))
    return 0


COMMANDS = {
    "sample": cmd_sample,
    "ingest": cmd_stage,
    "fetch": cmd_stage,
    "caption": cmd_stage,
    "augment": cmd_stage,
    "filter": cmd_stage,
    "publish": cmd_stage,
    "train-student": cmd_stage,
    "student-caption": cmd_stage,
    "run": cmd_run,
    "diff": cmd_diff,
    "export": cmd_export,
    "sql": cmd_sql,
    "history": cmd_history,
    "summary": cmd_summary,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.command in ("ingest", "run") and args.input:
        args.overrides.append(f"ingest.input={args.input}")
    try:
        cfg = _config(args)
    except ConfigError as exc:
        print(f"kale: config error: {exc}", file=sys.stderr)
        return 2
    return COMMANDS[args.command](args, cfg)


def job_main(stage, argv: Sequence[str] | None = None) -> int:
    """A spark-submit job (jobs/<stage>.py): parse args, load config, get the session,
    run the stage, print its summary."""
    name = stage.__name__.rsplit(".", 1)[-1]
    doc = (stage.__doc__ or "").strip().split("\n")[0]
    parser = argparse.ArgumentParser(prog=f"jobs/{name}.py", description=doc)
    _common(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        cfg = _config(args)
    except ConfigError as exc:
        print(f"{name}: config error: {exc}", file=sys.stderr)
        return 2
    run = stage.run(_session(cfg), cfg)
    print(run.summary())
    return 0 if run.status == "ok" else 1


if __name__ == "__main__":
    raise SystemExit(main())
