"""Two `kale run` on one lake at once: the second fails at start, before Spark, with
one line naming the first run's id (exit 3); the first is not disturbed, and once it
is SIGKILLed the lake is free again (kale_spark/lake/lock.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kale_spark.cli.entry import LAKE_BUSY_EXIT
from kale_spark.config import LakeConfig
from kale_spark.lake.lock import LOCK_FILE, lake_lock


def _kale(root: Path, *args: str) -> list[str]:
    sets = [f"lake.root={root / 'lake'}", "spark.master=local[1]", f"sample.out={root / 's'}"]
    return [sys.executable, "-m", "kale_spark.cli.commands", *args] + [
        a for s in sets for a in ("--set", s)
    ]


def _holder(lock: Path, pid: int, deadline: float) -> dict:
    while time.monotonic() < deadline:
        try:
            holder = json.loads(lock.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        if holder.get("pid") == pid:
            return holder
        time.sleep(0.05)
    raise AssertionError("the first run never took the lake's lock")


def test_a_second_run_fails_at_start_naming_the_first(tmp_path: Path) -> None:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    first = subprocess.Popen(
        _kale(tmp_path, "run", "--input", str(tmp_path / "none")),
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        holder = _holder(tmp_path / "lake" / LOCK_FILE, first.pid, time.monotonic() + 120)
        assert holder["run_id"].startswith("run-") and holder["command"] == "kale run"
        for args in (("run",), ("caption",)):
            second = subprocess.run(
                _kale(tmp_path, *args), env=env, capture_output=True, text=True, timeout=300
            )
            assert second.returncode == LAKE_BUSY_EXIT, second.stderr[-2000:]
            (line,) = second.stderr.strip().splitlines()  # one line, no traceback
            assert f"in use by run {holder['run_id']}" in line
            assert f"pid {first.pid}" in line
            assert "Spark" not in second.stdout + second.stderr  # refused before Spark
        assert first.poll() is None  # the first run goes on
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    with lake_lock(LakeConfig(root=str(tmp_path / "lake")), "run-after", "kale run"):
        pass  # the killed run's lock went with it
