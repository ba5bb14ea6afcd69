"""Batch helpers around model calls: generate + decode, OOM-splitting, threads, device."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kale_spark.models.spec import GenerationParams, ModelSpec

__all__ = [
    "Generated",
    "generate_and_decode",
    "is_oom_error",
    "pick_device",
    "run_with_oom_split",
    "set_torch_threads",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Generated:
    """One generated text: the decoded new tokens, stripped, and the token counts.

    ``prompt_tokens`` counts the row's input tokens (padding excluded; for a VLM
    including the image placeholder tokens); ``new_tokens`` counts the generated
    tokens up to and including the first end-of-sequence token.
    """

    text: str
    prompt_tokens: int
    new_tokens: int


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return set()
    return set(eos) if isinstance(eos, (list, tuple)) else {int(eos)}


def generate_and_decode(
    model: Any,
    tokenizer: Any,
    inputs: dict[str, Any],
    params: GenerationParams,
    *,
    suppress_token_ids: Collection[int] = (),
) -> list[Generated]:
    """``model.generate`` on a left-padded batch; decode only the new tokens.

    ``inputs`` is the processor/tokenizer output (``input_ids``, ``attention_mask``,
    maybe ``pixel_values``); tensors are moved to the model's device, floating
    ones cast to its dtype. ``suppress_token_ids`` are never generated (e.g. a
    VLM's image placeholder token).
    """
    import torch

    if tokenizer.padding_side != "left":
        raise ValueError("batched generation needs a left-padding tokenizer")
    moved: dict[str, Any] = {}
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(model.device)
            if value.is_floating_point():
                value = value.to(model.dtype)
        moved[name] = value
    eos = _eos_ids(model, tokenizer)
    kwargs = params.as_dict()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos, default=0)
    kwargs["pad_token_id"] = pad_id
    if eos:
        kwargs["eos_token_id"] = sorted(eos)
    if suppress_token_ids:
        kwargs["suppress_tokens"] = sorted(suppress_token_ids)
    with torch.inference_mode():
        out = model.generate(**moved, **kwargs)
    prompt_len = moved["input_ids"].shape[1]
    prompt_counts = moved["attention_mask"].sum(dim=1).tolist()
    results = []
    for row, n_prompt in zip(out[:, prompt_len:].tolist(), prompt_counts, strict=True):
        stop = next((i for i, t in enumerate(row) if t in eos), None)
        kept = row if stop is None else row[:stop]
        text = tokenizer.decode(kept, skip_special_tokens=True).strip()
        n_new = len(row) if stop is None else stop + 1
        results.append(Generated(text=text, prompt_tokens=int(n_prompt), new_tokens=n_new))
    return results


def is_oom_error(exc: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError`` or a RuntimeError saying "out of memory"."""
    import sys

    torch = sys.modules.get("torch")  # never import torch just to classify an error
    oom_cls = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if oom_cls is not None and isinstance(exc, oom_cls):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_cuda_cache() -> None:
    import gc
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def run_with_oom_split(
    fn: Callable[[list[T]], list[R]], items: Sequence[T], batch_size: int
) -> list[R]:
    """``fn`` over ``items`` in batches of ``batch_size``; results in input order.

    ``fn`` takes a list and returns one result per item. When a batch runs out of
    (GPU) memory the batch size is halved and the same items retried, down to
    batches of one; an OOM on a single item is raised. The smaller size is kept
    for the rest of this call (the next batches are likely as large).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    results: list[R] = []
    size = batch_size
    start = 0
    while start < len(items):
        batch = list(items[start : start + size])
        oom = False
        try:
            out = fn(batch)
        except Exception as exc:
            if not is_oom_error(exc) or len(batch) == 1:
                raise
            oom = True  # retry outside the except block so the traceback's tensors are freed
        if oom:
            size = max(1, len(batch) // 2)
            log.warning(
                "out of memory on a batch of %d; retrying in batches of %d", len(batch), size
            )
            _free_cuda_cache()
            continue
        if len(out) != len(batch):
            raise ValueError(f"batch function returned {len(out)} results for {len(batch)} items")
        results.extend(out)
        start += len(batch)
    return results


def set_torch_threads(n: int | None) -> None:
    """Cap torch's intra-op threads (e.g. to the task's cpus); ``None`` leaves it as is."""
    if n is None:
        return
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def _spark_task_gpu() -> str | None:
    """The first GPU address Spark assigned to the running task, if any."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return None
    ctx = TaskContext.get()
    if ctx is None:
        return None
    gpu = ctx.resources().get("gpu")
    if gpu is None or not gpu.addresses:
        return None
    return gpu.addresses[0]


def pick_device(spec: ModelSpec) -> str:
    """``"cpu"`` or ``"cuda:N"`` for ``spec.device``.

    ``cpu`` → cpu. ``cuda:N`` → as given. ``cuda`` / ``auto`` with CUDA present →
    the GPU Spark assigned to this task (``TaskContext.resources()["gpu"]``), else
    ``cuda:0``. ``auto`` without CUDA → cpu; ``cuda`` without CUDA is an error.
    """
    if spec.device == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        if spec.device == "auto":
            return "cpu"
        raise RuntimeError(
            f"device {spec.device!r} requested for {spec.id} but CUDA is not available"
        )
    if spec.device.startswith("cuda:"):
        return spec.device
    address = _spark_task_gpu()
    if address is not None:
        if address.isdigit() and int(address) < torch.cuda.device_count():
            return f"cuda:{int(address)}"
        # The cluster manager already isolated the GPU (CUDA_VISIBLE_DEVICES), so
        # Spark's address does not index the visible devices.
        log.info(
            "Spark GPU address %s is not a visible device index (%d devices); using cuda:0",
            address,
            torch.cuda.device_count(),
        )
    return "cuda:0"
