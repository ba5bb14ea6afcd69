"""Leaked-prompt removal: the splitter, clean_caption, the KALE keyword rule, the labelled
sets (dev, dev history, and the frozen holdouts v2 to v4 by hash only); holdout v5 by
its record only."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import pytest

from kale_spark.curation import (
    Cleaned,
    classify_sentence,
    clean_caption,
    keyword_baseline,
    split_sentences,
)
from kale_spark.prompts import FUSE_CAPSFUSION_V1, get_prompt

EVAL_PATH = Path(__file__).resolve().parents[1] / "data" / "artifact_eval.jsonl"
HISTORY_PATH = EVAL_PATH.with_name("artifact_holdout.jsonl")
DEV_V4_PATH = EVAL_PATH.with_name("artifact_dev_v4.jsonl")
DEV_V5_PATH = EVAL_PATH.with_name("artifact_dev_v5.jsonl")
HOLDOUT_V2_PATH = EVAL_PATH.with_name("artifact_holdout_v2.jsonl")
HOLDOUT_V3_PATH = EVAL_PATH.with_name("artifact_holdout_v3.jsonl")
HOLDOUT_V4_PATH = EVAL_PATH.with_name("artifact_holdout_v4.jsonl")
HOLDOUT_V4_SHA256 = "605d32df320887683995ac6f8b053b91b5a77fe115d685c8c1134f671b0fdef9"
HOLDOUT_V5_PATH = EVAL_PATH.with_name("artifact_holdout_v5.jsonl")
HOLDOUT_V5_SHA256 = "deca17f8ff9ca174f863523b58976bd500d0063fb851b020c0d0213be83bb85c"
DEV_V6_PATH = EVAL_PATH.with_name("artifact_dev_v6.jsonl")
BENCH_EVAL_PATH = Path(__file__).resolve().parents[2] / "bench" / "artifacts_eval.py"
HOLDOUT_V3_SHA256 = "cd610289ae9acf96e5b54c1cc660b1519030792e73df41c225f08458a2931d93"
FIGURES_PATH = Path(__file__).resolve().parents[2] / "bench" / "figures" / "artifacts.json"
FUSION = FUSE_CAPSFUSION_V1.template
HOLDOUT_V2_SHA256 = "57d2d2a86c299f0b525463b04adaae09cd8e3804b11fda000b2a496409054cee"


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
        ("It is Levi's. Soft light falls.", ["It is Levi's.", "Soft light falls."]),
        ("The cover art. Soft light falls.", ["The cover art.", "Soft light falls."]),
        # A sentence begun in lower case after a plain word ends the one before it.
        (
            "A kite flies over the dunes. hope that helps!",
            ["A kite flies over the dunes.", "hope that helps!"],
        ),
        # ... but not after an abbreviation, nor after an ellipsis.
        ("It weighs approx. five kilos.", ["It weighs approx. five kilos."]),
        ("Acme Corp. headquarters is tall.", ["Acme Corp. headquarters is tall."]),
        ("A lamp, a desk, etc. fill the room.", ["A lamp, a desk, etc. fill the room."]),
        ("It was dark... and cold.", ["It was dark... and cold."]),
        # Markdown emphasis closes a sentence like a quote does.
        (
            "*The date is taken from the alt text.* A red bus waits.",
            ["*The date is taken from the alt text.*", "A red bus waits."],
        ),
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
        reasons=("header", "text_reference"),
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
        "assistant_narration",
        "self_reference",
        "instruction_vocabulary",
        "assistant_narration",
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
    assert result.reasons == ("text_reference", "agreement_hedge", "absence_hedge")


def test_clean_caption_strips_chat_markup_and_keeps_the_caption() -> None:
    caption = "[INST] Merge the two sentences. [/INST] A red tram climbs a hill in Lisbon.</s>"
    assert clean_caption(caption) == Cleaned(
        text="A red tram climbs a hill in Lisbon.",
        removed=("[INST]", "[/INST]", "</s>", "Merge the two sentences."),
        reasons=("chat_markup", "chat_markup", "chat_markup", "directive"),
    )


def test_clean_caption_without_removal_returns_input_unchanged() -> None:
    caption = "The photo shows the Eiffel Tower.\nOverall, the scene is calm."
    assert clean_caption(caption, FUSION) == Cleaned(text=caption)
    assert not clean_caption(caption).changed


def test_clean_caption_all_removed() -> None:
    assert clean_caption("Here is the merged caption:") == Cleaned(
        text="", removed=("Here is the merged caption:",), reasons=("header",)
    )


def test_instruction_overlap_is_the_rows_own_instruction() -> None:
    # An instruction whose words no general rule knows: only the row's own instruction
    # makes its echo a leak (a five-word sequence, or two content-word pairs).
    instruction = "Mention the lemon tarts and the copper kettle from the bakery counter."
    caption = (
        "A red bus in London. "
        "The copper kettle shines beside the lemon tarts. "
        "Shoppers admire the lemon tarts and the copper kettle from the bakery counter."
    )
    assert clean_caption(caption).removed == ()
    assert clean_caption(caption, instruction) == Cleaned(
        text="A red bus in London.",
        removed=(
            "The copper kettle shines beside the lemon tarts.",
            "Shoppers admire the lemon tarts and the copper kettle from the bakery counter.",
        ),
        reasons=("instruction_overlap", "instruction_overlap"),
    )
    # One shared pair is not an echo; "real world" alone never counts.
    assert classify_sentence("A detailed real-world map hangs in the hall.", FUSION) is None
    assert classify_sentence("The copper roof of the bakery is green.", instruction) is None


def test_instruction_overlap_ignores_slot_content() -> None:
    # The template's slots are dropped: a caption that repeats its alt-text verbatim
    # does not "overlap" the prompt even though the rendered prompt contained it.
    alt = "Vintage Leica M3 camera with a 50mm Summicron lens on a walnut desk"
    rendered = FUSE_CAPSFUSION_V1.render(alt_text=alt, dense_caption="A camera on a desk.")
    caption = "A vintage Leica M3 camera with a 50mm Summicron lens on a walnut desk."
    assert clean_caption(caption, FUSION).removed == ()
    assert clean_caption(caption, rendered).reasons == ("instruction_overlap",)


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
    assert ours.reasons == ("text_reference",)


def test_cleaned_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        clean_caption("A dog.").text = "x"  # type: ignore[misc]


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


_BEFORE = "The photo was taken on a clear afternoon."
_AFTER = "Soft shadows fall across the ground."


def _counts(method, rows: list[dict]) -> dict[str, int]:
    """Sentence-level counts of ``method(text, row)`` as bench/artifacts_eval.py measures
    them: the labelled sentence between two honest ones, removed when it is not intact.
    Aggregates only: nothing here ever names a row (holdout v2 goes through it)."""
    tp = fp = fn = tn = 0
    for row in rows:
        kept = method(f"{_BEFORE} {row['sentence']} {_AFTER}", row).text
        hit = row["sentence"] not in kept
        tp += hit and row["leak"]
        fp += hit and not row["leak"]
        fn += (not hit) and row["leak"]
        tn += (not hit) and not row["leak"]
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def _rates(method, rows: list[dict]) -> tuple[float, float]:
    c = _counts(method, rows)
    return c["tp"] / (c["tp"] + c["fp"]), c["tp"] / (c["tp"] + c["fn"])


def _row_prompt(row: dict) -> str | None:
    try:
        return get_prompt(row.get("prompt_id") or FUSE_CAPSFUSION_V1.id).template
    except KeyError:
        return None


def _with_row_prompt(text: str, row: dict):
    """clean_caption given the instruction sent for the row, as the filter runs it."""
    return clean_caption(text, _row_prompt(row))


def _baseline(text: str, row: dict):
    return keyword_baseline(text)


def test_dev_history_is_frozen_and_apart_from_dev() -> None:
    # The first holdout, frozen in its own commit; its misses were printed while rules
    # changed, so it is dev history now. The hash pins it.
    digest = hashlib.sha256(HISTORY_PATH.read_bytes()).hexdigest()
    assert digest == "549a7ee8703f4ac3d603b806b5c704e6a01c1e76b67473e2ed0248789a01263c"
    history, dev = _load(HISTORY_PATH), _load(EVAL_PATH)
    assert len(history) == 244 and sum(r["leak"] for r in history) == 120
    assert not {r["sentence"] for r in history} & {r["sentence"] for r in dev}


@pytest.mark.parametrize(
    ("path", "sha256", "sizes"),
    [
        # Each written by an author who never saw the rules (v3 to v5: nor the dev sets
        # or the earlier holdouts) and committed before any rule change after it.
        (HOLDOUT_V2_PATH, HOLDOUT_V2_SHA256, (376, 168)),
        (HOLDOUT_V3_PATH, HOLDOUT_V3_SHA256, (422, 200)),
        (HOLDOUT_V4_PATH, HOLDOUT_V4_SHA256, (559, 311)),
        (HOLDOUT_V5_PATH, HOLDOUT_V5_SHA256, (470, 264)),
    ],
    ids=["v2", "v3", "v4", "v5"],
)
def test_holdouts_are_frozen(path: Path, sha256: str, sizes: tuple[int, int]) -> None:
    # Only the hash and sizes are checked; the sentences are never printed.
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    rows = _load(path)
    assert (len(rows), sum(bool(r["leak"]) for r in rows)) == sizes


def test_holdout_v5_figures_are_of_todays_rules() -> None:
    """The headline in bench/figures/artifacts.json (written by bench/artifacts_eval.py
    --record, which logs each look) was scored with the rules as they are now, and its
    precision and recall are at least KALE's keyword rule's, recall above it. The test
    reads the record and never scores the holdout itself: a look per test run would make
    it a dev set. The targets (>= 0.95 both) are reported in the record and the README,
    not asserted here."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("artifacts_eval", BENCH_EVAL_PATH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclasses look their module up there
    spec.loader.exec_module(bench)
    record = json.loads(FIGURES_PATH.read_text(encoding="utf-8"))
    assert record["rules_digest"] == bench.rules_digest(), (
        "the rules changed since holdout v5 was scored: run bench/artifacts_eval.py "
        "--holdout --record once"
    )
    base = record["splits"]["holdout_v5"]["keyword_baseline"]
    for method in ("clean_caption+prompt", "clean_caption+prompt+learned"):
        ours = record["splits"]["holdout_v5"][method]
        assert ours["tp"] + ours["fn"] == 264 and ours["tn"] + ours["fp"] == 206
        assert ours["precision"] >= base["precision"] and ours["recall"] > base["recall"]


def test_leak_removal_on_dev_and_dev_history() -> None:
    for path, baseline in (
        (EVAL_PATH, (0.511, 0.125)),
        (HISTORY_PATH, (0.762, 0.267)),
        (DEV_V4_PATH, (0.968, 0.133)),
        (DEV_V5_PATH, (0.9565, 0.1443)),
        # Holdout v3 became dev history (dev_v3) and dev_v6 a dev split: tuned on since.
        (HOLDOUT_V3_PATH, (0.7059, 0.06)),
        (DEV_V6_PATH, (0.9286, 0.0765)),
    ):
        rows = _load(path)
        precision, recall = _rates(_with_row_prompt, rows)
        assert precision >= 0.99 and recall >= 0.99, path.name
        assert _rates(_baseline, rows) == pytest.approx(baseline, abs=5e-4)
        assert precision > baseline[0] and recall > baseline[1]


def test_dev_set_shape() -> None:
    rows = _load(EVAL_PATH)
    assert len(rows) == 398 and sum(r["leak"] for r in rows) == 192
    assert len({r["sentence"] for r in rows}) == len(rows)
    assert 0.4 <= sum(r["leak"] for r in rows) / len(rows) <= 0.6
