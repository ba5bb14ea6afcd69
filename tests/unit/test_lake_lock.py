"""The lake's run lock (kale_spark/lake/lock.py): one run per local lake, the refused
run told who holds it, and the lock gone with its holder, SIGKILL included."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kale_spark.config import LakeConfig
from kale_spark.lake.lock import LOCK_FILE, LakeBusy, lake_lock, local_root

HOLD = """
import sys, time
from kale_spark.config import LakeConfig
from kale_spark.lake.lock import lake_lock
with lake_lock(LakeConfig(root=sys.argv[1]), "run-holder-1", "kale run"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_holder_is_refused_with_the_first_runs_id(tmp_path: Path) -> None:
    cfg = LakeConfig(root=str(tmp_path / "lake"))
    with lake_lock(cfg, "run-first", "kale run"):
        with pytest.raises(LakeBusy) as busy:
            with lake_lock(cfg, "run-second", "kale run"):
                pass
        assert busy.value.holder["run_id"] == "run-first"
        assert busy.value.holder["pid"] == os.getpid()
        assert busy.value.holder["host"] == socket.gethostname()
        assert "in use by run run-first" in str(busy.value)
    with lake_lock(cfg, "run-third", "kale run"):  # released at the end of the block
        holder = json.loads((tmp_path / "lake" / LOCK_FILE).read_text())
        assert holder["run_id"] == "run-third"


def test_the_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    cfg = LakeConfig(root=str(tmp_path / "lake"))
    with pytest.raises(ValueError):
        with lake_lock(cfg, "run-a", "kale run"):
            raise ValueError("stage failed")
    with lake_lock(cfg, "run-b", "kale run"):
        pass


def test_a_sigkilled_holder_releases_the_lake(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LakeBusy) as busy:
            with lake_lock(LakeConfig(root=str(root)), "run-mine", "kale run"):
                pass
        assert busy.value.holder["run_id"] == "run-holder-1"
        assert busy.value.holder["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while True:  # the kernel drops the lock with the process; no stale-lock cleanup
        try:
            with lake_lock(LakeConfig(root=str(root)), "run-mine", "kale run"):
                break
        except LakeBusy:
            assert time.monotonic() < deadline, "the killed holder's lock was never released"
            time.sleep(0.1)


def test_object_store_lakes_have_no_local_lock(tmp_path: Path, caplog) -> None:
    assert local_root(LakeConfig(root="s3://bucket/lake")) is None
    assert local_root(LakeConfig(root="dbfs:/kale/lake")) is None
    assert local_root(LakeConfig(root=f"file://{tmp_path}")) == tmp_path
    with lake_lock(LakeConfig(root="s3://bucket/lake"), "run-x", "kale run"):
        pass
    assert "not local: no run lock" in caplog.text
