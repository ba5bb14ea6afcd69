"""Spark Connect is refused at start with a clear message (issue 22, item 9).

A real Spark Connect client session (pyspark.sql.connect) is built in a subprocess,
pointed at an address where nothing listens: the refusal must come before any call to
the server, from a stage's `run` and from `get_session`; and `SPARK_REMOTE` set in the
environment is refused before a session is built."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import os
    import sys
    from pyspark.sql import SparkSession
    from kale_spark.config import load_config
    from kale_spark.lake.connect import ConnectNotSupported
    from kale_spark.spark.session import get_session
    from kale_spark.stages import augment, caption, ingest

    cfg = load_config(None, ["lake.root=" + sys.argv[1]])
    spark = SparkSession.builder.remote("sc://127.0.0.1:1").getOrCreate()
    assert type(spark).__module__.startswith("pyspark.sql.connect"), type(spark)
    for what in (caption.run, augment.run, ingest.run, lambda s, c: get_session(c.spark)):
        try:
            what(spark, cfg)
        except ConnectNotSupported as exc:
            print("REFUSED:", exc)
        else:
            print("NOT REFUSED", flush=True)
    # The Connect client's exit hook would retry its unreachable server for minutes.
    sys.stdout.flush()
    os._exit(0)
    """
)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_a_connect_session_is_refused_by_every_entry(tmp_path: Path) -> None:
    pytest.importorskip("grpc", reason="a Spark Connect client needs pyspark[connect]")
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SPARK_HOME")}
    out = _run(["-c", SCRIPT, str(tmp_path / "lake")], env)
    assert out.returncode == 0, out.stderr[-3000:]
    refusals = [line for line in out.stdout.splitlines() if line.startswith("REFUSED:")]
    assert "NOT REFUSED" not in out.stdout
    assert len(refusals) == 4
    # The stages see the session; get_session also sees the environment pyspark set.
    for line in refusals[:3]:
        assert "does not run on Spark Connect (a Spark Connect session)" in line
    for line in refusals:
        assert "it needs a classic Spark session" in line
    assert not (tmp_path / "lake").exists()  # refused before any work


def test_spark_remote_in_the_environment_is_refused_before_a_session() -> None:
    code = (
        "from kale_spark.config import SparkConfig\n"
        "from kale_spark.lake.connect import ConnectNotSupported\n"
        "from kale_spark.spark.session import get_session\n"
        "try:\n"
        "    get_session(SparkConfig(master='local[1]'))\n"
        "except ConnectNotSupported as exc:\n"
        "    print('REFUSED:', exc)\n"
    )
    env = {**os.environ, "SPARK_REMOTE": "sc://127.0.0.1:1"}
    out = _run(["-c", code], env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "REFUSED: kale-spark does not run on Spark Connect (SPARK_REMOTE is set)" in out.stdout
