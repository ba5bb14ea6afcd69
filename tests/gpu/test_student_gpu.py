"""The student's training on a CUDA GPU (marker `gpu`: skipped cleanly without one).

The tiny student trains in a bf16 autocast forward over float32 master weights, with
the DataLoader's workers and pinned memory, resumes from a checkpoint, and reports
its loss and samples/s (printed: `pytest -s tests/gpu`, or `bash bench/gpu_check.sh`).
"""

from __future__ import annotations

import io
import random
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

CAPTIONS = [
    "A photo of a red double-decker bus driving down a busy street in London.",
    "A close-up of a golden retriever puppy lying on a green lawn in the sun.",
    "The Eiffel Tower in Paris at sunset, with people walking along the river Seine.",
    "A white ceramic mug of coffee on a wooden table next to an open notebook.",
]


def _jpeg(seed: int, side: int = 224) -> bytes:
    from PIL import Image

    random.seed(seed)
    img = Image.effect_noise((side, side), 40 + seed % 30).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_tiny_student_trains_in_bf16_autocast_with_fp32_master_weights(tmp_path: Path):
    import torch

    from kale_spark.config import load_config
    from kale_spark.student import captioner as SC
    from kale_spark.student import checkpoints
    from kale_spark.student import model as S
    from kale_spark.student.data import Example, write_snapshot
    from kale_spark.student.loop import TrainJob, train

    steps, batch = 40, 16
    scfg = load_config(
        None,
        [
            "student.train.use_gpu=true",
            "student.train.dtype=bfloat16",
            f"student.train.batch_size={batch}",
            f"student.train.max_steps={steps}",
            "student.train.warmup_steps=4",
            "student.train.lr=0.003",
            "student.train.eval_interval=20",
            "student.train.checkpoint_interval=20",
            "student.train.loader_workers=4",
            "student.train.gradient_checkpointing=true",
        ],
    ).student
    cache = tmp_path / "cache"
    base = S.build_base(scfg, cache / "base", cache_dir=cache)
    rows = [Example(f"u{i:05d}", _jpeg(i), f"alt {i}", CAPTIONS[i % 4]) for i in range(256)]
    uri = (tmp_path / "snapshot").as_uri()
    write_snapshot(uri, {"train": rows, "val": rows[:32]}, 32, key="gpu")
    job = TrainJob(scfg, str(tmp_path / "run"), str(base), uri, torch_threads=4)

    times: list[float] = []
    losses: list[float] = []

    def on_step(step: int, loss: float) -> None:
        torch.cuda.synchronize()
        times.append(time.perf_counter())
        losses.append(loss)
        if step == 30:
            raise KeyboardInterrupt("simulated crash after the step-20 checkpoint")

    with pytest.raises(KeyboardInterrupt):
        train(job, on_step=on_step)
    ckpt = checkpoints.load(job.checkpoint_root, 20)
    assert {v.dtype for v in ckpt["weights"].values()} == {torch.float32}  # master weights
    assert {v.dtype for v in ckpt["optimizer"]["state"][0].values() if v.dim()} == {torch.float32}
    assert "rank_0.cuda" in ckpt["rng"]

    result = train(job)
    assert result["resumed_from"] == 20 and result["steps"] == steps
    history = result["history"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    rate = batch * (len(times) - 5) / (times[-1] - times[4])  # steps 6..30, loader warm
    print(
        f"\ntiny student on {torch.cuda.get_device_name()}: bf16 autocast, fp32 master "
        f"weights, batch {batch}: {rate:.1f} samples/s; loss {losses[0]:.3f} -> "
        f"{losses[-1]:.3f}; validation loss {history[0]['val_loss']:.3f} -> "
        f"{history[-1]['val_loss']:.3f}"
    )
    spec = SC.student_spec(scfg, result["final_dir"], result["content_hash"])
    assert spec.dtype == "bfloat16"
    out = SC.StudentCaptioner.from_spec(spec).caption([_jpeg(1)], ["a red bus"])
    assert out[0].new_tokens >= 1
