"""Prompt templates, fusion prompt truncation and answer post-processing (no model)."""

from __future__ import annotations

import re

import pytest

from kale_spark.models.fusion import (
    FusionRewriter,
    postprocess,
    split_budget,
    truncate_tokens,
)
from kale_spark.models.spec import ModelSpec
from kale_spark.prompts import PROMPTS, get_prompt, instruction_text, render_prompt

FUSION_INSTRUCTION = (
    "Please merge and refine the information from the two given sentences. "
    "Sentence 1 is the alt-text of a web image and provides detailed real-world knowledge, "
    "such as names, places, brands and dates. Sentence 2 is a synthetic dense caption of the "
    "image and exhibits nice sentence structure and detailed visual description. Combine them "
    "into a new, detailed description of the image that keeps the real-world knowledge of "
    "Sentence 1 and the visual details of Sentence 2."
)


class WhitespaceTokenizer:
    """One token per whitespace-separated word; a Mistral-like chat template."""

    padding_side = "left"

    def __call__(self, text, add_special_tokens=True, return_offsets_mapping=False):
        spans = [m.span() for m in re.finditer(r"\S+", text)]
        out = {"input_ids": list(range(len(spans)))}
        if return_offsets_mapping:
            out["offset_mapping"] = spans
        return out

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True):
        assert add_generation_prompt and not tokenize
        (message,) = messages
        return f"<s> [INST] {message['content']} [/INST]"


# --- templates --------------------------------------------------------------------


def test_registry_ids_match_their_templates():
    assert set(PROMPTS) == {"dense_v1", "fuse_capsfusion_v1", "student_v1"}
    assert all(PROMPTS[key].id == key for key in PROMPTS)


def test_dense_prompt():
    assert render_prompt("dense_v1") == "Describe this image in detail."
    assert get_prompt("dense_v1").slots == ()
    assert get_prompt("dense_v1").kind == "vlm"


def test_fusion_prompt_exact_text():
    assert render_prompt(
        "fuse_capsfusion_v1", alt_text="Eiffel Tower 2019", dense_caption="A tower."
    ) == (FUSION_INSTRUCTION + " Sentence 1: Eiffel Tower 2019 Sentence 2: A tower.")
    assert get_prompt("fuse_capsfusion_v1").slots == ("alt_text", "dense_caption")


def test_instruction_text_is_the_scaffolding_without_slots():
    assert instruction_text("fuse_capsfusion_v1") == FUSION_INSTRUCTION + " Sentence 1: Sentence 2:"
    assert get_prompt("fuse_capsfusion_v1").fragments == (
        FUSION_INSTRUCTION + " Sentence 1:",
        "Sentence 2:",
    )
    assert instruction_text("dense_v1") == "Describe this image in detail."
    assert instruction_text("student_v1") == (
        "Describe this image in detail, keeping the real-world knowledge of its alt-text. Alt-text:"
    )


def test_unknown_prompt_id_is_a_clear_key_error():
    with pytest.raises(
        KeyError, match=r"unknown prompt id 'dense_v9'; known prompt ids: dense_v1, "
    ):
        get_prompt("dense_v9")
    with pytest.raises(KeyError, match="unknown prompt id"):
        instruction_text("nope")


def test_render_checks_slots():
    with pytest.raises(KeyError, match=r"missing \['dense_caption'\]"):
        render_prompt("fuse_capsfusion_v1", alt_text="x")
    with pytest.raises(KeyError, match=r"unexpected \['alt_text'\]"):
        render_prompt("dense_v1", alt_text="x")


# --- truncation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_alt", "n_dense", "budget", "expected"),
    [
        (3, 4, 10, (3, 4)),  # everything fits
        (10, 4, 10, (6, 4)),  # alt-text cut
        (10, 10, 10, (0, 10)),  # dense caption fills the budget: alt-text dropped
        (10, 25, 10, (0, 10)),  # dense caption alone overflows: cut too
        (5, 5, 0, (0, 0)),
    ],
)
def test_split_budget(n_alt, n_dense, budget, expected):
    assert split_budget(n_alt, n_dense, budget) == expected


def test_split_budget_rejects_negative_budget():
    with pytest.raises(ValueError, match="budget"):
        split_budget(1, 1, -1)


def test_truncate_tokens_cuts_at_token_ends_and_keeps_text_exactly():
    tok = WhitespaceTokenizer()
    assert truncate_tokens("Eiffel  Tower, Paris 2019", tok, 2) == "Eiffel  Tower,"
    assert truncate_tokens("Eiffel  Tower, Paris 2019", tok, 4) == "Eiffel  Tower, Paris 2019"
    assert truncate_tokens("Eiffel Tower", tok, 0) == ""


def _rewriter(max_input_tokens: int) -> FusionRewriter:
    spec = ModelSpec(
        id="tiny:lm", prompt_id="fuse_capsfusion_v1", max_input_tokens=max_input_tokens
    )
    return FusionRewriter(model=None, tokenizer=WhitespaceTokenizer(), spec=spec)


def test_fusion_prompt_fits_without_truncation():
    rewriter = _rewriter(256)
    overhead = len(f"<s> [INST] {FUSION_INSTRUCTION} Sentence 1: Sentence 2: [/INST]".split())
    assert rewriter.instruction_tokens == overhead
    assert rewriter.build_prompt("Eiffel Tower,\n Paris  2019", "A tall iron tower at dusk.") == (
        f"<s> [INST] {FUSION_INSTRUCTION} Sentence 1: Eiffel Tower, Paris 2019 "
        "Sentence 2: A tall iron tower at dusk. [/INST]"
    )


def test_fusion_prompt_truncates_alt_text_first():
    overhead = _rewriter(256).instruction_tokens
    rewriter = _rewriter(overhead + 8)  # 8 tokens for both slots
    assert rewriter.build_prompt(
        "Eiffel Tower Paris France 2019 travel photo wallpaper", "A tall iron tower."
    ) == (
        f"<s> [INST] {FUSION_INSTRUCTION} Sentence 1: Eiffel Tower Paris France "
        "Sentence 2: A tall iron tower. [/INST]"
    )


def test_fusion_prompt_truncates_an_overlong_dense_caption_and_drops_the_alt_text():
    overhead = _rewriter(256).instruction_tokens
    rewriter = _rewriter(overhead + 3)
    assert rewriter.build_prompt("Eiffel Tower", "A tall iron tower at dusk.") == (
        f"<s> [INST] {FUSION_INSTRUCTION} Sentence 1:  Sentence 2: A tall iron [/INST]"
    )


def test_fusion_prompt_never_cuts_the_instruction():
    overhead = _rewriter(256).instruction_tokens
    with pytest.raises(ValueError, match=f"instruction alone is {overhead} tokens"):
        _rewriter(overhead - 1).build_prompt("a", "b")


# --- post-processing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  A red bus in London.  ", "A red bus in London."),
        ("Sentence 3: A red bus in London.", "A red bus in London."),
        ("sentence 3 : A red bus.", "A red bus."),
        ("New sentence: A red bus.", "A red bus."),
        ("Merged caption: A red bus.", "A red bus."),
        ("Here is the merged description: A red bus.", "A red bus."),
        ("Here's a new, detailed sentence:\nA red bus.", "A red bus."),
        ('Sure! Here is the combined caption: "A red bus."', "A red bus."),
        ('"A red bus in London."', "A red bus in London."),
        ("\u201cA red bus.\u201d", "A red bus."),
        ("Sentence 3: 'New sentence: A red bus.'", "A red bus."),
        # Not scaffolding: left alone.
        ('"Abbey Road" album cover by "The Beatles"', '"Abbey Road" album cover by "The Beatles"'),
        ("Here is a red bus: it is parked.", "Here is a red bus: it is parked."),
        ("A poster reading 'Sentence 3: rest'.", "A poster reading 'Sentence 3: rest'."),
        ("", ""),
    ],
)
def test_postprocess(raw, expected):
    assert postprocess(raw) == expected
    assert FusionRewriter.postprocess(raw) == expected
