"""The `kale` command in-process, on the test session (the CLI reuses the active one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kale_spark.cli.commands import main


@pytest.fixture(scope="module")
def cli_lake(spark, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    out = str(root / "sample")
    assert main(["sample", "--rows", "12", "--out", out, "--seed", "4", "--bad-fraction", "0"]) == 0
    args = ["--set", f"lake.root={root / 'lake'}", "--set", "sample.max_side=256"]
    assert main(["ingest", "--input", str(root / "sample" / "metadata"), *args]) == 0
    return root


def _lake_args(root: Path) -> list[str]:
    return ["--set", f"lake.root={root / 'lake'}"]


def test_sql_time_travel(cli_lake: Path, capsys) -> None:
    capsys.readouterr()
    q = "SELECT count(*) AS n FROM kale.samples VERSION AS OF 0"
    assert main(["sql", q, *_lake_args(cli_lake)]) == 0
    out = capsys.readouterr().out
    assert "|  n|" in out
    assert "|  0|" in out
    q = "SELECT count(*) AS n FROM kale.samples"
    assert main(["sql", q, *_lake_args(cli_lake)]) == 0
    assert "| 12|" in capsys.readouterr().out


def test_history_shows_run_metadata(cli_lake: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["history", "samples", *_lake_args(cli_lake)]) == 0
    out = capsys.readouterr().out
    # The first ingest into an untouched table is a plain append (Delta's WRITE).
    assert "WRITE" in out
    assert '"stage": "ingest"' in out


def test_summary_lists_tables(cli_lake: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["summary", *_lake_args(cli_lake)]) == 0
    out = capsys.readouterr().out
    assert "samples" in out and "quarantine" in out and "runs" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("samples"))
    assert line.split()[1] == "12"


def test_config_error_exits_2(capsys) -> None:
    assert main(["summary", "--set", "lake.nope=1"]) == 2
    assert "unknown config key 'lake.nope'" in capsys.readouterr().err
