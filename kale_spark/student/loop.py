"""The student's training loop: one function that every training process runs.

``train(job)`` is what TorchDistributor starts in each process (rank and world from
torchrun's environment; DDP over gloo on CPUs, NCCL on GPUs, when the world has more
than one process). It

    1. opens the training snapshot's manifest and agrees on the step to start from:
       rank 0 finds the newest checkpoint and broadcasts its step with the name of a
       probe file it wrote beside the checkpoints. A rank that cannot open the
       snapshot or read the probe (no shared filesystem) fails with an error naming
       itself and its host, and so does every other rank, before any training;
    2. loads the composed base student (models/student.py) in float32, the master
       weights, freezes what ``student.model.train_parts`` does not train, turns on
       gradient checkpointing if asked; AdamW over the trainable weights (its state
       float32 too); a resume loads the checkpoint's weights and optimizer state;
    3. feeds the rank its equal share of the snapshot through a DataLoader with
       ``student.train.loader_workers`` processes (training/data.py), from the position
       the checkpoint recorded for this rank;
    4. trains to ``student.train.max_steps``: the forward under autocast in
       ``student.train.dtype`` (bfloat16; float32 = no autocast), the loss over the
       caption's tokens only (``caption_loss``), DDP averaging the gradients,
       clipping, the learning rate of the step (``lr_at``: linear warmup over
       ``warmup_steps``, then cosine to 0), an AdamW step;
    5. every ``eval_interval`` steps logs each rank's mean train loss, their mean
       and the validation loss (each rank's validation rows, averaged);
    6. checkpoints every ``checkpoint_interval`` steps and at the end: trainable
       weights, optimizer state, and for each rank its read position, the rows it has
       trained on and its random number generator states;
    7. on rank 0, saves the final student (LoRA merged) with ``save_pretrained`` into
       ``<run_dir>/final`` with ``provenance.json`` beside the weights.

Determinism: a resumed run takes exactly the steps an uninterrupted run takes. The
data order is a function of the seed and the epoch, and a rank's place in it is its
checkpointed position (data.py); rank ``r`` seeds torch with ``seed + r`` and every
checkpoint holds each rank's torch RNG state (CPU and CUDA: dropout), restored on
resume after the loader is made; the loader draws its worker seeds from a generator
of its own, not from torch's global one; the learning rate is a function of the
step alone. Every rank returns rank 0's plain dict: steps, the step it resumed
from, the history, each rank's rows and a checksum of each rank's weights (equal when the
gradients were averaged), the losses of every step of every rank this run took, the
final directory and its content hash.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kale_spark.lake.files import atomic_dir
from kale_spark.student import checkpoints
from kale_spark.student.data import RankPlan, SnapshotBatches, loader, read_manifest, split_groups

__all__ = ["BatchEncoder", "RankError", "TrainJob", "evaluate", "lr_at", "train", "train_entry"]

log = logging.getLogger(__name__)
# Tests only: the step after whose checkpoint training holds until killed.
HOLD_ENV = "KALE_TEST_HOLD_AFTER_CHECKPOINT"

FINAL = "final"
PROVENANCE = "provenance.json"


class RankError(RuntimeError):
    """A training process cannot see what every process must see (the snapshot, the
    checkpoint directory); the message names the ranks and their hosts."""


@dataclass(frozen=True)
class TrainJob:
    """Everything a training process needs: small and picklable (no Spark, no model)."""

    student: Any  # config.StudentConfig
    run_dir: str
    base_dir: str
    snapshot: str  # the snapshot's URI, with its scheme (training/data.py)
    torch_threads: int = 1
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def checkpoint_root(self) -> Path:
        return Path(self.run_dir) / "checkpoints"

    @property
    def final_dir(self) -> Path:
        return Path(self.run_dir) / FINAL


@dataclass(frozen=True)
class BatchEncoder:
    """Examples → a training batch (models.student.encode_examples) plus its row count:
    what the loader's workers run, picklable."""

    processor: Any
    prompt_id: str
    max_input_tokens: int
    max_caption_tokens: int

    def __call__(self, examples: list) -> dict[str, Any]:
        from kale_spark.student.encoding import encode_examples

        batch = encode_examples(
            self.processor,
            [e.image for e in examples],
            [e.alt_text for e in examples],
            [e.caption for e in examples],
            prompt_id=self.prompt_id,
            max_input_tokens=self.max_input_tokens,
            max_caption_tokens=self.max_caption_tokens,
        )
        batch["rows"] = len(examples)
        return batch


def lr_at(step: int, s: Any) -> float:
    """The learning rate of optimizer step ``step`` (1-based): linear warmup to
    ``s.lr`` over ``s.warmup_steps`` steps, then a cosine decay towards 0 at
    ``s.max_steps`` (the last step still moves)."""
    t = step - 1
    if t < s.warmup_steps:
        return s.lr * (t + 1) / s.warmup_steps
    progress = (t - s.warmup_steps) / max(1, s.max_steps - s.warmup_steps)
    return s.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


# ------------------------------------------------------------------ processes, ranks


def _distributed(job: TrainJob) -> tuple[int, int, int]:
    """(rank, world, local rank) from torchrun's environment; the process group if > 1."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1:
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            nccl = job.student.train.use_gpu and torch.cuda.is_available()
            dist.init_process_group("nccl" if nccl else "gloo")
    return rank, world, local


def _device(job: TrainJob, local_rank: int) -> str:
    import torch

    if job.student.train.use_gpu and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return "cpu"


def _gather(obj: Any, world: int) -> list[Any]:
    """``obj`` of every rank, in rank order (on every rank)."""
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _open_snapshot(job: TrainJob, rank: int) -> tuple[dict[str, Any] | None, str]:
    try:
        manifest = read_manifest(job.snapshot)
    except Exception as exc:  # any failure to open is this rank's to report
        return None, f"{job.snapshot} ({type(exc).__name__}: {exc})"
    return manifest, "" if manifest is not None else f"{job.snapshot} (no manifest there)"


def _agree_on_start(job: TrainJob, rank: int, world: int) -> tuple[dict[str, Any], int]:
    """(the snapshot's manifest, the step to start from), the same on every rank."""
    root = job.checkpoint_root
    step, probe, nonce = 0, "", uuid.uuid4().hex
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        step = checkpoints.latest(root) or 0
        probe = f".probe-{nonce}"
        (root / probe).write_text(nonce)
    if world > 1:
        import torch.distributed as dist

        shared = [step, probe, nonce]
        dist.broadcast_object_list(shared, src=0)
        step, probe, nonce = shared
    manifest, snapshot_error = _open_snapshot(job, rank)
    try:
        sees_root = (root / probe).read_text() == nonce
    except OSError:
        sees_root = False
    views = _gather((socket.gethostname(), snapshot_error, sees_root), world)
    if rank == 0:
        (root / probe).unlink(missing_ok=True)
    _fail_on_blind_ranks(job, views)
    assert manifest is not None
    return manifest, step


def _fail_on_blind_ranks(job: TrainJob, views: list[tuple[str, str, bool]]) -> None:
    problems = [
        f"rank {r} on {host} cannot open the training snapshot {error}"
        for r, (host, error, _) in enumerate(views)
        if error
    ]
    problems += [
        f"rank {r} on {host} cannot see the checkpoint directory {job.checkpoint_root} "
        "that rank 0 writes: checkpoints and resume need a directory every rank reads "
        "(a shared or mounted path, e.g. /dbfs/..., in student.train.checkpoint_dir)"
        for r, (host, _, sees) in enumerate(views)
        if not sees
    ]
    if problems:
        raise RankError("; ".join(problems))


def _rng_state(device: str) -> dict[str, Any]:
    import torch

    state = {"cpu": torch.get_rng_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(rng: dict[str, Any], rank: int, device: str) -> None:
    import torch

    torch.set_rng_state(rng[f"rank_{rank}.cpu"])
    if device.startswith("cuda") and f"rank_{rank}.cuda" in rng:
        torch.cuda.set_rng_state(rng[f"rank_{rank}.cuda"], device)


# ------------------------------------------------------------------- model, steps


def _autocast(s: Any, device: str) -> Any:
    import torch

    if s.dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)


def _to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    import torch

    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
        if k != "rows"
    }


def _setup(job: TrainJob, device: str, step: int):
    """(model, processor, optimizer, checkpoint or None) at ``step``."""
    import torch

    from kale_spark.student.model import (
        apply_train_parts,
        enable_gradient_checkpointing,
        load_student,
    )

    s = job.student.train
    # float32 master weights whatever student.train.dtype says: bf16 is for the forward only.
    model, processor = load_student(job.base_dir, dtype="float32", device=device)
    model = apply_train_parts(model, job.student.model)
    if s.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr_at(1, s), weight_decay=s.weight_decay)
    if step == 0:
        return model, processor, optimizer, None
    ckpt = checkpoints.load(job.checkpoint_root, step, device=device)
    missing = set(n for n, p in model.named_parameters() if p.requires_grad) - set(ckpt["weights"])
    if missing:
        raise ValueError(f"checkpoint step {step} lacks trainable weights: {sorted(missing)[:3]}")
    model.load_state_dict(ckpt["weights"], strict=False)
    optimizer.load_state_dict(ckpt["optimizer"])
    log.info("resuming from checkpoint step %d", step)
    return model, processor, optimizer, ckpt


def _encoder(job: TrainJob, processor: Any) -> BatchEncoder:
    spec, s = job.student.caption, job.student.train
    return BatchEncoder(processor, spec.prompt_id, spec.max_input_tokens, s.max_caption_tokens)


def evaluate(job: TrainJob, model: Any, processor: Any, device: str, rank=0, world=1) -> float:
    """Mean caption-token loss over this rank's first ``max_val_batches`` validation
    batches, averaged over ranks (NaN without validation rows)."""
    import torch

    from kale_spark.student.model import caption_loss

    s = job.student.train
    manifest = read_manifest(job.snapshot) or {}
    groups = split_groups(manifest, "val") if manifest else []
    plan = RankPlan(groups, rank, world, s.batch_size, s.seed, shuffle=False, equal=False)
    batches = SnapshotBatches(job.snapshot, plan, _encoder(job, processor))
    total, n = 0.0, 0
    model.eval()
    with torch.no_grad(), _autocast(s, device):
        for b in range(min(plan.batches_per_epoch, s.max_val_batches)):
            total += float(caption_loss(model, _to_device(batches[b], device)))
            n += 1
    model.train()
    return _mean_over_ranks(total, n, world, device)


def _mean_over_ranks(total: float, n: int, world: int, device: str) -> float:
    if world > 1:
        import torch
        import torch.distributed as dist

        t = torch.tensor([total, float(n)], device=device, dtype=torch.float64)
        dist.all_reduce(t)
        total, n = float(t[0]), int(t[1])
    return total / n if n else math.nan


def _loss_module(model: Any) -> Any:
    """``model`` behind a module whose forward is the caption loss, so DDP (which must
    see the forward) wraps the whole loss."""
    import torch

    from kale_spark.student.model import caption_loss

    class CaptionLoss(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, batch: dict[str, Any]) -> Any:
            return caption_loss(self.inner, batch)

    return CaptionLoss(model)


def _checksum(model: Any) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters() if p.requires_grad))


# ------------------------------------------------------------------------ the loop


def train(job: TrainJob, on_step: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train (or resume) to ``max_steps``; see the module docstring. ``on_step(step,
    loss)`` is called after each optimizer step (after that step's checkpoint)."""
    import torch

    from kale_spark.models.device import set_torch_threads

    if job.student.train.dtype == "float16":
        raise ValueError(
            "student.train.dtype float16 does not train (it needs loss scaling): use bfloat16 "
            "(an autocast forward over float32 weights) or float32"
        )
    set_torch_threads(job.torch_threads)
    rank, world, local = _distributed(job)
    device = _device(job, local)
    manifest, start = _agree_on_start(job, rank, world)
    torch.manual_seed(job.student.train.seed + rank)
    model, processor, optimizer, ckpt = _setup(job, device, start)
    loop = _Loop(job, model, processor, optimizer, device, rank, world, manifest, ckpt)
    return loop.run(start, on_step)


class _Loop:
    """The state one training process carries between steps."""

    def __init__(self, job, model, processor, optimizer, device, rank, world, manifest, ckpt):
        s = self.s = job.student.train
        self.job, self.model, self.processor, self.optimizer = job, model, processor, optimizer
        self.device, self.rank, self.world, self.manifest = device, rank, world, manifest
        self.plan = RankPlan(split_groups(manifest, "train"), rank, world, s.batch_size, s.seed)
        if self.plan.share == 0:
            rows = manifest["splits"]["train"]["rows"]
            raise ValueError(f"{rows} training rows cannot feed {world} ranks")
        extra = ckpt["extra"] if ckpt else {}
        if ckpt and extra.get("world_size", 1) != world:
            raise ValueError(f"checkpoint of {extra.get('world_size')} ranks, now {world}")
        self.history: list[dict[str, Any]] = list(extra.get("history", []))
        mine = extra["ranks"][rank] if ckpt else {"samples": 0}
        self.samples = int(mine["samples"])
        if ckpt and self.plan.seek(mine["position"]) != ckpt["step"]:
            raise ValueError(f"rank {rank}'s checkpointed position is not step {ckpt['step']}")
        self.rng = ckpt["rng"] if ckpt else None
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.forward = _loss_module(model)
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [int(device.split(":")[1])] if device.startswith("cuda") else None
            self.forward = DistributedDataParallel(self.forward, device_ids=ids)
        self.recent: list[tuple[int, float]] = []  # this rank's steps since the last eval
        self.step_losses: dict[int, list[float]] = {}

    def evaluate(self) -> float:
        return evaluate(self.job, self.model, self.processor, self.device, self.rank, self.world)

    def _batches(self, start: int) -> Any:
        s = self.s
        batches = SnapshotBatches(self.job.snapshot, self.plan, _encoder(self.job, self.processor))
        return iter(
            loader(
                batches,
                start,  # one batch per step: after step k a rank has read k batches
                workers=s.loader_workers,
                prefetch=s.loader_prefetch,
                pin_memory=self.device.startswith("cuda"),
                seed=s.seed + self.rank,
            )
        )

    def run(self, start: int, on_step: Callable[[int, float], None] | None) -> dict[str, Any]:
        if start == 0:
            self._log_point(0, [], self.evaluate())
        batches = self._batches(start)
        if self.rng is not None:  # after the loader: from here on only the steps draw
            _set_rng_state(self.rng, self.rank, self.device)
        self.model.train()
        for step in range(start + 1, self.s.max_steps + 1):
            batch = next(batches)
            loss = self.step(step, _to_device(batch, self.device))
            self.samples += batch["rows"]
            self.recent.append((step, loss))
            self.after_step(step)
            if on_step is not None:
                on_step(step, loss)
        del batches  # stops the loader's workers
        return self.result(start)

    def step(self, step: int, batch: dict[str, Any]) -> float:
        import torch

        with _autocast(self.s, self.device):
            loss = self.forward(batch)
        loss.backward()  # DDP averages the gradients over the ranks here
        torch.nn.utils.clip_grad_norm_(self.params, self.s.max_grad_norm)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, self.s)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def after_step(self, step: int) -> None:
        """The eval point and the checkpoint that fall on ``step``, if any."""
        s = self.s
        last = step == s.max_steps
        if step % s.eval_interval == 0 or last:
            views = _gather(self.recent, self.world)
            for i, (st, _) in enumerate(views[0]):
                self.step_losses[st] = [view[i][1] for view in views]
            self.recent = []
            self._log_point(step, views, self.evaluate())
        if step % s.checkpoint_interval == 0 or last:
            self._checkpoint(step)

    def _log_point(self, step: int, views: list, val_loss: float) -> None:
        by_rank = [sum(v for _, v in view) / len(view) if view else math.nan for view in views]
        train_loss = sum(by_rank) / len(by_rank) if by_rank else math.nan
        point = {"step": step, "train_loss": train_loss, "val_loss": val_loss}
        if by_rank:
            point["train_loss_by_rank"] = by_rank
            log.info("rank %d step %d: train loss %.4f", self.rank, step, by_rank[self.rank])
        self.history.append(point)
        if self.rank == 0:
            log.info("step %d: train loss %.4f, validation loss %.4f", step, train_loss, val_loss)

    def _checkpoint(self, step: int) -> None:
        from kale_spark.student.model import trainable_state

        mine = {
            "position": self.plan.position(step).to_dict(),
            "samples": self.samples,
            "rng": _rng_state(self.device),
        }
        views = _gather(mine, self.world)
        if self.rank != 0:
            return
        rng = {f"rank_{r}.{k}": v for r, view in enumerate(views) for k, v in view["rng"].items()}
        extra = {
            "history": self.history,
            "world_size": self.world,
            "ranks": [{"position": v["position"], "samples": v["samples"]} for v in views],
            "snapshot": self.manifest.get("key"),
        }
        checkpoints.save(
            self.job.checkpoint_root,
            step,
            trainable_state(self.model),
            self.optimizer.state_dict(),
            extra,
            keep=self.s.keep_checkpoints,
            rng=rng,
        )
        _hold_if_asked(step)

    def result(self, start: int) -> dict[str, Any]:
        views = _gather({"samples": self.samples, "checksum": _checksum(self.model)}, self.world)
        out = {
            "steps": self.s.max_steps,
            "resumed_from": start,
            "history": self.history,
            "world_size": self.world,
            "samples": [v["samples"] for v in views],
            "replica_checksums": [v["checksum"] for v in views],
            "step_losses": self.step_losses,
        }
        if self.rank == 0:
            done = {"world_size": self.world, "samples_by_rank": out["samples"]}
            out.update(_finish(self.job, self.model, self.history, done))
        if self.world > 1:
            import torch.distributed as dist

            # Every rank returns rank 0's result: TorchDistributor's local mode keeps
            # whichever process writes its output file last.
            shared = [out]
            dist.broadcast_object_list(shared, src=0)
            out = shared[0]
        return out


def _finish(job: TrainJob, model: Any, history: list, done: dict[str, Any]) -> dict[str, Any]:
    """Save the final student (merged) + processor + provenance; return where and its hash."""
    from transformers import AutoProcessor

    from kale_spark.student.captioner import content_hash
    from kale_spark.student.model import exportable

    final = job.final_dir
    with atomic_dir(final) as tmp:
        exportable(model).save_pretrained(tmp, safe_serialization=True)
        AutoProcessor.from_pretrained(job.base_dir).save_pretrained(tmp)
        digest = content_hash(tmp)
        provenance = {
            **job.provenance,
            **done,
            "steps": job.student.train.max_steps,
            "history": history,
            "content_hash": digest,
            "student": asdict(job.student),
        }
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2, sort_keys=True, default=str))
    log.info("final student: %s (%s)", final, digest)
    return {"final_dir": str(final), "content_hash": digest}


def _hold_if_asked(step: int) -> None:
    """Tests only: with HOLD_ENV set to this step, stop here, the checkpoint written,
    until the process is killed (a kill test's deterministic point mid-training)."""
    if os.environ.get(HOLD_ENV) != str(step):
        return
    import time

    log.warning("%s=%d: holding after the checkpoint until killed", HOLD_ENV, step)
    while True:
        time.sleep(1)


def _exit_with_parent(interval_s: float = 1.0) -> None:
    """End this process when its parent (torchrun's agent) is gone. torchrun starts
    each rank in a session of its own, so a SIGKILL of the job (driver, Spark task,
    agent) would leave the ranks training, and writing checkpoints, on their own."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        log.error("the training launcher (pid %d) is gone: this rank stops", parent)
        os._exit(1)  # checkpoints are renamed into place: none is left half written

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def train_entry(job: TrainJob) -> dict[str, Any]:
    """What TorchDistributor runs in each process: logging set up, then ``train``."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s rank{os.environ.get('RANK', '0')} %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    _exit_with_parent()
    return train(job)
