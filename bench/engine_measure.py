"""How bench/engine_gpu.py measures one decoding option: rows through the project's
engine (models/inference.py ``run_partition``) or through transformers' continuous
batching, with the GPU's busy share and memory peak over the timed window.

Busy share, by the first method that works: NVML's utilisation sampled every 50 ms
(``pynvml``), else ``torch.cuda`` events around each model call (an upper bound: the
launch gaps inside ``generate`` count as busy), else on a CPU the wall time inside the
model calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd

from kale_spark.models.inference import run_partition

__all__ = ["BusyMeter", "measure_continuous", "measure_engine", "memory_peak_gib", "sync"]

PREPARE_THREADS_GPU = 8  # JPEG decode + preprocessing threads feeding one GPU


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def memory_reset() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def memory_peak_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


class BusyMeter:
    """The share of a window's wall time the device was busy (see the module doc)."""

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        self.method = "cpu: wall time inside the model calls (no GPU)"
        self._nvml = None
        if self.cuda:
            self.method = "torch.cuda events around each model call (upper bound)"
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = (pynvml, pynvml.nvmlDeviceGetHandleByIndex(0))
                self.method = "nvml utilization.gpu sampled every 50 ms (pynvml)"
            except Exception:  # no pynvml, or NVML refuses: the events method
                self._nvml = None

    def start(self) -> None:
        self._samples: list[int] = []
        self._spans: list[Any] = []
        self._inside = 0.0
        self._stop = threading.Event()
        self._start = time.perf_counter()
        if self._nvml is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        pynvml, handle = self._nvml
        while not self._stop.wait(0.05):
            self._samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

    def timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with its time on the device recorded (events, or wall on a CPU)."""

        def run(*args: Any, **kwargs: Any) -> Any:
            import torch

            if self.cuda:
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(True)
                begin.record()
                out = fn(*args, **kwargs)
                end.record()
                self._spans.append((begin, end))
                return out
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            self._inside += time.perf_counter() - t
            return out

        return run

    def stop(self) -> float | None:
        sync()
        wall = time.perf_counter() - self._start
        self._stop.set()
        if self._nvml is not None:
            self._thread.join()
            return (
                round(sum(self._samples) / len(self._samples) / 100, 3) if self._samples else None
            )
        if self.cuda:
            busy = sum(b.elapsed_time(e) for b, e in self._spans) / 1000
            return round(min(1.0, busy / wall), 3) if wall > 0 else None
        return round(self._inside / wall, 3) if wall > 0 else None


def _run_frames(engine: Any, spec: Any, frames: Iterator[pd.DataFrame]) -> pd.DataFrame:
    import torch

    parts = list(
        run_partition(
            engine,
            frames,
            batch_size=spec.batch_size,
            max_batch_tokens=spec.max_batch_tokens,
            new_tokens=spec.generation.max_new_tokens,
            beams=spec.generation.num_beams,
            prepare_threads=PREPARE_THREADS_GPU if torch.cuda.is_available() else 1,
        )
    )
    return pd.concat(parts, ignore_index=True)


def _counted(out: pd.DataFrame) -> tuple[int, int, int]:
    """(rows generated, rows with empty text, rows failed). Random weights emit ids the
    locally trained tokenizer lacks, so empty text is a generated row, not a failure."""
    empty = int((out["reason"] == "empty_output").sum())
    failed = int(out["reason"].notna().sum()) - empty
    return len(out) - failed, empty, failed


def measure_engine(
    engine: Any,
    spec: Any,
    frame: Callable[[], pd.DataFrame],
    slice_s: float,
    warmups: int = 1,
) -> dict[str, Any]:
    """Rows/s of ``engine`` over batches from ``frame()``: ``warmups`` batches untimed
    (compilation, allocator), then as many batches as the last warm-up says fit in
    ``slice_s``, at least one."""
    start = time.perf_counter()
    for _ in range(warmups):
        t = time.perf_counter()
        _run_frames(engine, spec, iter([frame()]))
        per_batch = time.perf_counter() - t
    left = slice_s - (time.perf_counter() - start)
    batches = max(1, min(64, int(left / max(per_batch, 1e-3))))
    meter = BusyMeter()
    engine.run = meter.timed(type(engine).run.__get__(engine))
    memory_reset()
    meter.start()
    t = time.perf_counter()
    out = _run_frames(engine, spec, (frame() for _ in range(batches)))
    sync()
    wall = time.perf_counter() - t
    busy = meter.stop()
    del engine.run
    rows, empty, failed = _counted(out)
    return {
        "rows_per_s": round(rows / wall, 3),
        "rows": rows,
        "batches": batches,
        "wall_s": round(wall, 2),
        "warmup_s": round(t - start, 2),
        "busy_share": busy,
        "busy_method": meter.method,
        "gpu_mem_peak_gib": memory_peak_gib(),
        "empty_text_rows": empty,
        "failed_rows": failed,
        "texts": out["text"].head(4).tolist(),
    }


def measure_continuous(
    model: Any, tokenizer: Any, ids: list[list[int]], role: Any, slice_s: float, share: bool
) -> dict[str, Any]:
    """Rows/s of ``model.generate_batch`` (transformers' continuous batching) over token-id
    rows: one warm-up call of a batch, then a call sized to about half of ``slice_s``.
    ``share``: its paged cache shares the blocks of a common prefix (``allow_block_sharing``)."""
    import torch
    from transformers import GenerationConfig
    from transformers.generation import ContinuousBatchingConfig

    gen = GenerationConfig(
        max_new_tokens=role.new_tokens,
        min_new_tokens=role.new_tokens,
        do_sample=False,
        num_beams=1,  # continuous batching has no beam search
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # On a CPU its paged cache would take most of the host's memory: a few blocks.
    small = {} if torch.cuda.is_available() else {"num_blocks": 32, "max_batch_tokens": 1024}
    config = ContinuousBatchingConfig(allow_block_sharing=share, **small)
    # One manager for both calls: its warm-up (CUDA graph capture) is paid once, untimed.
    kwargs = dict(generation_config=gen, continuous_batching_config=config,
                  persistent_manager=True, warmup=torch.cuda.is_available())  # fmt: skip
    start = time.perf_counter()
    try:
        return _continuous_timed(model, ids, role, slice_s, kwargs, start)
    finally:
        destroy = getattr(model, "destroy_cached_continuous_batching_manager", None)
        if destroy is not None:
            destroy()


def _continuous_timed(model, ids, role, slice_s, kwargs, start) -> dict[str, Any]:
    model.generate_batch(inputs=ids[: role.batch_size], **kwargs)
    per_batch = time.perf_counter() - start
    n = role.batch_size * max(1, min(16, int(slice_s / 2 / max(per_batch, 1e-3))))
    rows = [ids[i % len(ids)] for i in range(n)]
    meter = BusyMeter()
    memory_reset()
    meter.start()
    t = time.perf_counter()
    out = meter.timed(model.generate_batch)(inputs=rows, **{**kwargs, "warmup": False})
    sync()
    wall = time.perf_counter() - t
    busy = meter.stop()
    failed = sum(1 for o in out.values() if getattr(o, "error", None))
    first = next(iter(out.values()), None)
    return {
        "rows_per_s": round((len(out) - failed) / wall, 3),
        "rows": len(out) - failed,
        "wall_s": round(wall, 2),
        "warmup_s": round(t - start, 2),
        "busy_share": busy,
        "busy_method": meter.method,
        "gpu_mem_peak_gib": memory_peak_gib(),
        "failed_rows": failed + (n - len(out)),
        "new_tokens_first_row": len(first.generated_tokens) if first is not None else None,
    }
