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
    kale browse  --version 3 --out /tmp/kale-v3        (a static site: open index.html)
    kale browse  --from 3 --to 5 --out /tmp/kale-3-5
    kale demo    --config conf/local.yaml
    kale plan    --images 218000000 --gpus 64 --gpu-type nvidia-h200

Every command takes `--config FILE` and any number of `--set a.b=value` overrides.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kale_spark.cli.entry import (
    CONFIG_ERROR_EXIT,
    add_config_args,
    lake_busy_exit,
    load_or_report,
    run_stage,
    setup_logging,
)
from kale_spark.config import Config

Handler = Callable[[argparse.Namespace, Config], int]


def _session(cfg: Config):
    from kale_spark.spark.session import get_session

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
    """A pipeline stage: run `kale_spark.stages.<args.stage>`, print its summary."""
    return run_stage(importlib.import_module(f"kale_spark.stages.{args.stage}"), cfg)


def cmd_diff(args: argparse.Namespace, cfg: Config) -> int:
    from kale_spark.lake.tables import Lake
    from kale_spark.lake.versioning import diff_versions

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
    from kale_spark.lake.tables import Lake
    from kale_spark.release.export import export_release

    lake = Lake(_session(cfg), cfg.lake)
    version = lake.version(schema.KALE) if args.version is None else args.version
    if version is None:
        print(f"kale: no {schema.KALE} table under {lake.root}; run publish", file=sys.stderr)
        return 1
    print(export_release(lake, cfg, version, out=args.out))
    return 0


def cmd_browse(args: argparse.Namespace, cfg: Config) -> int:
    from kale_spark import schema
    from kale_spark.lake.tables import Lake
    from kale_spark.release.browser import browse_diff, browse_release, default_diff_dir
    from kale_spark.release.export import default_dir

    if args.version is not None and (args.from_version is not None or args.to_version is not None):
        print("kale browse: give --version V, or --from A [--to B], not both", file=sys.stderr)
        return 2
    if args.to_version is not None and args.from_version is None:
        print("kale browse: --to needs --from", file=sys.stderr)
        return 2
    lake = Lake(_session(cfg), cfg.lake)
    latest = lake.version(schema.KALE)
    if latest is None:
        print(f"kale: no {schema.KALE} table under {lake.root}; run publish", file=sys.stderr)
        return 1
    try:
        if args.from_version is None:
            version = latest if args.version is None else args.version
            out = args.out or f"{default_dir(lake, version)}/browser"
            path = browse_release(lake, cfg, version, out)
        else:
            to_version = latest if args.to_version is None else args.to_version
            out = args.out or default_diff_dir(lake, args.from_version, to_version)
            path = browse_diff(lake, cfg, args.from_version, to_version, out)
    except (ValueError, FileExistsError) as exc:  # a version out of range, a foreign --out
        print(f"kale browse: {exc}", file=sys.stderr)
        return 1
    print(f"{path}/index.html")
    return 0


def cmd_sql(args: argparse.Namespace, cfg: Config) -> int:
    from kale_spark.lake.tables import Lake
    from kale_spark.spark.udf import register_sql_functions

    spark = _session(cfg)
    Lake(spark, cfg.lake).register_all()
    # kale_caption(image) and kale_fuse(alt_text, dense_caption); models load lazily,
    # only if the query calls them.
    register_sql_functions(spark, cfg)
    spark.sql(args.query).show(args.limit, truncate=80)
    return 0


def cmd_history(args: argparse.Namespace, cfg: Config) -> int:
    from pyspark.sql import functions as F

    from kale_spark.lake.tables import Lake

    lake = Lake(_session(cfg), cfg.lake)
    # Row counts only: the full operationMetrics map is two dozen timings and byte counts.
    rows = F.map_filter("operationMetrics", lambda k, v: k.rlike("^num(Output|Target)Rows"))
    lake.history(args.table, args.limit).select(
        "version", "timestamp", "operation", "userMetadata", rows.alias("rows")
    ).show(args.limit, truncate=False)
    return 0


def cmd_summary(args: argparse.Namespace, cfg: Config) -> int:
    from kale_spark.release.report import lake_summary

    print(lake_summary(_session(cfg), cfg))
    return 0


def cmd_run(args: argparse.Namespace, cfg: Config) -> int:
    from kale_spark.cli.pipeline import run_summary
    from kale_spark.lake.lock import LakeBusy

    try:
        summary, ok = run_summary(cfg)
    except LakeBusy as exc:
        return lake_busy_exit("run", exc)
    print(summary)
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace, cfg: Config) -> int:
    from kale_spark.cli.pipeline import run_demo
    from kale_spark.lake.lock import LakeBusy

    try:
        print(run_demo(cfg, rows=args.rows))
    except LakeBusy as exc:
        return lake_busy_exit("demo", exc)
    return 0


def cmd_plan(args: argparse.Namespace, cfg: Config) -> int:
    from pathlib import Path

    from kale_spark.cli.plan import Workload, format_plan, plan, provenance

    figures = Path(args.figures) if args.figures else None
    try:
        plans = plan(args.images, args.gpus, args.gpu_type, figures,
                     Workload.from_config(cfg), proxy=args.proxy)  # fmt: skip
    except (LookupError, ValueError) as exc:
        print(f"kale plan: {exc}", file=sys.stderr)
        return 2
    print(format_plan(plans, args.gpu_type, provenance(args.gpu_type, figures)))
    return 0


# ------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Arg:
    """One argument of a command: `add_argument(*flags, **options)`. With `config_key`,
    a given value becomes the override `--set <config_key>=<value>`."""

    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    config_key: str | None = None


def arg(*flags: str, config_key: str | None = None, **options: Any) -> Arg:
    return Arg(flags, options, config_key)


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, handler, arguments and (for a pipeline
    stage) the kale_spark.stages module it runs."""

    name: str
    help: str
    handler: Handler
    args: tuple[Arg, ...] = ()
    stage: str | None = None


def stage(name: str, help: str, *args: Arg) -> Command:
    """A pipeline stage command: runs kale_spark.stages.<name, with - as _>."""
    return Command(name, help, cmd_stage, args, stage=name.replace("-", "_"))


# Adding a command is one entry here: a pipeline stage is `stage("name", "help", *args)`
# (it runs kale_spark.stages.name); anything else is `Command(name, help, cmd_x, args)`
# with a handler `cmd_x(args, cfg) -> exit code`.
COMMANDS: tuple[Command, ...] = (
    Command(
        "sample",
        "write a DataComp-format sample with its images",
        cmd_sample,
        (
            arg("--rows", type=int, help="rows to generate (default: sample.rows)"),
            arg("--out", help="output folder (default: sample.out)"),
            arg("--bad-fraction", type=float, help="share of deliberately broken rows"),
            arg("--seed", type=int),
            arg("--base-url", help="serve images from this http base instead of file://"),
        ),
    ),
    stage(
        "ingest",
        "DataComp metadata parquet → samples (+ quarantine)",
        arg("--input", config_key="ingest.input", help="parquet file, folder or glob"),
    ),
    stage("fetch", "samples → images: download, decode, resize"),
    stage("caption", "images → dense_captions: the dense-caption VLM"),
    stage("augment", "alt-text + dense caption → stage1_captions: fusion LLM"),
    stage("filter", "captions → filtered_captions: drop leaked-prompt sentences"),
    stage("publish", "kept captions → the gold `kale` table, a release, exports"),
    stage(
        "train-student",
        "kept stage-1 captions → the stage-2 student (TorchDistributor)",
        arg(
            "--clean-snapshots",
            action="store_const",
            const="true",
            config_key="student.train.clean_snapshots",
            help="first remove the training snapshots no resumable run uses",
        ),
    ),
    stage("student-caption", "the student's share of ok images → stage2_captions"),
    Command(
        "run",
        "the whole pipeline, both stages: DataComp metadata → the published `kale` table",
        cmd_run,
        (arg("--input", config_key="ingest.input", help="parquet file, folder or glob"),),
    ),
    Command(
        "diff",
        "rows added, removed and changed between two table versions",
        cmd_diff,
        (
            arg("table"),
            arg("--from", dest="from_version", type=int, required=True, metavar="V1"),
            arg("--to", dest="to_version", type=int, help="V2 (default: the latest version)"),
            arg("--limit", type=int, default=20, help="uids to print per kind of change"),
        ),
    ),
    Command(
        "export",
        "(re-)export a version of `kale`: Parquet shards + card",
        cmd_export,
        (
            arg("--version", type=int, help="kale table version (default: the latest)"),
            arg("--out", help="folder (default: <lake.root>/exports/kale/v<version>)"),
        ),
    ),
    Command(
        "browse",
        "a static browser of a release (--version) or of what changed (--from/--to)",
        cmd_browse,
        (
            arg("--version", type=int, help="kale table version (default: the latest)"),
            arg("--from", dest="from_version", type=int, metavar="A", help="diff from version A"),
            arg("--to", dest="to_version", type=int, metavar="B", help="to B (default: latest)"),
            arg(
                "--out",
                help="folder (default: <lake.root>/exports/kale/v<version>/browser, "
                "or .../diff-v<A>-v<B>)",
            ),
        ),
    ),
    Command(
        "sql",
        "run Spark SQL against the lake's tables",
        cmd_sql,
        (arg("query"), arg("--limit", type=int, default=50, help="rows to print")),
    ),
    Command(
        "history",
        "print a table's Delta history",
        cmd_history,
        (arg("table"), arg("--limit", type=int, default=20)),
    ),
    Command("summary", "rows and versions of every table in the lake", cmd_summary),
    Command(
        "demo",
        "generate the sample and `kale run` every stage on it",
        cmd_demo,
        (arg("--rows", type=int, help="sample rows (default: sample.rows)"),),
    ),
    Command(
        "plan",
        "wall time and GPU-hours per model stage, from measured rates",
        cmd_plan,
        (
            arg("--images", type=int, required=True, help="images (rows) to process"),
            arg("--gpus", type=int, default=1, help="devices running the stage at once"),
            arg("--gpu-type", default="cpu", help="a device with bench/figures/<type>.json"),
            arg("--figures", help="figures folder (default: $KALE_FIGURES_DIR or bench/figures)"),
            arg(
                "--proxy",
                action="store_true",
                help="plan from a figure of another model than the config runs (marked PROXY)",
            ),
        ),
    ),
)


def build_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    """The `kale` parser: one subcommand per entry of `commands`."""
    parser = argparse.ArgumentParser(prog="kale", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in commands:
        p = sub.add_parser(command.name, help=command.help)
        add_config_args(p)
        for a in command.args:
            p.add_argument(*a.flags, **a.options)
        p.set_defaults(command_spec=command, stage=command.stage)
    return parser


def _config_overrides(args: argparse.Namespace) -> list[str]:
    """`--set` overrides, then those of arguments that stand for a config key."""
    overrides = list(args.overrides)
    for a in args.command_spec.args:
        if a.config_key is None:
            continue
        value = getattr(args, a.options.get("dest") or a.flags[0].lstrip("-").replace("-", "_"))
        if value is not None:
            overrides.append(f"{a.config_key}={value}")
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    cfg = load_or_report("kale", args.config, _config_overrides(args))
    if cfg is None:
        return CONFIG_ERROR_EXIT
    return args.command_spec.handler(args, cfg)


if __name__ == "__main__":
    raise SystemExit(main())
