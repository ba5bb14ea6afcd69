"""Student training through TorchDistributor: its resource setting on the GPU cluster
conf, and two CPU ranks (gloo) that train, average their gradients and resume step
for step.

The two-rank runs start from the module's tiny student and a snapshot written with
pyarrow; `train_student._distribute` is the call the stage makes.
"""

from __future__ import annotations

import io
import random
import shutil
from pathlib import Path

import pytest

from kale_spark.config import load_config
from kale_spark.stages import train_student
from kale_spark.student import checkpoints
from kale_spark.student.data import Example, write_snapshot
from kale_spark.student.loop import FINAL, TrainJob

REPO = Path(__file__).resolve().parents[2]
STEPS = 8
CAPTIONS = [
    "A photo of a red double-decker bus driving down a busy street in London.",
    "A close-up of a golden retriever puppy lying on a green lawn in the sun.",
    "The Eiffel Tower in Paris at sunset, with people walking along the river Seine.",
]


def _props(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split(None, 1)
            out[key] = value.strip()
    return out


def test_the_job_builds_one_gpu_per_rank_from_the_gpu_cluster_conf(spark, monkeypatch):
    """jobs/train_student.py under `--properties-file conf/spark/gpu-cluster.conf` with
    paper.yaml (local_mode false): 8 ranks, each a barrier task holding one whole GPU,
    although the CPU stages' task amount is 1/16 GPU."""
    from pyspark.ml.torch.distributor import TorchDistributor

    from kale_spark.spark.resources import student_distributor

    conf = {**_props(REPO / "conf" / "spark" / "gpu-cluster.conf"), "spark.master": "yarn"}
    assert float(conf["spark.task.resource.gpu.amount"]) == 0.0625
    scfg = load_config(REPO / "conf" / "paper.yaml").student.train
    assert (scfg.num_processes, scfg.local_mode, scfg.use_gpu) == (8, False, True)
    key = "spark.task.resource.gpu.amount"
    spark.conf.set(key, conf[key])  # what TorchDistributor reads from the session
    try:
        with pytest.raises(ValueError, match="0.0625"):  # the stock distributor
            TorchDistributor(num_processes=8, local_mode=False, use_gpu=True)
        distributor = student_distributor(spark, scfg, conf)
    finally:
        spark.conf.unset(key)
    assert distributor.num_tasks == 8  # one barrier task per rank
    tasks = distributor.profile.taskResources
    assert tasks["gpu"].amount == 1.0
    assert tasks["cpus"].amount == int(conf["spark.kale.student.task.cpus"]) == 16
    # In a task, Spark exposes its one GPU; torchrun then starts one process there.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("RANK", "5")
    args, per_node = TorchDistributor._get_torchrun_args(False, distributor.num_processes)
    assert per_node == 1 and "--nnodes=8" in args and "--node_rank=5" in args
    local = student_distributor(spark, load_config(None, []).student.train)
    assert local.profile is None and local.num_tasks == 1
    with pytest.raises(ValueError, match="needs GPUs on the executors"):
        student_distributor(spark, scfg, {"spark.master": "yarn"})


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    rng = random.Random(seed)
    img = Image.new("RGB", (40, 40))
    img.putdata([(rng.randrange(256), rng.randrange(256), 90) for _ in range(40 * 40)])
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def _job(root: Path, run: str, base: Path, uri: str) -> TrainJob:
    scfg = load_config(
        None,
        [
            "student.train.num_processes=2",
            "student.train.batch_size=2",
            f"student.train.max_steps={STEPS}",
            "student.train.warmup_steps=2",
            "student.train.lr=0.003",
            "student.train.eval_interval=4",
            "student.train.checkpoint_interval=2",
            "student.train.keep_checkpoints=10",
            "student.train.loader_workers=1",
        ],
    ).student
    return TrainJob(scfg, str(root / run), str(base), uri, torch_threads=1)


@pytest.fixture(scope="module")
def two_ranks(spark, tmp_path_factory):
    """An uninterrupted two-rank run, then a second run dir cut back to its step-4
    checkpoint (what a kill after that checkpoint leaves) and resumed."""
    from kale_spark.student.model import build_base

    root = tmp_path_factory.mktemp("two-ranks")
    cache = root / "cache"
    base = build_base(load_config(None, []).student, cache / "base", cache_dir=cache)
    rows = [Example(f"u{i:04d}", _jpeg(i), f"alt {i}", CAPTIONS[i % 3]) for i in range(11)]
    uri = (root / "snapshot").as_uri()
    write_snapshot(uri, {"train": rows, "val": rows[:4]}, 3, key="two-ranks")
    straight = train_student._distribute(spark, _job(root, "a", base, uri))
    shutil.copytree(root / "a", root / "b")
    shutil.rmtree(root / "b" / FINAL)
    for step in (6, 8):
        shutil.rmtree(root / "b" / "checkpoints" / f"step-{step:06d}")
    resumed = train_student._distribute(spark, _job(root, "b", base, uri))
    return {"straight": straight, "resumed": resumed, "root": root}


def test_two_ranks_train_on_equal_shares_and_log_both_losses(two_ranks):
    result = two_ranks["straight"]
    assert result["world_size"] == 2 and result["resumed_from"] == 0
    # 11 rows: 5 per rank per epoch (one sits out), batches of 2: 2, 2, 1 rows
    assert result["samples"] == [2 + 2 + 1 + 2 + 2 + 1 + 2 + 2] * 2
    losses = result["step_losses"]
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert all(len(pair) == 2 for pair in losses.values())
    assert any(a != b for a, b in losses.values())  # each rank its own rows
    points = [p for p in result["history"] if p["step"]]
    assert [p["step"] for p in points] == [4, 8]
    for p in points:
        first, last = p["step"] - 3, p["step"]
        by_rank = [sum(losses[s][r] for s in range(first, last + 1)) / 4 for r in (0, 1)]
        assert p["train_loss_by_rank"] == pytest.approx(by_rank)
        assert p["train_loss"] == pytest.approx(sum(by_rank) / 2)
    assert result["history"][-1]["val_loss"] < result["history"][0]["val_loss"]


def test_gradients_are_averaged_over_the_ranks(two_ranks):
    """The ranks saw different rows, yet their weights are equal after every step: each
    applied the same (averaged) gradient."""
    result = two_ranks["straight"]
    a, b = result["replica_checksums"]
    assert a == b
    ckpt = checkpoints.load(two_ranks["root"] / "a" / "checkpoints", STEPS)
    positions = [r["position"] for r in ckpt["extra"]["ranks"]]
    assert [p["epoch"] for p in positions] == [2, 2] and positions[0] != positions[1]
    assert sorted(k for k in ckpt["rng"]) == ["rank_0.cpu", "rank_1.cpu"]


def test_a_resumed_run_matches_an_uninterrupted_one_step_for_step(two_ranks):
    straight, resumed = two_ranks["straight"], two_ranks["resumed"]
    assert resumed["resumed_from"] == 4
    assert sorted(resumed["step_losses"]) == [5, 6, 7, 8]
    for step, pair in resumed["step_losses"].items():
        assert pair == pytest.approx(straight["step_losses"][step], rel=1e-5, abs=1e-6), step
    assert resumed["samples"] == straight["samples"]
    assert [p["step"] for p in resumed["history"]] == [0, 4, 8]
    for got, want in zip(resumed["history"][1:], straight["history"][1:], strict=True):
        assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-5)
        assert got["train_loss_by_rank"] == pytest.approx(want["train_loss_by_rank"], rel=1e-5)
    assert resumed["content_hash"] == straight["content_hash"]  # the same final weights
