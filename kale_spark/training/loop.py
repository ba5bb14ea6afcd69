"""The student's training loop: one function that every training process runs.

``train(job)`` is what TorchDistributor starts in each process (rank and world from
torchrun's environment; DDP when the world has more than one process). It

    1. loads the composed base student (models/student.py) through the shared loader
       and freezes what ``student.train_parts`` does not train;
    2. resumes from the newest checkpoint under ``<run_dir>/checkpoints`` if there is
       one: trainable weights, optimizer state, step, loss history - and the data
       stream continues with the batch after that step;
    3. trains to ``student.max_steps``: AdamW, gradient clipping; the train loss
       (mean over the interval) and the validation loss are logged every
       ``eval_interval`` steps (step 0 = before training) into the log and the history;
    4. checkpoints every ``checkpoint_interval`` steps and at the end;
    5. on rank 0, saves the final student (LoRA merged) with ``save_pretrained`` into
       ``<run_dir>/final`` with ``provenance.json`` beside the weights.

It returns (rank 0) a plain dict: steps, the step it resumed from, the history, the
final directory and its content hash.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kale_spark.training import checkpoints
from kale_spark.training.data import batches

__all__ = ["TrainJob", "evaluate", "train", "train_entry"]

log = logging.getLogger(__name__)

FINAL = "final"
PROVENANCE = "provenance.json"


@dataclass(frozen=True)
class TrainJob:
    """Everything a training process needs: small and picklable (no Spark, no model)."""

    student: Any  # config.StudentConfig
    run_dir: str
    base_dir: str
    train_data: str
    val_data: str
    torch_threads: int = 1
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def checkpoint_root(self) -> Path:
        return Path(self.run_dir) / "checkpoints"

    @property
    def final_dir(self) -> Path:
        return Path(self.run_dir) / FINAL


def _distributed() -> tuple[int, int, int]:
    """(rank, world, local rank) from torchrun's environment; the process group if > 1."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return rank, world, local


def _device(job: TrainJob, local_rank: int) -> str:
    import torch

    if job.student.use_gpu and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return "cpu"


def _encode(job: TrainJob, processor: Any, batch: list, device: str) -> dict[str, Any]:
    from kale_spark.models.student import encode_examples

    s = job.student
    enc = encode_examples(
        processor,
        [e.image for e in batch],
        [e.alt_text for e in batch],
        [e.caption for e in batch],
        prompt_id=s.prompt_id,
        max_input_tokens=s.max_input_tokens,
        max_caption_tokens=s.max_caption_tokens,
    )
    from kale_spark.models.loading import torch_dtype

    dtype = torch_dtype(s.dtype)  # pixel values in the weights' dtype (bf16 on GPUs)
    return {
        k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in enc.items()
    }


def evaluate(job: TrainJob, model: Any, processor: Any, device: str, rank=0, world=1) -> float:
    """Mean caption-token loss over the first ``max_val_batches`` validation batches
    (NaN without validation rows); averaged over ranks."""
    import torch

    model.eval()
    total, n = 0.0, 0
    stream = batches(job.val_data, job.student.batch_size, rank=rank, world=world, epochs=1)
    with torch.no_grad():
        for i, batch in enumerate(stream):
            if i >= job.student.max_val_batches:
                break
            total += float(model(**_encode(job, processor, batch, device)).loss)
            n += 1
    model.train()
    return _mean_over_ranks(total, n, world, device)


def _mean_over_ranks(total: float, n: int, world: int, device: str) -> float:
    if world > 1:
        import torch
        import torch.distributed as dist

        t = torch.tensor([total, float(n)], device=device)
        dist.all_reduce(t)
        total, n = float(t[0]), int(t[1])
    return total / n if n else math.nan


def _setup(job: TrainJob, device: str):
    """(model, processor, optimizer) at the newest checkpoint, and that checkpoint's
    step and extra state (0 and {} when starting fresh)."""
    import torch

    from kale_spark.models.student import apply_train_parts, load_student

    s = job.student
    torch.manual_seed(s.seed)
    model, processor = load_student(job.base_dir, dtype=s.dtype, device=device)
    model = apply_train_parts(model, s)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    step = checkpoints.latest(job.checkpoint_root)
    if step is None:
        return model, processor, optimizer, 0, {}
    ckpt = checkpoints.load(job.checkpoint_root, step, device=device)
    missing = set(n for n, p in model.named_parameters() if p.requires_grad) - set(ckpt["weights"])
    if missing:
        raise ValueError(f"checkpoint step {step} lacks trainable weights: {sorted(missing)[:3]}")
    model.load_state_dict(ckpt["weights"], strict=False)
    optimizer.load_state_dict(ckpt["optimizer"])
    log.info("resuming from checkpoint step %d", step)
    return model, processor, optimizer, step, ckpt["extra"]


def _log_point(history: list, step: int, train_loss: float, val_loss: float) -> None:
    history.append({"step": step, "train_loss": train_loss, "val_loss": val_loss})
    log.info("step %d: train loss %.4f, validation loss %.4f", step, train_loss, val_loss)


def train(job: TrainJob, on_step: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train (or resume) to ``max_steps``; see the module docstring. ``on_step(step,
    loss)`` is called after each optimizer step (after that step's checkpoint)."""
    import torch

    from kale_spark.models.batching import set_torch_threads

    set_torch_threads(job.torch_threads)
    rank, world, local = _distributed()
    device = _device(job, local)
    model, processor, optimizer, start, extra = _setup(job, device)
    loop = _Loop(
        job, model, processor, optimizer, device, rank, world, list(extra.get("history", []))
    )
    s = job.student
    ddp = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[local] if device != "cpu" else None)
    if start == 0:
        _log_point(loop.history, 0, math.nan, loop.evaluate())
    stream = batches(job.train_data, s.batch_size, rank=rank, world=world, skip_batches=start)
    interval: list[float] = []
    model.train()
    for step in range(start + 1, s.max_steps + 1):
        batch = next(stream, None)
        if batch is None:
            raise ValueError(f"no training rows in {job.train_data}")
        loss = ddp(**_encode(job, processor, batch, device)).loss
        loss.backward()
        params = [p for p in model.parameters() if p.requires_grad]
        torch.nn.utils.clip_grad_norm_(params, s.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step_loss = float(loss.detach())
        interval.append(step_loss)
        loop.after_step(step, interval)
        if on_step is not None:
            on_step(step, step_loss)
        if step % s.eval_interval == 0:
            interval = []
    result = {"steps": s.max_steps, "resumed_from": start, "history": loop.history}
    if rank == 0:
        result.update(_finish(job, model, loop.history))
    if world > 1:
        torch.distributed.barrier()
    return result


@dataclass
class _Loop:
    """The state one training process carries between steps."""

    job: TrainJob
    model: Any
    processor: Any
    optimizer: Any
    device: str
    rank: int
    world: int
    history: list[dict[str, Any]]

    def evaluate(self) -> float:
        return evaluate(self.job, self.model, self.processor, self.device, self.rank, self.world)

    def after_step(self, step: int, interval: list[float]) -> None:
        """The eval point and the checkpoint that fall on ``step``, if any."""
        from kale_spark.models.student import trainable_state

        s = self.job.student
        last = step == s.max_steps
        if step % s.eval_interval == 0 or last:
            val = self.evaluate()
            train_loss = _mean_over_ranks(sum(interval), len(interval), self.world, self.device)
            _log_point(self.history, step, train_loss, val)
        if self.rank == 0 and (step % s.checkpoint_interval == 0 or last):
            checkpoints.save(
                self.job.checkpoint_root,
                step,
                trainable_state(self.model),
                self.optimizer.state_dict(),
                {"history": self.history},
                keep=s.keep_checkpoints,
            )


def _finish(job: TrainJob, model: Any, history: list) -> dict[str, Any]:
    """Save the final student (merged) + processor + provenance; return where and its hash."""
    from transformers import AutoProcessor

    from kale_spark.models.student import content_hash, exportable

    final = job.final_dir
    tmp = Path(tempfile.mkdtemp(prefix=".final.", dir=job.run_dir))
    try:
        exportable(model).save_pretrained(tmp, safe_serialization=True)
        AutoProcessor.from_pretrained(job.base_dir).save_pretrained(tmp)
        digest = content_hash(tmp)
        provenance = {
            **job.provenance,
            "steps": job.student.max_steps,
            "history": history,
            "content_hash": digest,
            "student": asdict(job.student),
        }
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2, sort_keys=True, default=str))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; Spark workers read it
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("final student: %s (%s)", final, digest)
    return {"final_dir": str(final), "content_hash": digest}


def train_entry(job: TrainJob) -> dict[str, Any]:
    """What TorchDistributor runs in each process: logging set up, then ``train``."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s rank{os.environ.get('RANK', '0')} %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    return train(job)
