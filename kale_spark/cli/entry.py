"""What the two entry points share: the `kale` command (kale_spark/cli/commands.py) and the
spark-submit jobs (kale_spark/cli/jobmain.py, jobs/*.py).

Both take `--config FILE`, repeatable `--set a.b=value` and `-v`, log the same way,
exit 2 with one line on a config error, exit 3 with one line when another run holds
the lake (lake/lock.py), and print a stage run's summary.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from kale_spark.config import Config, ConfigError, load_config

__all__ = [
    "CONFIG_ERROR_EXIT",
    "LAKE_BUSY_EXIT",
    "add_config_args",
    "load_or_report",
    "lake_busy_exit",
    "run_stage",
    "setup_logging",
]

CONFIG_ERROR_EXIT = 2
LAKE_BUSY_EXIT = 3  # another run holds the lake's run lock


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """`--config`, `--set KEY=VALUE` (repeatable) and `-v`."""
    parser.add_argument("--config", help="pipeline profile YAML (default: built-in local defaults)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set lake.root=/tmp/lake (repeatable)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def load_or_report(prog: str, path: str | None, overrides: Sequence[str]) -> Config | None:
    """The config, or None after printing `<prog>: config error: ...` to stderr."""
    try:
        return load_config(path, list(overrides))
    except ConfigError as exc:
        print(f"{prog}: config error: {exc}", file=sys.stderr)
        return None


def run_stage(stage: ModuleType, cfg: Config) -> int:
    """Run `stage.run(spark, cfg)` on the active (or a new) session under the lake's
    run lock and print its summary. A failed stage raises (after `runs` records it),
    so this returns 0; LAKE_BUSY_EXIT when another run holds the lake."""
    from kale_spark.lake.lock import LakeBusy, lake_lock
    from kale_spark.lake.runs import new_run_id
    from kale_spark.spark.session import get_session

    name = getattr(stage, "STAGE", stage.__name__.rsplit(".", 1)[-1])
    try:
        with lake_lock(cfg.lake, new_run_id(f"{name}-command"), f"kale {name}"):
            run = stage.run(get_session(cfg.spark), cfg)
    except LakeBusy as exc:
        return lake_busy_exit(name, exc)
    print(run.summary())
    return 0


def lake_busy_exit(prog: str, exc: Exception) -> int:
    """One line on stderr naming the run that holds the lake; LAKE_BUSY_EXIT."""
    print(f"kale {prog}: {exc}", file=sys.stderr)
    return LAKE_BUSY_EXIT
