"""Batches around model calls: token-budget batching, generate + decode, OOM splitting.

Where a model runs (device, threads, compilation) is models/device.py."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kale_spark.models.spec import GenerationParams

__all__ = [
    "Generated",
    "PrepareError",
    "generate_and_decode",
    "is_oom_error",
    "run_with_oom_split",
    "token_batches",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class PrepareError(ValueError):
    """A row the model's processor (or the image decoder) rejects: its row goes to
    quarantine with reason ``prepare_error``; the other rows of its batch go on."""


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
    cache_implementation: str | None = None,
) -> list[Generated]:
    """``model.generate`` on a left-padded batch; decode only the new tokens.

    ``inputs`` is the processor/tokenizer output (``input_ids``, ``attention_mask``,
    maybe ``pixel_values``); tensors are moved to the model's device, floating
    ones cast to its dtype. ``suppress_token_ids`` are never generated (e.g. a
    VLM's image placeholder token). ``cache_implementation`` (e.g. ``static``) is
    passed to ``generate``.
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
    if cache_implementation is not None:
        kwargs["cache_implementation"] = cache_implementation
    with torch.inference_mode():
        out = model.generate(**moved, **kwargs)
    prompt_len = moved["input_ids"].shape[1]
    new = out[:, prompt_len:].cpu()
    # Tokens up to and including the first end-of-sequence, computed on the tensor.
    if eos:
        is_eos = torch.isin(new, torch.tensor(sorted(eos), dtype=new.dtype))
        has_eos = is_eos.any(dim=1)
        first = is_eos.int().argmax(dim=1)
        n_new = torch.where(has_eos, first + 1, new.shape[1]).tolist()
        kept_len = torch.where(has_eos, first, new.shape[1]).tolist()
    else:
        n_new = kept_len = [new.shape[1]] * new.shape[0]
    rows = new.tolist()
    texts = tokenizer.batch_decode(
        [row[:k] for row, k in zip(rows, kept_len, strict=True)], skip_special_tokens=True
    )
    prompt_counts = moved["attention_mask"].sum(dim=1).tolist()
    return [
        Generated(text=text.strip(), prompt_tokens=int(n_prompt), new_tokens=int(n))
        for text, n_prompt, n in zip(texts, prompt_counts, n_new, strict=True)
    ]


def token_batches(
    costs: Sequence[int],
    *,
    new_tokens: int,
    batch_size: int,
    max_batch_tokens: int | None = None,
    sort: bool = False,
    beams: int = 1,
) -> list[list[int]]:
    """Group row indices into generation batches by token budget.

    ``costs`` are the rows' prompt tokens. A batch holds at most ``batch_size``
    rows and, with ``max_batch_tokens``, rows x ``beams`` x (its longest prompt +
    ``new_tokens``) <= ``max_batch_tokens`` (what a left-padded batch holds in its KV
    cache: beam search keeps ``beams`` sequences per row); a row over the budget alone
    gets a batch of its own. With ``sort`` the rows are taken longest first, so a
    batch holds prompts of similar length (little padding). Every index appears in
    exactly one batch.

    >>> token_batches([5, 50, 6, 48], new_tokens=10, batch_size=4, max_batch_tokens=120, sort=True)
    [[1, 3], [2, 0]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(costs)), key=lambda i: -costs[i]) if sort else range(len(costs))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        width = max(longest, costs[i]) + new_tokens
        full = len(current) >= batch_size or (
            max_batch_tokens is not None
            and (len(current) + 1) * max(1, beams) * width > max_batch_tokens
        )
        if current and full:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, costs[i])
    if current:
        batches.append(current)
    return batches


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
    fn: Callable[[list[T]], list[R]],
    items: Sequence[T],
    batch_size: int,
    first: Callable[[], list[R]] | None = None,
) -> list[R]:
    """``fn`` over ``items`` in batches of ``batch_size``; results in input order.

    ``fn`` takes a list and returns one result per item. When a batch runs out of
    (GPU) memory the batch size is halved and the same items retried, down to
    batches of one; an OOM on a single item is raised. The smaller size is kept
    for the rest of this call (the next batches are likely as large). ``first``, when
    given, runs the first batch instead of ``fn`` (inputs prepared ahead of time).
    This is the one place a batch splits on OOM.
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
            out = first() if first is not None and start == 0 and size == batch_size else fn(batch)
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
