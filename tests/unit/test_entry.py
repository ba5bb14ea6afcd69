"""The entry points without Spark: the `kale` parser table, config-key arguments, and
the config-error exit both entry points share."""

from __future__ import annotations

import importlib

import pytest

from kale_spark.cli import commands as cli
from kale_spark.cli.jobmain import job_main
from kale_spark.stages import filter as filter_stage

# The arguments a command cannot go without.
REQUIRED = {
    "diff": ["kale", "--from", "1"],
    "sql": ["SELECT 1"],
    "history": ["kale"],
    "plan": ["--images", "10"],
}


def test_every_command_has_a_subparser_and_stage_commands_name_a_stage_module() -> None:
    parser = cli.build_parser()
    names = [c.name for c in cli.COMMANDS]
    assert names == [
        "sample",
        "ingest",
        "fetch",
        "caption",
        "augment",
        "filter",
        "publish",
        "train-student",
        "student-caption",
        "run",
        "diff",
        "export",
        "browse",
        "sql",
        "history",
        "summary",
        "demo",
        "plan",
    ]
    for command in cli.COMMANDS:
        args = parser.parse_args([command.name, *REQUIRED.get(command.name, [])])
        assert args.command_spec is command
        if command.stage is not None:
            assert callable(importlib.import_module(f"kale_spark.stages.{command.stage}").run)


def test_a_config_key_argument_becomes_the_last_override() -> None:
    args = cli.build_parser().parse_args(
        ["ingest", "--set", "lake.root=/tmp/x", "--input", "/data/meta"]
    )
    assert cli._config_overrides(args) == ["lake.root=/tmp/x", "ingest.input=/data/meta"]
    args = cli.build_parser().parse_args(["ingest"])
    assert cli._config_overrides(args) == []


def test_a_new_command_is_one_table_entry() -> None:
    table = (*cli.COMMANDS, cli.stage("score-student", "score the student"))
    args = cli.build_parser(table).parse_args(["score-student", "--set", "a.b=1"])
    assert args.stage == "score_student" and args.command_spec.handler is cli.cmd_stage


@pytest.mark.parametrize("entry", ["cli", "job"])
def test_config_error_exits_2_with_one_line(entry: str, capsys) -> None:
    argv = ["--set", "lake.nope=1"]
    rc = cli.main(["summary", *argv]) if entry == "cli" else job_main(filter_stage, argv)
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    prog = "kale" if entry == "cli" else "filter"
    known = "checksum_reads, database, root"
    assert err == [f"{prog}: config error: unknown config key 'lake.nope' (known: {known})"]
