"""Prefix sharing for fusion: every fusion prompt starts with the same templated
instruction, so its KV cache is computed once and passed to ``generate`` as
``past_key_values`` (one copy per row and beam); only the rows' own tokens are
prefilled. The rows' tokens are left-padded *after* the shared prefix (the attention
mask zeroes the gap; positions come from the mask, so they equal the unshared run's).
"""

from __future__ import annotations

import copy
from typing import Any

from kale_spark.models.inference import FuseEngine, one_by_one

__all__ = ["PrefixFuseEngine", "shared_prefix"]


def shared_prefix(rewriter: Any) -> list[int]:
    """The token ids every fusion prompt starts with: the common head of two prompts
    with different slot text, one token shorter (a slot could merge with it)."""
    a, b = rewriter.token_ids(
        [rewriter.build_prompt("a red kite", "one two"), rewriter.build_prompt("Zebra", "x")]
    )
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[: max(0, n - 1)]


class PrefixFuseEngine(FuseEngine):
    """``FuseEngine`` with the instruction's KV cache computed once and reused."""

    def __init__(self, rewriter: Any) -> None:
        import torch

        super().__init__(rewriter)
        self.prefix = shared_prefix(rewriter)
        if not self.prefix:
            raise ValueError("the fusion prompts share no prefix")
        model = rewriter.model
        with torch.inference_mode():
            ids = torch.tensor([self.prefix], device=model.device)
            self.cache = model(input_ids=ids, use_cache=True).past_key_values

    def prepare(self, items: list[Any]) -> Any:
        import torch

        n = len(self.prefix)
        if any(list(ids[:n]) != self.prefix for ids in items):
            raise ValueError("a fusion prompt does not start with the shared prefix")
        padded = self.rewriter.pad([ids[n:] for ids in items])
        head = torch.tensor([self.prefix] * len(items), dtype=padded["input_ids"].dtype)
        return items, {
            "input_ids": torch.cat([head, padded["input_ids"]], dim=1),
            "attention_mask": torch.cat([torch.ones_like(head), padded["attention_mask"]], dim=1),
        }

    def run(self, prepared: Any) -> list[Any]:
        import torch

        ids, inputs = prepared
        with torch.inference_mode():
            cache = copy.deepcopy(self.cache)
            cache.batch_repeat_interleave(len(ids) * self.rewriter.spec.generation.num_beams)
        try:
            return self.rewriter.generate({**inputs, "past_key_values": cache})
        except Exception as exc:
            return one_by_one(exc, ids, lambda row: self.rewriter.run([row]))
