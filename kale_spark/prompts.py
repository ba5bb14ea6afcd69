"""Prompt templates with stable ids.

A prompt id is part of every generated row's lineage, so a template's text never
changes under an existing id: a new wording gets a new id (``dense_v2``, ...).
Templates use ``str.format`` named slots (``{alt_text}``); the model-specific chat
formatting (roles, special tokens) is applied later by the model's chat template.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

__all__ = [
    "PROMPTS",
    "PromptTemplate",
    "get_prompt",
    "instruction_text",
    "render_prompt",
]


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt: a stable id, the model kind it is for, and its template text."""

    id: str
    kind: str  # "vlm" (image + text in) or "lm" (text in)
    template: str

    @property
    def slots(self) -> tuple[str, ...]:
        """Named slots in template order, e.g. ``("alt_text", "dense_caption")``."""
        return tuple(
            name for _, name, _, _ in string.Formatter().parse(self.template) if name is not None
        )

    @property
    def fragments(self) -> tuple[str, ...]:
        """The literal scaffolding between slots, stripped, empty pieces dropped."""
        pieces = (lit.strip() for lit, _, _, _ in string.Formatter().parse(self.template))
        return tuple(p for p in pieces if p)

    def render(self, **slots: str) -> str:
        """Fill every slot; a missing or unexpected slot raises ``KeyError``."""
        expected = set(self.slots)
        missing = expected - slots.keys()
        extra = slots.keys() - expected
        if missing or extra:
            raise KeyError(
                f"prompt {self.id!r} takes slots {sorted(expected)}; "
                f"missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
        return self.template.format(**slots)

    def instruction_text(self) -> str:
        """The template with its slots removed and whitespace collapsed."""
        return re.sub(r"\s+", " ", " ".join(self.fragments)).strip()


DENSE_V1 = PromptTemplate(
    id="dense_v1",
    kind="vlm",
    template="Describe this image in detail.",
)

# KALE follows CapsFusion's instruction: Sentence 1 = alt-text (knowledge),
# Sentence 2 = synthetic dense caption (structure and visual detail).
FUSE_CAPSFUSION_V1 = PromptTemplate(
    id="fuse_capsfusion_v1",
    kind="lm",
    template=(
        "Please merge and refine the information from the two given sentences. "
        "Sentence 1 is the alt-text of a web image and provides detailed real-world "
        "knowledge, such as names, places, brands and dates. "
        "Sentence 2 is a synthetic dense caption of the image and exhibits nice sentence "
        "structure and detailed visual description. "
        "Combine them into a new, detailed description of the image that keeps the "
        "real-world knowledge of Sentence 1 and the visual details of Sentence 2. "
        "Sentence 1: {alt_text} Sentence 2: {dense_caption}"
    ),
)

# Stage 2 student: image + alt-text in, knowledge-augmented caption out.
STUDENT_V1 = PromptTemplate(
    id="student_v1",
    kind="vlm",
    template=(
        "Describe this image in detail, keeping the real-world knowledge of its "
        "alt-text. Alt-text: {alt_text}"
    ),
)

PROMPTS: dict[str, PromptTemplate] = {p.id: p for p in (DENSE_V1, FUSE_CAPSFUSION_V1, STUDENT_V1)}


def get_prompt(prompt_id: str) -> PromptTemplate:
    """The template registered under ``prompt_id``; ``KeyError`` naming the known ids."""
    try:
        return PROMPTS[prompt_id]
    except KeyError:
        raise KeyError(
            f"unknown prompt id {prompt_id!r}; known prompt ids: {', '.join(sorted(PROMPTS))}"
        ) from None


def render_prompt(prompt_id: str, **slots: str) -> str:
    """The prompt text for ``prompt_id`` with its slots filled."""
    return get_prompt(prompt_id).render(**slots)


def instruction_text(prompt_id: str) -> str:
    """The prompt's scaffolding without its slots (for leaked-prompt detection)."""
    return get_prompt(prompt_id).instruction_text()
