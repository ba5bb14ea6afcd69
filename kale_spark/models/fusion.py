"""Knowledge fusion: an LLM merges a web alt-text with a dense caption (KALE Stage 1b).

The prompt (``spec.prompt_id``, by default ``fuse_capsfusion_v1``: CapsFusion's
instruction, verbatim) has Sentence 1 = alt-text and Sentence 2 = dense caption.
It is rendered through the LM's chat template as the user turn, after an optional
system turn (``spec.system_prompt_id``), with a generation prompt.

Token budget (``spec.max_input_tokens``) covers the whole templated prompt. The
instruction is never cut. The alt-text carries the real-world knowledge that is
the point of KALE, so a tight budget cuts the *dense caption* first: the alt-text
keeps up to ``spec.min_alt_text_tokens`` tokens (its floor) before the dense
caption gets anything, and is never cut below that floor (CapsFusion did the
opposite: it cut the alt-text). The dense caption gets what the floor leaves, and
the alt-text gets any rest. Inputs are whitespace-normalised first. Cuts are made
on the original text at token offsets, so kept text is reproduced exactly.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from kale_spark.models.batching import Generated, generate_and_decode, run_with_oom_split
from kale_spark.models.loading import LoadedFromSpec
from kale_spark.models.spec import ModelSpec
from kale_spark.prompts import get_prompt

__all__ = ["FusionRewriter", "normalize_space", "postprocess", "split_budget", "truncate_tokens"]

log = logging.getLogger(__name__)


def normalize_space(text: str | None) -> str:
    """Collapse runs of whitespace (newlines, tabs) to one space; ``None`` → ``""``."""
    return " ".join((text or "").split())


def split_budget(n_alt: int, n_dense: int, budget: int, min_alt: int = 0) -> tuple[int, int]:
    """How many ``(alt, dense)`` tokens to keep within ``budget`` tokens.

    The alt-text keeps up to ``min_alt`` tokens (its floor) before the dense caption
    gets anything; the dense caption gets what the floor leaves; the alt-text gets
    any rest. So a tight budget cuts the dense caption first, and the alt-text is
    cut below its floor only when the floor alone is over the budget.

    >>> split_budget(10, 5, 20, min_alt=4)  # everything fits
    (10, 5)
    >>> split_budget(10, 50, 20, min_alt=16)  # the dense caption cut, the alt-text whole
    (10, 10)
    >>> split_budget(40, 50, 20, min_alt=16)  # both cut; the alt-text kept to its floor
    (16, 4)
    >>> split_budget(40, 50, 10, min_alt=16)  # the floor alone is over the budget
    (10, 0)
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if min_alt < 0:
        raise ValueError(f"min_alt must be >= 0, got {min_alt}")
    floor = min(n_alt, min_alt, budget)
    keep_dense = min(n_dense, budget - floor)
    keep_alt = min(n_alt, budget - keep_dense)
    return keep_alt, keep_dense


def _token_ends(text: str, tokenizer: Any) -> list[int] | None:
    """End character offset of each token of ``text`` (``None`` if offsets are unsupported)."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError):
        return None
    offsets = enc.get("offset_mapping") if hasattr(enc, "get") else None
    if offsets is None:
        return None
    return [end for _, end in offsets]


def count_tokens(text: str, tokenizer: Any) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def truncate_tokens(text: str, tokenizer: Any, max_tokens: int) -> str:
    """The longest prefix of ``text`` that is at most ``max_tokens`` tokens, right-stripped.

    Cuts at the end offset of the last kept token (falls back to decoding the kept
    ids for tokenizers without offsets).
    """
    if max_tokens <= 0:
        return ""
    ends = _token_ends(text, tokenizer)
    if ends is not None:
        if len(ends) <= max_tokens:
            return text
        return text[: ends[max_tokens - 1]].rstrip()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True).strip()


# Scaffolding an LLM echoes at the start of its answer.
_ECHO_PREFIX = re.compile(
    r"""^\s*(?:
        (?:sure|certainly|okay|ok)\s*[,.!]\s*
    )?(?:
        (?:sentence\s*3|new\s+sentence|new\s+description|new\s+caption
          |(?:merged|combined|refined|fused|final)\s+(?:sentence|caption|description|text)
          |caption|description|answer|output)\s*:
      | here(?:\s+is|\s+are|'s)\b[^:\n]{0,100}?
          \b(?:sentence|caption|description|version|text|result|merge\w*|combin\w*|refine\w*)
          \b[^:\n]{0,40}:
    )\s*""",
    re.IGNORECASE | re.VERBOSE,
)
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "`": "`"}


def postprocess(text: str) -> str:
    """Strip echoed scaffolding (``Sentence 3:``, ``Merged caption:``, ``Here is the
    merged description:``) and surrounding quotes from a fusion answer.

    Quotes are removed only when they wrap the whole answer and do not occur inside
    it (``"Abbey Road" by "The Beatles"`` is left alone).
    """
    out = text.strip()
    for _ in range(5):
        before = out
        out = _ECHO_PREFIX.sub("", out, count=1).strip()
        if len(out) >= 2 and out[0] in _QUOTES and out[-1] == _QUOTES[out[0]]:
            inner = out[1:-1]
            if out[0] not in inner and _QUOTES[out[0]] not in inner:
                out = inner.strip()
        if out == before:
            break
    return out


class FusionRewriter(LoadedFromSpec):
    """Fuses (alt-text, dense caption) pairs with an instruction LM."""

    def __init__(self, model: Any, tokenizer: Any, spec: ModelSpec) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        self.spec = spec
        self.template = get_prompt(spec.prompt_id)
        if set(self.template.slots) != {"alt_text", "dense_caption"}:
            raise ValueError(
                f"prompt {spec.prompt_id!r} is not a fusion prompt "
                f"(slots {list(self.template.slots)}, need alt_text and dense_caption)"
            )
        self.system = get_prompt(spec.system_prompt_id) if spec.system_prompt_id else None
        self._system_merged = False  # the chat template has no system role
        self._overhead: int | None = None

    def _messages(self, content: str) -> list[dict[str, str]]:
        if self.system is None:
            return [{"role": "user", "content": content}]
        if self._system_merged:
            return [{"role": "user", "content": f"{self.system.template}\n\n{content}"}]
        return [
            {"role": "system", "content": self.system.template},
            {"role": "user", "content": content},
        ]

    def _templated(self, alt_text: str, dense_caption: str) -> str:
        content = self.template.render(alt_text=alt_text, dense_caption=dense_caption)
        try:
            return self.tokenizer.apply_chat_template(
                self._messages(content), add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # jinja2's TemplateError: no system role in this template
            if self.system is None or self._system_merged:
                raise
            log.warning(
                "chat template rejects a system turn (%s); putting %s before the user turn",
                exc,
                self.system.id,
            )
            self._system_merged = True
            return self._templated(alt_text, dense_caption)

    @property
    def instruction_tokens(self) -> int:
        """Tokens of the templated prompt with both slots empty."""
        if self._overhead is None:
            self._overhead = count_tokens(self._templated("", ""), self.tokenizer)
        return self._overhead

    def slot_budget(self) -> int:
        """Tokens left for the alt-text and the dense caption; ``ValueError`` when the
        instruction leaves less than the alt-text's floor (``spec.min_alt_text_tokens``)."""
        limit = self.spec.max_input_tokens
        budget = limit - self.instruction_tokens
        if budget < 0:
            raise ValueError(
                f"the fusion instruction alone is {self.instruction_tokens} tokens, over "
                f"max_input_tokens={limit}"
            )
        if budget < self.spec.min_alt_text_tokens:
            raise ValueError(
                f"max_input_tokens={limit} leaves {budget} tokens after the "
                f"{self.instruction_tokens}-token instruction, below the alt-text's floor "
                f"min_alt_text_tokens={self.spec.min_alt_text_tokens}"
            )
        return budget

    def build_prompt(self, alt_text: str, dense_caption: str) -> str:
        """The chat-templated fusion prompt, truncated to ``spec.max_input_tokens`` tokens
        (the dense caption first; see ``split_budget``)."""
        limit = self.spec.max_input_tokens
        alt = normalize_space(alt_text)
        dense = normalize_space(dense_caption)
        keep_alt, keep_dense = split_budget(
            count_tokens(alt, self.tokenizer),
            count_tokens(dense, self.tokenizer),
            self.slot_budget(),
            self.spec.min_alt_text_tokens,
        )
        # Tokens at the slot boundaries can merge differently in context; shrink
        # (the dense caption first) until the whole prompt fits.
        while True:
            prompt = self._templated(
                truncate_tokens(alt, self.tokenizer, keep_alt),
                truncate_tokens(dense, self.tokenizer, keep_dense),
            )
            over = count_tokens(prompt, self.tokenizer) - limit
            if over <= 0:
                return prompt
            if keep_dense > 0:
                keep_dense = max(0, keep_dense - over)
            elif keep_alt > 0:
                keep_alt = max(0, keep_alt - over)
            else:  # pragma: no cover - budget >= 0 makes empty slots fit
                raise ValueError("fusion prompt does not fit max_input_tokens with empty slots")

    def fuse(self, alt_texts: Sequence[str], dense_captions: Sequence[str]) -> list[Generated]:
        """One ``Generated`` per pair (raw model text; see ``postprocess``), in order."""
        if len(alt_texts) != len(dense_captions):
            raise ValueError(f"{len(alt_texts)} alt-texts but {len(dense_captions)} dense captions")
        prompts = [self.build_prompt(a, d) for a, d in zip(alt_texts, dense_captions, strict=True)]
        return run_with_oom_split(self._fuse_batch, prompts, self.spec.batch_size)

    def _fuse_batch(self, prompts: list[str]) -> list[Generated]:
        # The chat template already holds the special tokens (BOS etc.).
        inputs = self.tokenizer(
            prompts, add_special_tokens=False, padding=True, return_tensors="pt"
        )
        return self.generate(dict(inputs))

    def generate(self, inputs: dict[str, Any]) -> list[Generated]:
        """``generate`` + decode on a tokenized batch: one ``Generated`` per row."""
        return generate_and_decode(
            self.model,
            self.tokenizer,
            inputs,
            self.spec.generation,
            cache_implementation=self.spec.cache_implementation,
        )

    # --- token ids in, for a pipeline that tokenizes ahead of the model ------------

    def token_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        """The prompts' token ids, unpadded (their lengths size the batches)."""
        return self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]

    def pad(self, ids: Sequence[Sequence[int]]) -> dict[str, Any]:
        """A left-padded batch of ``ids`` as tensors, ready for ``run``."""
        return dict(self.tokenizer.pad({"input_ids": list(ids)}, return_tensors="pt"))

    def run(
        self, ids: Sequence[Sequence[int]], inputs: dict[str, Any] | None = None
    ) -> list[Generated]:
        """``generate`` on token-id rows, one ``Generated`` each, halving on OOM;
        ``inputs``: the rows already padded (``pad``), used for the first try."""
        first = (lambda: self.generate(inputs)) if inputs is not None else None
        return run_with_oom_split(
            lambda b: self.generate(self.pad(b)), list(ids), len(ids), first=first
        )

    @staticmethod
    def postprocess(text: str) -> str:
        return postprocess(text)
