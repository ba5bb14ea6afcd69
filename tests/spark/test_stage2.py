"""Both KALE stages end to end on real local Spark + Delta with the tiny models.

One module-scoped pipeline: a generated DataComp-format sample → `pipeline.run_pipeline`
(ingest, fetch, caption, augment, filter, train-student through TorchDistributor,
student-caption, filter, publish), then `kale run` again through the CLI. The tests
below read what those two runs wrote. Expected uid sets come from the documented hash
rule computed here with hashlib, not from kale_spark.split.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kale_spark import schema
from kale_spark.cli import commands as cli
from kale_spark.lake.tables import Lake
from tests.support import stage2_pipeline

ROWS = stage2_pipeline.ROWS
TEACHER_FRACTION = stage2_pipeline.TEACHER_FRACTION
STEPS = stage2_pipeline.STEPS
DATA_TABLES = (
    schema.SAMPLES,
    schema.IMAGES,
    schema.DENSE_CAPTIONS,
    schema.STAGE1_CAPTIONS,
    schema.STAGE2_CAPTIONS,
    schema.FILTERED_CAPTIONS,
    schema.KALE,
    schema.RELEASES,
)


def _teacher(uid: str) -> bool:
    # split.py's documented rule, written out independently.
    bucket = int(hashlib.sha256(f"kale-teacher:{uid}".encode()).hexdigest()[:8], 16)
    return bucket < int(TEACHER_FRACTION * 2**32)


def _dir_hash(path: Path) -> str:
    """The revision's definition: every file but the provenance, JSON without the base
    models' load folders (`_name_or_path`)."""

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "_name_or_path"}
        return [strip(v) for v in node] if isinstance(node, list) else node

    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name != "provenance.json"):
        body = f.read_bytes()
        if f.suffix == ".json":
            body = json.dumps(strip(json.loads(body)), sort_keys=True).encode()
        h.update(str(f.relative_to(path)).encode() + b"\0" + body)
    return "sha256:" + h.hexdigest()


def _overrides(root: Path) -> list[str]:
    return stage2_pipeline.overrides(root)


def _table_rows(lake: Lake, table: str) -> list[tuple]:
    df = lake.read(table)
    drop = [
        c for c in ("created_at", "fetched_at", "ingested_at", "published_at") if c in df.columns
    ]
    return sorted(tuple(str(v) for v in r) for r in df.drop(*drop).collect())


@pytest.fixture(scope="module")
def both_stages(stage2_reference):
    """The session's reference run of both stages, then `kale run` again from the CLI."""
    root, cfg, lake = (stage2_reference[k] for k in ("root", "cfg", "lake"))
    first = stage2_reference["first"]
    versions = {t: lake.version(t) for t in DATA_TABLES}
    contents = {t: _table_rows(lake, t) for t in DATA_TABLES}
    argv = ["run", "--input", str(root / "sample" / "metadata")]
    for o in _overrides(root):
        argv += ["--set", o]
    rc = cli.main(argv)
    return {
        "root": root,
        "cfg": cfg,
        "lake": lake,
        "first": {r.stage: r for r in first},
        "versions": versions,
        "contents": contents,
        "rc": rc,
    }


def _uids(df) -> set[str]:
    return {r["uid"] for r in df.select("uid").collect()}


def test_split_expression_agrees_with_python(spark, both_stages) -> None:
    from pyspark.sql import functions as F

    from kale_spark import split

    uids = [hashlib.md5(str(i).encode()).hexdigest() for i in range(300)]
    df = spark.createDataFrame([(u,) for u in uids], "uid string")
    got = {
        r["uid"]: r["t"]
        for r in df.select("uid", split.is_teacher_col(F.col("uid"), 0.4587).alias("t")).collect()
    }
    assert got == {u: split.is_teacher(u, 0.4587) for u in uids}


def test_stage2_holds_exactly_the_students_ok_uids(both_stages) -> None:
    lake = both_stages["lake"]
    ok = _uids(lake.read(schema.IMAGES).where(f"status = '{schema.IMAGE_OK}'"))
    student = {u for u in ok if not _teacher(u)}
    teacher = ok - student
    assert student and teacher  # the sample gives both sides something
    stage2 = lake.read(schema.STAGE2_CAPTIONS)
    assert _uids(stage2) == student
    assert stage2.count() == len(student)
    assert _uids(lake.read(schema.STAGE1_CAPTIONS)) == teacher
    assert _uids(lake.read(schema.DENSE_CAPTIONS)) == teacher
    assert not _uids(lake.read(schema.STAGE1_CAPTIONS)) & _uids(stage2)


def test_stage2_rows_name_the_checkpoint(both_stages) -> None:
    lake = both_stages["lake"]
    rows = lake.read(schema.STAGE2_CAPTIONS).collect()
    models = {r["model"] for r in rows}
    assert len(models) == 1
    checkpoint = Path(models.pop())
    assert checkpoint.name == "final" and checkpoint.is_dir()
    assert {r["model_revision"] for r in rows} == {_dir_hash(checkpoint)}
    assert all(r["dense_caption"] is None and r["dense_model"] is None for r in rows)
    assert {r["prompt_id"] for r in rows} == {"student_v1"}
    trained_on = both_stages["first"]["train-student"].input_versions[schema.FILTERED_CAPTIONS]
    for r in rows:
        assert r["source_versions"]["student_train.filtered_captions"] == trained_on
        assert r["caption_raw"].strip()


def test_provenance_beside_the_weights(both_stages) -> None:
    run = both_stages["first"]["train-student"]
    lake = both_stages["lake"]
    checkpoint = Path(lake.read(schema.STAGE2_CAPTIONS).first()["model"])
    assert (checkpoint / "model.safetensors").is_file()
    prov = json.loads((checkpoint / "provenance.json").read_text())
    assert prov["source_table"] == "filtered_captions"
    assert prov["source_version"] == run.input_versions[schema.FILTERED_CAPTIONS]
    assert prov["config_hash"] == both_stages["cfg"].config_hash()
    assert prov["base_models"]["vision"]["id"] == "tiny:student-vision"
    assert prov["base_models"]["language"]["id"] == "tiny:student-lm"
    assert prov["steps"] == STEPS
    kept_teacher = (
        lake.read(schema.FILTERED_CAPTIONS, version=prov["source_version"])
        .where("stage = 'stage1' AND NOT rejected")
        .count()
    )
    assert prov["data"]["train_rows"] + prov["data"]["val_rows"] == kept_teacher


def test_training_learns_and_logs_losses_into_runs(spark, both_stages) -> None:
    """Learning test: on the sample, validation loss after training < before."""
    lake = both_stages["lake"]
    run_id = both_stages["first"]["train-student"].run_id
    row = lake.read(schema.RUNS).where(f"run_id = '{run_id}'").first()
    assert row["status"] == "ok"
    metrics, counts = row["metrics"], row["counts"]
    assert counts["steps"] == STEPS and counts["trained_steps"] == STEPS
    assert counts["val_rows"] >= 1 and counts["train_rows"] >= 1
    for step in (0, 3, 6):
        assert f"val_loss.step_{step:06d}" in metrics
    for step in (3, 6):
        assert f"train_loss.step_{step:06d}" in metrics
    assert metrics["val_loss_before"] == metrics["val_loss.step_000000"]
    assert metrics["val_loss_after"] < metrics["val_loss_before"]


def test_kale_holds_both_stages(both_stages) -> None:
    lake = both_stages["lake"]
    kale = lake.read(schema.KALE).collect()
    by_stage: dict[str, set[str]] = {}
    for r in kale:
        by_stage.setdefault(r["stage"], set()).add(r["uid"])
    assert set(by_stage) == {"stage1", "stage2"}
    assert all(_teacher(u) for u in by_stage["stage1"])
    assert not any(_teacher(u) for u in by_stage["stage2"])
    for r in kale:
        if r["stage"] == "stage2":
            assert r["dense_caption"] is None
            assert r["novel_share_basis"] == schema.BASIS_ALT_ONLY
        else:
            assert r["dense_caption"]
            assert r["novel_share_basis"] == schema.BASIS_ALT_AND_DENSE


def test_rerun_gives_the_same_tables(both_stages) -> None:
    lake = both_stages["lake"]
    assert both_stages["rc"] == 0
    for table in DATA_TABLES:
        assert lake.version(table) == both_stages["versions"][table], table
        assert _table_rows(lake, table) == both_stages["contents"][table], table
    last = (
        lake.read(schema.RUNS)
        .where("stage = 'train-student'")
        .orderBy("started_at", ascending=False)
        .first()
    )
    assert last["counts"]["trained_steps"] == 0
    student_runs = lake.read(schema.RUNS).where("stage = 'student-caption'").collect()
    assert sorted(r["counts"]["generated"] for r in student_runs)[0] == 0


def test_a_lake_from_before_stage2_is_brought_up_to_the_schema(spark, tmp_path) -> None:
    """ensure_table on an old table: missing columns added, NOT NULL dropped where the
    schema now allows null (dense_caption of stage-2 rows)."""
    from pyspark.sql.types import StringType, StructField, StructType

    from kale_spark.config import LakeConfig

    lake = Lake(spark, LakeConfig(root=str(tmp_path / "lake")))
    old = StructType(
        [
            StructField("uid", StringType(), False),
            StructField("dense_caption", StringType(), False),
        ]
    )
    new = StructType(
        [
            StructField("uid", StringType(), False),
            StructField("dense_caption", StringType(), True),
            StructField("novel_share_basis", StringType(), True),
        ]
    )
    lake.ensure_table("t", old)
    assert not lake.read("t").schema["dense_caption"].nullable
    lake.ensure_table("t", new)
    df = spark.createDataFrame([("a" * 32, None, "alt_text")], new)
    lake.append("t", df, {"stage": "test"})
    row = lake.read("t").first()
    assert row["dense_caption"] is None and row["novel_share_basis"] == "alt_text"


# ------------------------------------------- two processes from the CLI, SIGKILL, resume

CLI_STEPS = 40
KILL_AT_STEP = 4


def _train_student_cmd(root: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "kale_spark.cli.commands", "train-student"]
    return cmd + [a for o in _overrides(root) for a in ("--set", o)] + list(extra)


def _checkpoints(student_root: Path) -> dict[str, int]:
    """run dir name → its newest complete checkpoint step."""
    from kale_spark.student import checkpoints

    out = {}
    for run_dir in student_root.iterdir():
        step = checkpoints.latest(run_dir / "checkpoints")
        if step is not None:
            out[run_dir.name] = step
    return out


def _processes_with(marker: str) -> list:
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("KALE_TEST_RUN") == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _kill_at_checkpoint(cmd: list[str], student_root: Path, before: set[str]) -> tuple[str, int]:
    """Run `cmd` in its own process group; SIGKILL the group once a new run has a
    checkpoint at KILL_AT_STEP or later. (run dir, the step its checkpoints reached)."""
    marker = uuid.uuid4().hex
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "KALE_TEST_RUN": marker}
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline:
            new = {k: v for k, v in _checkpoints(student_root).items() if k not in before}
            if new and max(new.values()) >= KILL_AT_STEP:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
                break
            if proc.poll() is not None:
                raise AssertionError(
                    f"train-student ended (rc {proc.returncode}) before it could be killed: "
                    + proc.stderr.read().decode()[-3000:]
                )
            time.sleep(0.05)
        else:
            raise AssertionError("train-student reached no checkpoint in time")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # torchrun starts the ranks in sessions of their own: they must notice and stop.
    stop_by = time.monotonic() + 30
    while _processes_with(marker) and time.monotonic() < stop_by:
        time.sleep(0.2)
    assert not _processes_with(marker), "training processes outlived the killed job"
    (run_dir,) = new
    return run_dir, _checkpoints(student_root)[run_dir]


@pytest.fixture(scope="module")
def two_processes(both_stages):
    """`kale train-student` with two processes on the sample: SIGKILLed after a
    checkpoint, then rerun with --clean-snapshots beside a stale and an in-use snapshot."""
    root, lake = both_stages["root"], both_stages["lake"]
    student_root = Path(lake.root) / "student"
    snapshots = student_root / "snapshots"
    first_snapshot = {p.name for p in snapshots.iterdir()}
    before = set(_checkpoints(student_root))
    extra = [
        "--set",
        "student.train.num_processes=2",
        "--set",
        f"student.train.max_steps={CLI_STEPS}",
        "--set",
        "student.train.checkpoint_interval=2",
        "--set",
        "student.train.eval_interval=10",
    ]
    run_dir, reached = _kill_at_checkpoint(_train_student_cmd(root, *extra), student_root, before)
    # a snapshot no run uses, and one a resumable run (no final yet) still reads
    (snapshots / "stale00000000000").mkdir()
    (snapshots / "stale00000000000" / "manifest.json").write_text("{}")
    (snapshots / "inuse00000000000").mkdir()
    from kale_spark.student import checkpoints

    checkpoints.save(
        student_root / "resumable0000000" / "checkpoints",
        2,
        {},
        {"state": {}, "param_groups": []},
        {"snapshot": "inuse00000000000"},
    )
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    cmd = _train_student_cmd(root, *extra, "--clean-snapshots")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = (
        lake.read(schema.RUNS)
        .where("stage = 'train-student'")
        .orderBy("started_at", ascending=False)
        .first()
    )
    return {
        "run_dir": student_root / run_dir,
        "reached": reached,
        "row": runs,
        "first_snapshot": first_snapshot,
        "snapshots_after": {p.name for p in snapshots.iterdir()},
    }


def test_two_processes_resume_at_the_step_they_reached(two_processes) -> None:
    row = two_processes["row"]
    assert row["status"] == "ok"
    reached = two_processes["reached"]
    assert KILL_AT_STEP <= reached < CLI_STEPS
    assert row["counts"]["resumed_from_step"] == reached
    assert row["counts"]["trained_steps"] == CLI_STEPS - reached
    assert row["counts"]["steps"] == CLI_STEPS
    assert (two_processes["run_dir"] / "final" / "provenance.json").is_file()


def test_runs_row_has_the_world_size_and_each_ranks_rows(two_processes, both_stages) -> None:
    metrics = two_processes["row"]["metrics"]
    assert metrics["world_size"] == 2
    batch = 2  # student.train.batch_size in _overrides
    a, b = metrics["samples.rank_0"], metrics["samples.rank_1"]
    assert a > 0 and abs(a - b) <= batch
    # every step took one batch on each rank: between CLI_STEPS and batch * CLI_STEPS rows
    assert CLI_STEPS <= a <= batch * CLI_STEPS
    for step in (10, 20, 30, 40):
        assert f"train_loss.rank_0.step_{step:06d}" in metrics
        assert f"train_loss.rank_1.step_{step:06d}" in metrics


def test_the_snapshot_is_reused_and_unused_ones_are_cleaned(two_processes) -> None:
    """Other training settings, same data: the first run's snapshot is reused (nothing
    new is written); --clean-snapshots removed the stale one, kept the in-use one."""
    first = two_processes["first_snapshot"]
    assert len(first) == 1
    assert two_processes["snapshots_after"] == first | {"inuse00000000000"}
    assert two_processes["row"]["counts"]["snapshots_removed"] == 1
