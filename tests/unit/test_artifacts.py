"""Leaked-prompt detection: the splitter, clean_caption, the KALE keyword rule, the eval set."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from kale_spark.curation import (
    Cleaned,
    classify_sentence,
    clean_caption,
    keyword_baseline,
    split_sentences,
)
from kale_spark.prompts import DENSE_V1, FUSE_CAPSFUSION_V1, get_prompt

EVAL_PATH = Path(__file__).resolve().parents[1] / "data" / "artifact_eval.jsonl"
HOLDOUT_PATH = EVAL_PATH.with_name("artifact_holdout.jsonl")
FUSION = FUSE_CAPSFUSION_V1.template


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Mr. Smith met Dr. Jones at St. Paul's Cathedral. They talked.",
            ["Mr. Smith met Dr. Jones at St. Paul's Cathedral.", "They talked."],
        ),
        (
            "The U.S. flag flies over the Capitol. It is windy.",
            ["The U.S. flag flies over the Capitol.", "It is windy."],
        ),
        ("He lives in the U.S. The house is big.", ["He lives in the U.S.", "The house is big."]),
        (
            "Pens, etc. are on the desk. A lamp is on.",
            ["Pens, etc. are on the desk.", "A lamp is on."],
        ),
        ("Acme Inc. Headquarters is tall.", ["Acme Inc. Headquarters is tall."]),
        ("Apple Inc. The logo is white.", ["Apple Inc.", "The logo is white."]),
        (
            "No. 10 Downing Street is shown. The door is black.",
            ["No. 10 Downing Street is shown.", "The door is black."],
        ),
        (
            "The price is 3.5 dollars. It rose to 4.25.",
            ["The price is 3.5 dollars.", "It rose to 4.25."],
        ),
        (
            "J. R. R. Tolkien wrote it. The cover is blue.",
            ["J. R. R. Tolkien wrote it.", "The cover is blue."],
        ),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        (
            'A sign reading "Stop. Look. Listen." stands there. It is red.',
            ['A sign reading "Stop. Look. Listen." stands there.', "It is red."],
        ),
        (
            'A sign reading "Stop." hangs on the pole.',
            ['A sign reading "Stop." hangs on the pole.'],
        ),
        ("Wait... what is that? It is a bird!", ["Wait... what is that?", "It is a bird!"]),
        ("The sign reads... The End.", ["The sign reads...", "The End."]),
        (
            "Visit example.com for details. The site is live.",
            ["Visit example.com for details.", "The site is live."],
        ),
        ("He arrived at 9 a.m. The shop opened.", ["He arrived at 9 a.m.", "The shop opened."]),
        (
            "See e.g. Fig. 3 for details. Nothing else.",
            ["See e.g. Fig. 3 for details.", "Nothing else."],
        ),
        ("Ali vs. Frazier. The crowd roars.", ["Ali vs. Frazier.", "The crowd roars."]),
        (
            "(Note: The location is inferred.) A red bus.",
            ["(Note: The location is inferred.)", "A red bus."],
        ),
        (
            "Plan B. A new plan. J. A. Smith wrote it.",
            ["Plan B.", "A new plan.", "J. A. Smith wrote it."],
        ),
        ("Caption:\n\nA red bus.  It is raining.", ["Caption:", "A red bus.", "It is raining."]),
        ("", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_split_sentences_returns_exact_substrings() -> None:
    text = 'A café sign reads "Open 24/7."  The owner, Dr. Ruiz, waves!\nPrices: $3.50 each.'
    parts = split_sentences(text)
    assert parts == [
        'A café sign reads "Open 24/7."',
        "The owner, Dr. Ruiz, waves!",
        "Prices: $3.50 each.",
    ]
    assert all(p in text for p in parts)


def test_clean_caption_removes_references_and_keeps_honest_trigger_words() -> None:
    caption = (
        "Here is the merged caption: A red double-decker bus drives past Big Ben in London. "
        "As indicated in Sentence 1, the bus belongs to Transport for London. "
        'A sign on the shelter reads "real-world skills".'
    )
    assert clean_caption(caption) == Cleaned(
        text=(
            "A red double-decker bus drives past Big Ben in London. "
            'A sign on the shelter reads "real-world skills".'
        ),
        removed=(
            "Here is the merged caption:",
            "As indicated in Sentence 1, the bus belongs to Transport for London.",
        ),
        reasons=("meta_prefix", "prompt_part_reference"),
    )


def test_clean_caption_meta_and_echo() -> None:
    caption = (
        "Sure! The Sydney Opera House glows under a purple sky during Vivid Sydney. "
        "A classroom poster nearby explains sentence structure. "
        "The merged description keeps the real-world knowledge and the visual details. "
        "The image exhibits nice sentence structure and detailed visual description. "
        "I hope this helps!"
    )
    result = clean_caption(caption)
    assert result.text == (
        "The Sydney Opera House glows under a purple sky during Vivid Sydney. "
        "A classroom poster nearby explains sentence structure."
    )
    assert result.removed == (
        "Sure!",
        "The merged description keeps the real-world knowledge and the visual details.",
        "The image exhibits nice sentence structure and detailed visual description.",
        "I hope this helps!",
    )
    assert result.reasons == (
        "meta_commentary",
        "meta_commentary",
        "echoed_instruction",
        "meta_commentary",
    )
    assert result.changed


def test_clean_caption_leaks_without_keywords() -> None:
    caption = (
        "A barista pours latte art at Blue Bottle Coffee. "
        "The alt-text mentions that the shop is in Oakland. "
        "Neither sentence mentions the time of day. "
        "No date is provided for the photo. "
        "The first sentence of the poem is painted on the wall behind her."
    )
    result = clean_caption(caption)
    assert result.text == (
        "A barista pours latte art at Blue Bottle Coffee. "
        "The first sentence of the poem is painted on the wall behind her."
    )
    assert result.reasons == ("prompt_part_reference", "prompt_part_reference", "meta_commentary")


def test_clean_caption_without_removal_returns_input_unchanged() -> None:
    caption = "The photo shows the Eiffel Tower.\nOverall, the scene is calm."
    assert clean_caption(caption, FUSION) == Cleaned(text=caption)
    assert not clean_caption(caption).changed


def test_clean_caption_all_removed() -> None:
    assert clean_caption("Here is the merged caption:") == Cleaned(
        text="", removed=("Here is the merged caption:",), reasons=("meta_commentary",)
    )


def test_prompt_overlap_only_with_a_prompt() -> None:
    # Echoes of CapsFusion's instruction: content-word pairs ("suffer flaw", "well
    # structured", "contain false", "false information"), and a five-word sequence.
    caption = (
        "A red bus in London. "
        "The street is well structured, yet it suffers from flaws in grammar. "
        "The harbor may contain false information."
    )
    assert clean_caption(caption).removed == ()
    assert clean_caption(caption, FUSION) == Cleaned(
        text="A red bus in London.",
        removed=(
            "The street is well structured, yet it suffers from flaws in grammar.",
            "The harbor may contain false information.",
        ),
        reasons=("prompt_overlap", "prompt_overlap"),
    )
    both = FUSION + "\n" + DENSE_V1.template
    assert (
        classify_sentence("Describe this image in detail, the man asked.", both) == "prompt_overlap"
    )
    # One shared pair is not an echo; "real world" alone never counts.
    assert classify_sentence("A detailed real-world map hangs in the hall.", FUSION) is None
    assert classify_sentence("The false ceiling hides pipes.", FUSION) is None


def test_prompt_overlap_ignores_slot_content() -> None:
    # The template's slots are dropped: a caption that repeats its alt-text verbatim
    # does not "overlap" the prompt even though the rendered prompt contained it.
    alt = "Vintage Leica M3 camera with a 50mm Summicron lens on a walnut desk"
    rendered = FUSE_CAPSFUSION_V1.render(alt_text=alt, dense_caption="A camera on a desk.")
    caption = "A vintage Leica M3 camera with a 50mm Summicron lens on a walnut desk."
    assert clean_caption(caption, FUSION).removed == ()
    assert clean_caption(caption, rendered).reasons == ("prompt_overlap",)


@pytest.mark.parametrize(
    "sentence",
    [
        'A chalkboard sign outside the café reads "Real-world skills taught here".',
        'The book on the desk is titled "Sentence Structure for Beginners".',
        "The first sentence of the poem is engraved on a brass plaque beside the fountain.",
        "The caption beneath the newspaper photo identifies the mayor of Chicago.",
        "Here is the main entrance to the Vatican Museums, crowded with tourists.",
        "This image shows a red Vespa scooter parked outside a gelato shop in Rome.",
        "The courtroom sketch shows the judge reading the sentence to the defendant.",
    ],
)
def test_honest_sentences_survive(sentence: str) -> None:
    assert classify_sentence(sentence) is None


def test_keyword_baseline_false_positive_and_miss() -> None:
    caption = (
        'A chalkboard sign reads "Real-world skills taught here". '
        "The alt-text mentions that the school is in Leeds."
    )
    baseline = keyword_baseline(caption)
    assert baseline == Cleaned(
        text="The alt-text mentions that the school is in Leeds.",
        removed=('A chalkboard sign reads "Real-world skills taught here".',),
        reasons=("keyword",),
    )
    ours = clean_caption(caption)
    assert ours.text == 'A chalkboard sign reads "Real-world skills taught here".'
    assert ours.reasons == ("prompt_part_reference",)


def test_cleaned_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        clean_caption("A dog.").text = "x"  # type: ignore[misc]


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _rates(method, rows: list[dict]) -> tuple[float, float]:
    """Sentence-level (precision, recall) of ``method(text, row)``, as
    bench/artifacts_eval.py measures it."""
    before, after = (
        "The photo was taken on a clear afternoon.",
        "Soft shadows fall across the ground.",
    )
    tp = fp = fn = 0
    for row in rows:
        kept = method(f"{before} {row['sentence']} {after}", row).text
        assert before in kept and after in kept, row["sentence"]
        hit = row["sentence"] not in kept
        tp += hit and row["leak"]
        fp += hit and not row["leak"]
        fn += (not hit) and row["leak"]
    return tp / (tp + fp), tp / (tp + fn)


def _with_row_prompt(text: str, row: dict):
    """clean_caption given the instruction sent for the row, as the filter runs it."""
    return clean_caption(text, get_prompt(row.get("prompt_id", "fuse_capsfusion_v1")).template)


def _baseline(text: str, row: dict):
    return keyword_baseline(text)


def test_holdout_is_frozen_and_apart_from_dev() -> None:
    # The holdout was committed in its own commit before any rule change; this hash
    # pins it (editing it to fit the rules fails here).
    digest = hashlib.sha256(HOLDOUT_PATH.read_bytes()).hexdigest()
    assert digest == "549a7ee8703f4ac3d603b806b5c704e6a01c1e76b67473e2ed0248789a01263c"
    holdout, dev = _load(HOLDOUT_PATH), _load(EVAL_PATH)
    assert len(holdout) == 244 and sum(r["leak"] for r in holdout) == 120
    assert len({r["sentence"] for r in holdout}) == len(holdout)
    assert not {r["sentence"] for r in holdout} & {r["sentence"] for r in dev}
    assert 0.45 <= sum(r["leak"] for r in holdout) / len(holdout) <= 0.55
    assert {r["source"] for r in holdout} == {
        "kale_figure3",
        "capsfusion_failure",
        "instruction_paraphrase",
        "honest_trigger",
        "honest_plain",
    }


def test_dev_set_shape() -> None:
    rows = _load(EVAL_PATH)
    assert len(rows) == 398 and sum(r["leak"] for r in rows) == 192
    assert len({r["sentence"] for r in rows}) == len(rows)
    assert 0.4 <= sum(r["leak"] for r in rows) / len(rows) <= 0.6


def test_leak_removal_on_the_holdout_beats_kales_keyword_rule() -> None:
    """The headline figure: the HOLDOUT (never tuned on), the filter's configuration
    (the row's instruction given). Precision and recall >= 0.95, above KALE's rule."""
    rows = _load(HOLDOUT_PATH)
    precision, recall = _rates(_with_row_prompt, rows)
    base_precision, base_recall = _rates(_baseline, rows)
    assert precision >= 0.95
    assert recall >= 0.95
    assert precision > base_precision
    assert recall > base_recall
    # The figures README.md reports (update both together).
    assert (round(precision, 3), round(recall, 3)) == (0.983, 0.967)
    assert (round(base_precision, 3), round(base_recall, 3)) == (0.762, 0.267)
    no_prompt = _rates(lambda text, row: clean_caption(text), rows)
    assert (round(no_prompt[0], 3), round(no_prompt[1], 3)) == (0.983, 0.942)


def test_leak_removal_on_dev() -> None:
    rows = _load(EVAL_PATH)
    precision, recall = _rates(_with_row_prompt, rows)
    assert precision >= 0.95 and recall >= 0.95
    assert (round(precision, 3), round(recall, 3)) == (1.0, 0.995)  # README's dev figure
    assert _rates(_baseline, rows) == pytest.approx((0.511, 0.125), abs=5e-4)
    no_prompt = _rates(lambda text, row: clean_caption(text), rows)
    assert no_prompt[0] >= 0.95 and no_prompt[1] >= 0.95
