"""Injected faults (issue 22, item 6; kale_spark/faults, docs/faults.md): each is turned
on by `faults.*` config only, each is recovered or ends as a status or a clear failure,
and every row is accounted for (an output table or quarantine, never lost or doubled).

One small pipeline for all of them (module fixture): ingest and fetch here (a corrupted
image), then caption and augment in a subprocess on `local[2,2]` so that Spark retries a
failed task (a killed Python worker, an out-of-memory batch, a raising UDF, a commit
that fails once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from kale_spark import schema
from kale_spark.config import ConfigError, load_config
from kale_spark.faults import read_fault_log
from kale_spark.lake.tables import Lake
from kale_spark.sources.sample import generate_sample
from kale_spark.stages import fetch, ingest

ROOT = Path(__file__).resolve().parents[2]
ROWS = 8


def _base(root: Path) -> list[str]:
    return [
        f"lake.root={root / 'lake'}",
        "spark.master=local[2]",
        "spark.shuffle_partitions=2",
        f"ingest.input={root / 'sample' / 'metadata'}",
        f"fetch.file_root={root / 'sample'}",
        f"models.cache_dir={root.parent / 'kale-model-cache'}",
        "caption.batch_size=4",
        "augment.batch_size=4",
        "caption.rows_per_commit=8",
        "augment.rows_per_commit=8",
        f"faults.log={root / 'faults.jsonl'}",
    ]


@pytest.fixture(scope="module")
def faulted(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    generate_sample(root / "sample", ROWS, bad_fraction=0.0, seed=5, max_side=160)
    base = _base(root)
    ingest.run(spark, load_config(None, base))
    lake = Lake(spark, load_config(None, base).lake)
    uids = sorted(r["uid"] for r in lake.read(schema.SAMPLES).select("uid").collect())
    corrupt, killed, raised = uids[0], uids[1], uids[2]
    fetch.run(spark, load_config(None, [*base, f"faults.corrupt_image_uids=['{corrupt}']"]))
    job = {
        "base": [*base, "spark.master=local[2,2]"],
        "caption": [f"faults.kill_worker_uids=['{killed}']", "faults.udf_oom_batches=1"],
        "augment": [
            f"faults.udf_raise_uids=['{raised}']",
            f"faults.fail_commit_tables=['{schema.STAGE1_CAPTIONS}']",
        ],
    }
    (root / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.reliability.fault_job", str(root / "job.json")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    print(line)  # the subprocess's times and counts, shown with pytest -s
    return {
        "lake": lake,
        "uids": uids,
        "corrupt": corrupt,
        "killed": killed,
        "raised": raised,
        "result": json.loads(line.removeprefix("RESULT ")),
        "log": read_fault_log(root / "faults.jsonl"),
    }


def _uids(lake: Lake, table: str, where: str = "true") -> list[str]:
    return [r["uid"] for r in lake.read(table).where(where).select("uid").collect()]


def _accounted(f) -> None:
    """Every row in an output or in quarantine, once: samples = images; ok images =
    dense captions + caption quarantine; dense captions = stage-1 + augment quarantine."""
    lake = f["lake"]
    images = _uids(lake, schema.IMAGES)
    ok = set(_uids(lake, schema.IMAGES, "status = 'ok'"))
    dense = _uids(lake, schema.DENSE_CAPTIONS)
    stage1 = _uids(lake, schema.STAGE1_CAPTIONS)
    q_caption = _uids(lake, schema.QUARANTINE, "stage = 'caption'")
    q_augment = _uids(lake, schema.QUARANTINE, "stage = 'augment'")
    for rows in (images, dense, stage1, q_caption, q_augment):
        assert len(rows) == len(set(rows))  # no duplicate keys
    assert sorted(images) == f["uids"]
    assert set(dense) | set(q_caption) == ok and not set(dense) & set(q_caption)
    assert set(stage1) | set(q_augment) == set(dense) and not set(stage1) & set(q_augment)


def _faults(f, kind: str) -> list[dict]:
    return [e for e in f["log"] if e["fault"] == kind]


def test_faults_are_refused_in_the_paper_profile() -> None:
    with pytest.raises(ConfigError, match="faults.* injects failures for tests and is refused"):
        load_config(ROOT / "conf" / "paper.yaml", ["faults.udf_oom_batches=1"])
    assert not load_config(ROOT / "conf" / "paper.yaml").faults.active  # off by default


def test_faults_off_keep_the_config_identity() -> None:
    plain = load_config(None)
    assert load_config(None, ["faults.log=/tmp/x"]).config_hash() == plain.config_hash()
    assert load_config(None, ["faults.udf_oom_batches=1"]).config_hash() != plain.config_hash()


def test_a_corrupted_image_ends_as_a_status(faulted) -> None:
    lake, uid = faulted["lake"], faulted["corrupt"]
    assert [e["uid"] for e in _faults(faulted, "corrupt_image")] == [uid]
    row = lake.read(schema.IMAGES).where(f"uid = '{uid}'").collect()[0]
    assert row["status"] in ("decode_error", "not_an_image", "hash_mismatch")
    assert row["error"] and row["image"] is None
    others = lake.read(schema.IMAGES).where(f"uid != '{uid}'").collect()
    assert Counter(r["status"] for r in others) == {"ok": ROWS - 1}
    _accounted(faulted)


def test_a_killed_python_worker_is_retried_by_spark(faulted) -> None:
    kills = _faults(faulted, "kill_worker")
    assert [e["uid"] for e in kills] == [faulted["killed"]]
    assert faulted["killed"] in _uids(faulted["lake"], schema.DENSE_CAPTIONS)
    _accounted(faulted)


def test_an_out_of_memory_batch_splits_and_succeeds(faulted) -> None:
    ooms = _faults(faulted, "udf_oom")
    assert ooms and all(e["rows"] > 1 for e in ooms)
    # Nothing failed: the split batches generated every ok image's caption.
    assert _uids(faulted["lake"], schema.QUARANTINE, "stage = 'caption'") == []
    assert len(_uids(faulted["lake"], schema.DENSE_CAPTIONS)) == ROWS - 1
    _accounted(faulted)


def test_a_raising_udf_is_retried_by_spark(faulted) -> None:
    raises = _faults(faulted, "udf_raise")
    assert raises and {e["uid"] for e in raises} == {faulted["raised"]}
    assert faulted["raised"] in _uids(faulted["lake"], schema.STAGE1_CAPTIONS)
    _accounted(faulted)


def test_a_failed_commit_fails_clearly_and_the_rerun_resumes(faulted) -> None:
    assert [e["table"] for e in _faults(faulted, "fail_commit")] == [schema.STAGE1_CAPTIONS]
    first = faulted["result"]["augment_first"]
    assert "kale fault injected (faults.fail_commit_tables)" in first
    assert "stage1_captions failed" in first
    # The rerun made what the failed run had not committed; together: every dense caption.
    assert len(_uids(faulted["lake"], schema.STAGE1_CAPTIONS)) == ROWS - 1
    _accounted(faulted)
