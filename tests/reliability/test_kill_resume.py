"""SIGKILL inside every stage, resume, and end with the gold table of a run that was
never killed.

One lake, the pipeline in order. For each stage the stage's command (`kale <stage>`,
the same `stage.run` that `kale run` calls) runs in its own process group and is
SIGKILLed at a fixed point inside the stage, found by polling its log or the lake
(tests/support/kills.py); then the stage runs again in this process to its end. The
reference is the session's uninterrupted run (conftest `stage2_reference`), made
with other chunk sizes: the gold must not depend on how the work was cut.
`make chaos` does the same with `kale run` itself, killed at random moments.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kale_spark import schema
from kale_spark.config import load_config
from kale_spark.lake.tables import Lake
from kale_spark.stages import (
    augment,
    caption,
    fetch,
    ingest,
    publish,
    student_caption,
    train_student,
)
from kale_spark.stages import filter as filter_stage
from kale_spark.student import checkpoints
from kale_spark.student.loop import HOLD_ENV
from tests.support import kills, stage2_pipeline

# Chunks of two rows: a model stage commits several times, so a kill after its first
# commit lands mid-stage.
CHUNKS = [
    "caption.rows_per_commit=2",
    "augment.rows_per_commit=2",
    "student.caption.rows_per_commit=2",
]
# train-student: killed after the step-3 checkpoint of 6 steps. Steps of the tiny
# student take milliseconds, so the killed process holds there (HOLD_ENV, a test-only
# hook of the training loop) until the kill lands.
KILL_AT_STEP = 3


def _trained_to(lake: Path, step: int):
    def point(_log: str) -> bool:
        runs = (lake / "student").glob("*/checkpoints")
        return any((checkpoints.latest(r) or 0) >= step for r in runs)

    return point


def _plan(lake: Path) -> list[tuple[str, object, object]]:
    """(command, stage module, kill point) in pipeline order."""
    return [
        # ingest: after its samples commit (version 1), before the quarantine's
        ("ingest", ingest, kills.committed(lake / schema.SAMPLES, 1)),
        ("fetch", fetch, kills.log_has(r"\[fetch\] run \S+ started")),
        ("caption", caption, kills.log_has(r"\[caption\] committed [1-9]")),
        ("augment", augment, kills.log_has(r"\[augment\] committed [1-9]")),
        ("filter", filter_stage, kills.log_has(r"\[filter\] run \S+ started")),
        ("train-student", train_student, _trained_to(lake, KILL_AT_STEP)),
        ("student-caption", student_caption, kills.log_has(r"\[student-caption\] committed [1-9]")),
        ("filter", filter_stage, None),  # the stage-2 filter: run once, not killed
        ("publish", publish, kills.log_has(r"merged into kale: ")),  # before its release
    ]


@pytest.fixture(scope="module")
def killed_and_resumed(spark, stage2_reference, tmp_path_factory):
    root = tmp_path_factory.mktemp("killed")
    stage2_pipeline.write_sample(root)
    overrides = [*stage2_pipeline.overrides(root), *CHUNKS]
    cfg = load_config(None, overrides)
    lake_dir = root / "lake"
    outcomes, runs = {}, {}
    for command, stage, point in _plan(lake_dir):
        if point is not None:
            log = root / f"{command}.log"
            env = {HOLD_ENV: str(KILL_AT_STEP)} if command == "train-student" else None
            out = kills.run_and_kill(kills.kale_cmd([command], overrides), log, point, env=env)
            assert out.killed, f"{command} ended (rc {out.returncode}) before its kill point"
            outcomes[command] = out
        runs[command] = stage.run(spark, cfg)  # the rerun, to the stage's end
        assert runs[command].status == "ok"
    return {
        "lake": Lake(spark, cfg.lake),
        "root": root,
        "dir": lake_dir,
        "runs": runs,
        "kills": outcomes,
    }


def test_every_stage_was_killed_inside_and_resumed(killed_and_resumed) -> None:
    assert sorted(killed_and_resumed["kills"]) == sorted(
        ["ingest", "fetch", "caption", "augment", "filter", "train-student"]
        + ["student-caption", "publish"]
    )
    runs = killed_and_resumed["runs"]
    # The model stages resumed: chunks the killed run committed were not generated again.
    for stage in ("caption", "augment", "student-caption"):
        assert runs[stage].counts["already_done"] >= 1, stage
        assert (
            runs[stage].counts["generated"] + runs[stage].counts["already_done"]
            == (runs[stage].counts["candidates"])
        ), stage
    assert runs["train-student"].counts["resumed_from_step"] == KILL_AT_STEP
    assert runs["train-student"].counts["trained_steps"] == stage2_pipeline.STEPS - KILL_AT_STEP


def test_no_table_holds_a_key_twice(killed_and_resumed) -> None:
    assert kills.duplicate_keys(killed_and_resumed["dir"]) == {}


def test_the_gold_table_equals_the_uninterrupted_runs(killed_and_resumed, stage2_reference):
    ref_root = stage2_reference["root"]
    want = kills.gold(ref_root / "lake", stage2_reference["versions"][schema.KALE], ref_root)
    got = kills.gold(killed_and_resumed["dir"], root=killed_and_resumed["root"])
    assert {dict(r)["stage"] for r in want.values()} == {"stage1", "stage2"}
    assert kills.gold_mismatches(got, want) == []
    # The student resumed at step 3 ends with the uninterrupted student's weights, bit
    # for bit (so its stage-2 captions are the same).
    assert kills.student_weights(killed_and_resumed["dir"]) == kills.student_weights(
        ref_root / "lake"
    )


def _keys(lake: Path, table: str, root: Path, version: int | None = None) -> set[tuple]:
    """A table's keys, the run's folder written <root>. Stage-2 keys hold the student
    checkpoint's content hash, equal in both runs as their weights are."""
    return {
        tuple(str(r[c]).replace(str(root), "<root>") for c in kills.TABLE_KEYS[table])
        for r in kills.read_table(lake, table, version)
    }


def test_no_partial_result_of_a_killed_run_is_visible(killed_and_resumed, stage2_reference):
    """Every table holds exactly the reference's keys, and the one release points at
    the gold table's current version."""
    ref_root, root = stage2_reference["root"], killed_and_resumed["root"]
    for table in (
        schema.SAMPLES,
        schema.IMAGES,
        schema.DENSE_CAPTIONS,
        schema.STAGE1_CAPTIONS,
        schema.STAGE2_CAPTIONS,
        schema.FILTERED_CAPTIONS,
        schema.QUARANTINE,
    ):
        version = stage2_reference["versions"].get(table)
        want = _keys(ref_root / "lake", table, ref_root, version)
        assert _keys(killed_and_resumed["dir"], table, root) == want, table
    releases = kills.read_table(killed_and_resumed["dir"], schema.RELEASES)
    assert len(releases) == 1
    assert releases[0]["version"] == killed_and_resumed["lake"].version(schema.KALE)
