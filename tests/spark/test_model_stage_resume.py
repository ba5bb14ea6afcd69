"""A model stage commits as it goes: SIGKILL `kale caption` (driver JVM, Python
workers, all of it) after its first commits, rerun it, and nothing is lost, nothing
is duplicated, and nothing that was committed is generated again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kale_spark import schema
from kale_spark.config import load_config
from kale_spark.lake.tables import Lake
from kale_spark.sources.sample import generate_sample
from kale_spark.spark.udf import BATCH_LOG_ENV, read_batch_log
from kale_spark.stages import caption, fetch, ingest

ROWS = 40
ROWS_PER_COMMIT = 4
KILL_AFTER_COMMITS = 2


def _overrides(root: Path) -> list[str]:
    return [
        f"lake.root={root / 'lake'}",
        "spark.master=local[2]",
        "spark.shuffle_partitions=2",
        f"sample.out={root / 'sample'}",
        f"ingest.input={root / 'sample' / 'metadata'}",
        f"fetch.file_root={root / 'sample'}",  # the sample's images are local files
        f"models.cache_dir={root.parent / 'kale-model-cache'}",
        "caption.batch_size=2",
        # Chunks slow enough that the watcher sees the second commit before the last:
        # two commit lanes make commits come twice as often.
        "caption.generation.max_new_tokens=16",
        "caption.generation.min_new_tokens=16",
        f"caption.rows_per_commit={ROWS_PER_COMMIT}",
        "caption.files_per_trigger=1",
    ]


def _caption_commits(table_dir: Path) -> dict[str, int]:
    """run_id → number of commits the caption stage made, read from the Delta log files
    (the killed process cannot be asked; its commits are what is on disk)."""
    runs: dict[str, int] = {}
    for f in sorted((table_dir / "_delta_log").glob("*.json")):
        for line in f.read_text().splitlines():
            info = json.loads(line).get("commitInfo")
            if info and info.get("userMetadata"):
                meta = json.loads(info["userMetadata"])
                if meta.get("stage") == "caption":
                    runs[meta["run_id"]] = runs.get(meta["run_id"], 0) + 1
    return runs


def _kill_after_commits(cmd: list[str], table_dir: Path, env: dict[str, str]) -> str:
    """Start `cmd` in its own process group; SIGKILL the group once it has committed
    KILL_AFTER_COMMITS chunks. Returns the killed run's id."""
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            commits = _caption_commits(table_dir) if table_dir.exists() else {}
            if commits and max(commits.values()) >= KILL_AFTER_COMMITS:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
                return max(commits, key=commits.get)
            if proc.poll() is not None:
                raise AssertionError(
                    f"caption ended (rc {proc.returncode}) before it could be killed: "
                    + proc.stderr.read().decode()[-3000:]
                )
            time.sleep(0.1)
        raise AssertionError("caption made no commits in time")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)


def test_sigkilled_caption_resumes_without_duplicates_or_regeneration(spark, tmp_path) -> None:
    generate_sample(tmp_path / "sample", ROWS, bad_fraction=0.0, seed=11, max_side=200)
    cfg = load_config(None, _overrides(tmp_path))
    ingest.run(spark, cfg)
    fetch.run(spark, cfg)
    lake = Lake(spark, cfg.lake)
    ok = {r["uid"] for r in lake.read(schema.IMAGES).where("status = 'ok'").collect()}
    assert len(ok) == ROWS

    cmd = [sys.executable, "-m", "kale_spark.cli.commands", "caption"]
    cmd += [arg for o in _overrides(tmp_path) for arg in ("--set", o)]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    killed = _kill_after_commits(cmd, tmp_path / "lake" / schema.DENSE_CAPTIONS, env)

    # Delta history shows several commits from the killed run, each a whole chunk.
    history = lake.history(schema.DENSE_CAPTIONS).collect()
    killed_commits = [
        h
        for h in history
        if h["userMetadata"] and json.loads(h["userMetadata"]).get("run_id") == killed
    ]
    assert len(killed_commits) >= KILL_AFTER_COMMITS
    committed = {
        r["uid"] for r in lake.read(schema.DENSE_CAPTIONS).where(f"run_id = '{killed}'").collect()
    }
    # Chunks are uid-hash ranges of about ROWS_PER_COMMIT rows each.
    assert KILL_AFTER_COMMITS <= len(committed) < ROWS

    batch_log = tmp_path / "rerun-batches.jsonl"
    os.environ[BATCH_LOG_ENV] = str(batch_log)  # read on the driver when the UDF is built
    try:
        rerun = caption.run(spark, load_config(None, _overrides(tmp_path)))
    finally:
        os.environ.pop(BATCH_LOG_ENV, None)

    rows = lake.read(schema.DENSE_CAPTIONS).collect()
    uids = [r["uid"] for r in rows]
    assert len(uids) == len(set(uids)) == ROWS  # every ok uid exactly once
    assert set(uids) == ok
    # The rerun generated only what the killed run had not committed ...
    assert rerun.counts["already_done"] == len(committed)
    assert rerun.counts["generated"] == ROWS - len(committed)
    assert sum(b["rows"] for b in read_batch_log(batch_log)) == ROWS - len(committed)
    # ... and the committed rows are still the killed run's.
    assert {r["uid"] for r in rows if r["run_id"] == killed} == committed
    assert {r["uid"] for r in rows if r["run_id"] == rerun.run_id} == ok - committed
