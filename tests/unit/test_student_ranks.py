"""Ranks agree on where training starts, and a rank that cannot see what rank 0 sees
fails with its name on it (two real processes, torch.distributed over gloo)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from kale_spark.config import load_config
from kale_spark.student import checkpoints
from kale_spark.student.data import Example, write_snapshot
from kale_spark.student.loop import TrainJob


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, jobs: list[TrainJob], port: int, out: Path) -> None:
    """One process: join the group, agree on the start, write what happened."""
    import torch.distributed as dist

    from kale_spark.student import loop

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        manifest, step = loop._agree_on_start(jobs[rank], rank, 2)
        (out / f"rank{rank}").write_text(f"ok {step} {manifest['key']}")
    except loop.RankError as exc:
        (out / f"rank{rank}").write_text(f"error {exc}")
    finally:
        dist.destroy_process_group()


def _run_two(jobs: list[TrainJob], out: Path) -> list[str]:
    import torch.multiprocessing as mp

    out.mkdir()
    mp.spawn(_rank_main, args=(jobs, _free_port(), out), nprocs=2, join=True)
    return [(out / f"rank{r}").read_text() for r in range(2)]


def _job(tmp_path: Path, run_dir: Path, snapshot: str) -> TrainJob:
    return TrainJob(load_config(None, []).student, str(run_dir), str(tmp_path), snapshot)


@pytest.fixture
def snapshot(tmp_path: Path) -> str:
    uri = (tmp_path / "snap").as_uri()
    rows = [Example(f"u{i}", b"x", "a", "c") for i in range(4)]
    write_snapshot(uri, {"train": rows, "val": rows[:1]}, 2, key="snapkey")
    return uri


def test_rank_0_decides_the_resume_step(tmp_path: Path, snapshot: str):
    run = tmp_path / "run"
    for step in (2, 4):  # two complete checkpoints; a half-written one is not a checkpoint
        checkpoints.save(run / "checkpoints", step, {}, {"state": {}, "param_groups": []}, {})
    (run / "checkpoints" / "step-000006").mkdir()
    job = _job(tmp_path, run, snapshot)
    assert _run_two([job, job], tmp_path / "out") == ["ok 4 snapkey", "ok 4 snapkey"]
    assert not list((run / "checkpoints").glob(".probe-*"))  # the probe is cleaned up


def test_a_rank_that_cannot_see_the_checkpoint_dir_fails_clearly(tmp_path: Path, snapshot: str):
    # Rank 1 sees another directory at the same place: what a node-local path gives.
    jobs = [
        _job(tmp_path, tmp_path / "run", snapshot),
        _job(tmp_path, tmp_path / "elsewhere", snapshot),
    ]
    got = _run_two(jobs, tmp_path / "out")
    host = socket.gethostname()
    for text in got:  # both ranks stop, with the same message
        assert text.startswith("error rank 1 on " + host + " cannot see the checkpoint directory")
    assert all("rank 0 on" not in text for text in got)


def test_a_rank_that_cannot_open_the_snapshot_fails_before_training(tmp_path: Path, snapshot: str):
    missing = (tmp_path / "not-here").as_uri()
    jobs = [_job(tmp_path, tmp_path / "run", snapshot), _job(tmp_path, tmp_path / "run", missing)]
    got = _run_two(jobs, tmp_path / "out")
    assert got[0] == got[1]
    assert got[0] == (
        f"error rank 1 on {socket.gethostname()} cannot open the training snapshot "
        f"{missing} (no manifest there)"
    )
