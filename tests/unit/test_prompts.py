"""Prompt templates, fusion prompt truncation and answer post-processing (no model)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kale_spark.config import load_config
from kale_spark.models.fusion import (
    FusionRewriter,
    postprocess,
    split_budget,
    truncate_tokens,
)
from kale_spark.models.spec import ModelSpec
from kale_spark.prompts import PROMPTS, get_prompt, instruction_text

DATA = Path(__file__).resolve().parents[1] / "data"
# CapsFusion's instruction as published (baaivision/CapsFusion capsfusion_inference.py,
# commit ace48808...; see tests/data/capsfusion_prompt.SOURCE.md), slots under its names.
CAPSFUSION = (DATA / "capsfusion_prompt.txt").read_text(encoding="utf-8").removesuffix("\n")
FUSION_INSTRUCTION = CAPSFUSION.split("\n\n")[0]
PARAPHRASE_INSTRUCTION = (
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
        *system, message = messages
        head = "".join(f"<<SYS>> {m['content']} <</SYS>> " for m in system)
        return f"<s> {head}[INST] {message['content']} [/INST]"


class NoSystemTokenizer(WhitespaceTokenizer):
    """A chat template that, like Mistral-Instruct's, has no system role."""

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True):
        if any(m["role"] == "system" for m in messages):
            raise ValueError("Conversation roles must alternate user/assistant/user/assistant")
        return super().apply_chat_template(messages, add_generation_prompt, tokenize)


# --- templates --------------------------------------------------------------------


def test_registry_ids_match_their_templates():
    assert set(PROMPTS) == {
        "dense_v1",
        "fuse_capsfusion_v1",
        "fuse_capsfusion_delimited_v1",
        "fuse_paraphrase_v1",
        "student_v1",
        "system_captioner_v1",
    }
    assert all(PROMPTS[key].id == key for key in PROMPTS)
    assert {k for k, p in PROMPTS.items() if p.kind == "system"} == {"system_captioner_v1"}


def test_dense_prompt():
    assert get_prompt("dense_v1").render() == "Describe this image in detail."
    assert get_prompt("dense_v1").slots == ()
    assert get_prompt("dense_v1").kind == "vlm"


def test_capsfusion_copy_is_the_published_text():
    # Spot checks of the copy itself: the clauses the earlier paraphrase dropped.
    assert FUSION_INSTRUCTION.startswith("Please merge and refine the information")
    for clause in (
        "yet it suffers from flaws in sentence structure and grammar.",
        "but lacking in-depth real-world details and may contain false information.",
        "Avoid simply concatenating the sentences.",
    ):
        assert clause in FUSION_INSTRUCTION
    assert CAPSFUSION.endswith(
        "\nSentence 1: {ori_caption}\nSentence 2: {synthetic_caption}\nNew Sentence:"
    )


def test_fusion_prompt_is_capsfusions_text_verbatim():
    template = get_prompt("fuse_capsfusion_v1").template
    assert template == CAPSFUSION.replace("{ori_caption}", "{alt_text}").replace(
        "{synthetic_caption}", "{dense_caption}"
    )
    alt, dense = "Eiffel Tower 2019", "A tower."
    assert get_prompt("fuse_capsfusion_v1").render(alt_text=alt, dense_caption=dense) == (
        CAPSFUSION.format(ori_caption=alt, synthetic_caption=dense)
    )
    assert get_prompt("fuse_capsfusion_v1").render(alt_text=alt, dense_caption=dense) == (
        FUSION_INSTRUCTION + "\n\nSentence 1: Eiffel Tower 2019\nSentence 2: A tower.\n"
        "New Sentence:"
    )
    assert get_prompt("fuse_capsfusion_v1").slots == ("alt_text", "dense_caption")


def test_the_paraphrase_keeps_its_own_id():
    assert get_prompt("fuse_paraphrase_v1").render(
        alt_text="Eiffel Tower 2019", dense_caption="A tower."
    ) == (PARAPHRASE_INSTRUCTION + " Sentence 1: Eiffel Tower 2019 Sentence 2: A tower.")


def test_instruction_text_is_the_scaffolding_without_slots():
    assert instruction_text("fuse_capsfusion_v1") == (
        FUSION_INSTRUCTION + " Sentence 1: Sentence 2: New Sentence:"
    )
    assert get_prompt("fuse_capsfusion_v1").fragments == (
        FUSION_INSTRUCTION + "\n\nSentence 1:",
        "Sentence 2:",
        "New Sentence:",
    )
    assert instruction_text("fuse_paraphrase_v1") == (
        PARAPHRASE_INSTRUCTION + " Sentence 1: Sentence 2:"
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
        get_prompt("fuse_capsfusion_v1").render(alt_text="x")
    with pytest.raises(KeyError, match=r"unexpected \['alt_text'\]"):
        get_prompt("dense_v1").render(alt_text="x")


# --- truncation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_alt", "n_dense", "budget", "min_alt", "expected"),
    [
        (3, 4, 10, 0, (3, 4)),  # everything fits
        (3, 4, 10, 8, (3, 4)),
        (6, 20, 10, 8, (6, 4)),  # the dense caption is cut first; the alt-text stays whole
        (12, 20, 10, 8, (8, 2)),  # both over: the alt-text is kept to its floor
        (12, 1, 10, 8, (9, 1)),  # a short dense caption whole; the alt-text gets the rest
        (30, 20, 10, 16, (10, 0)),  # the floor alone is over the budget
        (0, 25, 10, 8, (0, 10)),  # no alt-text: the dense caption takes the budget
        (5, 5, 0, 8, (0, 0)),
    ],
)
def test_split_budget(n_alt, n_dense, budget, min_alt, expected):
    assert split_budget(n_alt, n_dense, budget, min_alt) == expected


def test_split_budget_rejects_negative_budget():
    with pytest.raises(ValueError, match="budget"):
        split_budget(1, 1, -1)
    with pytest.raises(ValueError, match="min_alt"):
        split_budget(1, 1, 1, -1)


def test_truncate_tokens_cuts_at_token_ends_and_keeps_text_exactly():
    tok = WhitespaceTokenizer()
    assert truncate_tokens("Eiffel  Tower, Paris 2019", tok, 2) == "Eiffel  Tower,"
    assert truncate_tokens("Eiffel  Tower, Paris 2019", tok, 4) == "Eiffel  Tower, Paris 2019"
    assert truncate_tokens("Eiffel Tower", tok, 0) == ""


def _rewriter(max_input_tokens: int, min_alt: int = 0, tokenizer=None, **kw) -> FusionRewriter:
    spec = ModelSpec(
        id="tiny:lm",
        prompt_id="fuse_capsfusion_v1",
        max_input_tokens=max_input_tokens,
        min_alt_text_tokens=min_alt,
        **kw,
    )
    return FusionRewriter(model=None, tokenizer=tokenizer or WhitespaceTokenizer(), spec=spec)


# The templated prompt of the whitespace tokenizer: "<s> [INST] ... New Sentence: [/INST]".
OVERHEAD = len(
    f"<s> [INST] {FUSION_INSTRUCTION} Sentence 1: Sentence 2: New Sentence: [/INST]".split()
)


def _prompt(alt: str, dense: str) -> str:
    return (
        f"<s> [INST] {FUSION_INSTRUCTION}\n\nSentence 1: {alt}\nSentence 2: {dense}\n"
        "New Sentence: [/INST]"
    )


def test_fusion_prompt_fits_without_truncation():
    rewriter = _rewriter(256)
    assert rewriter.instruction_tokens == OVERHEAD
    assert rewriter.build_prompt("Eiffel Tower,\n Paris  2019", "A tall iron tower at dusk.") == (
        _prompt("Eiffel Tower, Paris 2019", "A tall iron tower at dusk.")
    )


def test_fusion_prompt_cuts_the_dense_caption_first():
    rewriter = _rewriter(OVERHEAD + 8, min_alt=4)  # 8 tokens for both slots
    assert rewriter.build_prompt(
        "Eiffel Tower Paris 2019", "A tall iron tower stands over the river Seine at dusk."
    ) == _prompt("Eiffel Tower Paris 2019", "A tall iron tower")


def test_fusion_prompt_keeps_the_alt_text_to_its_floor():
    rewriter = _rewriter(OVERHEAD + 8, min_alt=6)
    assert rewriter.build_prompt(
        "Eiffel Tower Paris France 2019 travel photo wallpaper hd", "A tall iron tower at dusk."
    ) == _prompt("Eiffel Tower Paris France 2019 travel", "A tall")


def test_fusion_prompt_never_cuts_the_instruction_or_the_floor():
    with pytest.raises(ValueError, match=f"instruction alone is {OVERHEAD} tokens"):
        _rewriter(OVERHEAD - 1).build_prompt("a", "b")
    with pytest.raises(ValueError, match="below the alt-text's floor min_alt_text_tokens=9"):
        _rewriter(OVERHEAD + 8, min_alt=9).build_prompt("a", "b")


def test_system_turn_comes_before_the_user_turn():
    system = get_prompt("system_captioner_v1").template
    rewriter = _rewriter(256, system_prompt_id="system_captioner_v1")
    assert rewriter.build_prompt("Eiffel Tower", "A tower.") == _prompt(
        "Eiffel Tower", "A tower."
    ).replace("<s> [INST]", f"<s> <<SYS>> {system} <</SYS>> [INST]")
    assert rewriter.spec.lineage()["gen_params"] == (
        '{"do_sample":false,"max_new_tokens":64,"num_beams":1,'
        '"system_prompt_id":"system_captioner_v1"}'
    )
    assert _rewriter(256).spec.lineage()["gen_params"] == (
        '{"do_sample":false,"max_new_tokens":64,"num_beams":1}'
    )


def test_system_turn_without_a_system_role_goes_before_the_instruction():
    system = get_prompt("system_captioner_v1").template
    rewriter = _rewriter(256, tokenizer=NoSystemTokenizer(), system_prompt_id="system_captioner_v1")
    expected = _prompt("Eiffel Tower", "A tower.").replace(
        "[INST] Please", f"[INST] {system}\n\nPlease"
    )
    assert rewriter.build_prompt("Eiffel Tower", "A tower.") == expected
    assert rewriter.build_prompt("Eiffel Tower", "A tower.") == expected


def test_spec_checks_the_prompt_fields():
    with pytest.raises(ValueError, match="is not a system prompt"):
        ModelSpec(id="tiny:lm", prompt_id="fuse_capsfusion_v1", system_prompt_id="dense_v1")
    with pytest.raises(ValueError, match="is a system turn"):
        ModelSpec(id="tiny:lm", prompt_id="system_captioner_v1")
    with pytest.raises(ValueError, match="min_alt_text_tokens must be an int >= 0"):
        ModelSpec(id="tiny:lm", prompt_id="fuse_capsfusion_v1", min_alt_text_tokens=-1)
    with pytest.raises(ValueError, match="must be below max_input_tokens"):
        ModelSpec(
            id="tiny:lm",
            prompt_id="fuse_capsfusion_v1",
            max_input_tokens=64,
            min_alt_text_tokens=64,
        )


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


# --- profile budgets -------------------------------------------------------------------

# BPE LLM tokenizers (Mistral, Qwen) spend ~1.3 tokens per English word; 1.5 is a margin.
TOKENS_PER_WORD = 1.5
# The chat template's own tokens, with room for a default system turn (Qwen adds one).
CHAT_TEMPLATE_TOKENS = 40


@pytest.mark.parametrize("profile", ["small", "paper"])
def test_profile_budgets_fit_kales_caption_length(profile):
    cfg = load_config(Path(__file__).resolve().parents[2] / "conf" / f"{profile}.yaml")
    spec = cfg.augment
    assert spec.prompt_id == "fuse_capsfusion_v1"
    # New tokens: room for 1.5x KALE's 67.26-word average (67.26 is from the paper).
    assert spec.generation.max_new_tokens >= 67.26 * TOKENS_PER_WORD * 1.5
    # Input: the instruction, a dense caption of the configured length and the alt-text floor.
    instruction = len(instruction_text(spec.prompt_id).split()) * TOKENS_PER_WORD
    needed = (
        instruction
        + CHAT_TEMPLATE_TOKENS
        + cfg.caption.generation.max_new_tokens
        + spec.min_alt_text_tokens
    )
    assert spec.max_input_tokens >= needed
    assert spec.min_alt_text_tokens >= 64  # ~50 words: most web alt-texts stay whole
