"""Where a model runs: the device (the GPU Spark assigned to the task, or the CPU), torch's
intra-op threads, and ``torch.compile``. Loading (models/loading.py) and the engines call
these; torch is imported inside each function, never at import time."""

from __future__ import annotations

import logging
from typing import Any

from kale_spark.models.spec import ModelSpec

__all__ = ["compiled", "pick_device", "set_torch_threads"]

log = logging.getLogger(__name__)


def compiled(pair: tuple[Any, Any], spec: ModelSpec) -> tuple[Any, Any]:
    """``(model, processor)`` with the model's forward under ``torch.compile`` if
    ``spec.compile`` (dynamic shapes unless the KV cache is static)."""
    if spec.compile:
        import torch

        model = pair[0]
        model.forward = torch.compile(model.forward, dynamic=spec.cache_implementation != "static")
    return pair


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
