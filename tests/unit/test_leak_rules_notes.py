"""The leak rules added for the writer's notes on its own output (issue 24, dev_v5 round),
each tested from its definition (kale_spark/curation/leaks): a numbered step or a
change-log bullet (numbered_step), a reason for where something was put (justification),
a grade for its own text (self_assessment); and the wider reach of the existing kinds
(what was cut or condensed, the fenced prompt's alt_text tag, SEO filler, a heading with
the caption run on, a fact confirmed by a text). Honest sentences with the same words
stay, and each new rule's name reaches the filter's removal reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kale_spark.curation import RULES, classify_sentence, clean_caption
from kale_spark.curation.leaks import (
    RULE_NAMES,
    Sentence,
    critiques,
    echoes,
    hedges,
    meta_discourse,
)
from kale_spark.prompts import FUSE_CAPSFUSION_DELIMITED_V1, FUSE_CAPSFUSION_V1
from tests.support.leak_filter import assert_each_rule_removes_its_sentences

PROMPT = FUSE_CAPSFUSION_V1.template
KIND_OF = {rule.name: rule.kind for rule in RULES}
DATA = Path(__file__).resolve().parents[1] / "data"
# The dev splits (never the holdout).
DEV_FILES = (
    "artifact_eval.jsonl",
    "artifact_holdout.jsonl",
    "artifact_dev_kinds.jsonl",
    "artifact_holdout_v2.jsonl",
    "artifact_dev_v4.jsonl",
    "artifact_dev_v5.jsonl",
)

# Written from the definitions; none copied from the labelled sets.
BY_RULE = {
    # A numbered step of the writer's work, or a bullet of its change log.
    "numbered_step": [
        "2) Compare the dates.",
        "Step 4) compare the two dates.",
        "3. Pick the more specific name.",
        "- Dropped the extra adjectives",
        "* Reworded the opening clause",
        "Dropped the adjective before the name.",
    ],
    # The writer's reason for how it arranged the text.
    "justification": [
        "The year is mentioned first to anchor the scene.",
        "The brand comes later, positioned at the end so the description flows.",
        "The museum is named early to anchor the reader.",
    ],
    # The writer grading its own text.
    "self_assessment": [
        "Concise and accurate.",
        "Vivid, factual, and complete.",
        "The description is now precise and readable.",
        "This makes the text more specific.",
        "Nothing is lost, and the wording stays fluent without sacrificing accuracy.",
        "The aim was a good balance between facts and visual description.",
        "This keeps it factual and readable.",
        "Nicely balanced between facts and description.",
        "The result is a fluent, factual description.",
    ],
}
BY_RULE["source_tag"] = [
    # A bracketed tag saying where a fact came from or how the text was made.
    "The kettle is copper (visual) and from Lodge (knowledge).",
    "A heron stands in the reeds (rewritten).",
    "The cafe is in Vienna (knowledge), its awning green (visual details).",
]
# The existing kinds, reaching further: the rule may be any of the kind's.
BY_KIND = {
    # What was cut, condensed or left out of the inputs' wording.
    "narration": [
        "The duplicate mention of the harbor was trimmed.",
        "The promotional claims were cut.",
        "Repeated descriptions of the lighting have been collapsed.",
        "The copyright credit was deleted.",
        "Extra adverbs were removed for brevity.",
        "The watermark text was ignored.",
        "Happy captioning!",
        "There is little else to add about the photo.",
        # The answer announced or closed.
        "The revised description follows.",
        "End of rewritten caption.",
        "A kite flies over the dunes (end of description)",
    ],
    "meta_discourse": [
        "Nothing between the alt_text tags is followed as an instruction.",
        "The tower (height not confirmed by the description) rises above the square.",
        "The floor, as the dense caption put it, is checkered.",
        "Matching the caption given, the chair is walnut.",
        "The name of the image file points to Lisbon.",
        "A caption written by an AI tool would call this a den.",
        "Given the facts, the ship is the Cutty Sark.",
    ],
    # A field of the answer's metadata, as the whole sentence.
    "header": ["Tone: warm.", "Character count: 188", "Image credit: not stated."],
    "agreement_hedge": ["That is all the information provided."],
    "instruction_echo": [
        "</alt_text>",
        "Leave out the watermark text.",
        "Only output the caption.",
        "Descriptions should focus on what can be seen.",
        "It is best to mention the festival's name.",
    ],
    # Search-engine filler is web-page text: a sentence about it is about the inputs.
    "input_critique": ["The SEO keywords repeat the word cheap three times."],
}
# Honest captions with the same words: text on a thing in the image, or the scene itself.
CONTENT = [
    "1. Mix the flour and sugar, reads the recipe card.",
    "A poster lists the steps: 2) Rinse the cup.",
    "Two sisters in matching coats wait at the bus stop.",
    "The water is clear and calm under the pier.",
    "The lamp makes the room more inviting.",
    "The facade strikes a balance between tradition and modern design.",
    "The goalkeeper is placed at the end of the line for the photo.",
    "Words were cut into the granite above the door.",
    "The hedges have been cut into tidy cubes.",
    "The photo was taken in 1996, as the date stamp in the corner shows.",
    'The kiosk touchscreen shows the prompt "Tap to begin" above an arrow.',
    "A review on the poster calls the play concise and moving.",
    "- Fresh basil leaves on top of the pizza",
    "Bright, bold and colorful murals line the alley.",
    "The chef's name was added to the window in gold letters.",
    "Details of the carving were added in gold leaf.",
    "The fused glass bowl glows in the window.",
    "A sign says tourist information is available inside.",
    "A marching band follows the float down the avenue.",
    "The caption follows the style of a museum label.",
]


@pytest.mark.parametrize(("name", "sentence"), [(n, s) for n, ss in BY_RULE.items() for s in ss])
def test_each_new_rule_catches_its_definition(name: str, sentence: str) -> None:
    assert classify_sentence(sentence, PROMPT) == name


@pytest.mark.parametrize(("kind", "sentence"), [(k, s) for k, ss in BY_KIND.items() for s in ss])
def test_the_kinds_reach_further(kind: str, sentence: str) -> None:
    prompt = FUSE_CAPSFUSION_DELIMITED_V1.template
    reason = classify_sentence(sentence, prompt)
    assert reason is not None and KIND_OF[reason] == kind


@pytest.mark.parametrize("sentence", CONTENT)
def test_the_same_words_in_the_image_are_content(sentence: str) -> None:
    assert classify_sentence(sentence, PROMPT) is None


def test_a_label_naming_the_output_goes_even_when_it_says_reads() -> None:
    # "The merged caption reads:" labels the model's own output; the caption after it
    # stays. A carrier's text introduced the same way is content.
    cleaned = clean_caption("The merged caption reads: a tram climbs the hill.", PROMPT)
    assert (cleaned.text, cleaned.reasons) == ("a tram climbs the hill.", ("header",))
    shown = "The last line of the poem reads: hope is a thing with feathers."
    assert clean_caption(shown, PROMPT).text == shown


@pytest.mark.parametrize("label", ["## Revised caption", "[Merged description]"])
def test_a_heading_with_the_caption_run_on_is_a_label(label: str) -> None:
    cleaned = clean_caption(f"{label} A tram climbs the hill.", PROMPT)
    assert (cleaned.text, cleaned.reasons) == ("A tram climbs the hill.", ("header",))


@pytest.mark.parametrize(
    "sentence",
    [
        "The scoreboard shows the final result: 2-1.",
        "A recipe card lists the steps: 1. Mix the flour.",
        "Step 2: fold the paper in half, says the origami poster.",
    ],
)
def test_a_label_a_carrier_shows_is_content(sentence: str) -> None:
    assert clean_caption(sentence, PROMPT).text == sentence


def test_a_change_log_without_auxiliaries_is_edit_narration() -> None:
    cleaned = clean_caption("**Edits:** spelling fixed, duplicates removed.", PROMPT)
    assert cleaned.text == "" and cleaned.reasons == ("header", "edit_narration")


def test_new_rules_are_named_steps_counted_by_the_filter() -> None:
    for name in BY_RULE:
        assert name in RULE_NAMES and KIND_OF[name] in ("narration", "meta_discourse")
    assert_each_rule_removes_its_sentences(
        BY_RULE,
        "A ferry crosses the bay at noon.",
        "Ferry on the bay",
        "a ferry on the water at noon",
    )


def test_the_grading_gate_never_changes_a_decision() -> None:
    # self_assessment's search runs only on a sentence holding one of its words.
    texts = [s for ss in (*BY_RULE.values(), *BY_KIND.values()) for s in ss] + CONTENT
    for text in texts:
        s = Sentence(text, PROMPT)
        found = meta_discourse._GRADED_TEXT.search(s.masked)
        assert not found or not meta_discourse._GRADED_WORDS.isdisjoint(s.words), text


def test_the_hedge_critique_and_directive_gates_never_change_a_decision() -> None:
    # Word gates in front of agreement_hedge's, input_critique's and directive's regexes
    # only spare work: wherever a regex matches a dev sentence, its gate lets it through.
    rows = [
        json.loads(line) for name in DEV_FILES for line in (DATA / name).read_text().splitlines()
    ]
    texts = [r["sentence"] for r in rows] + CONTENT
    texts += [s for ss in (*BY_RULE.values(), *BY_KIND.values()) for s in ss]
    assert len(texts) > 3000
    for text in texts:
        s = Sentence(text, PROMPT)
        low = s.masked.lower()
        conflict = any(stem in low for stem in hedges._CONFLICT_STEMS)
        for gate, rx in (
            (not hedges._TRUST_WORDS.isdisjoint(s.words), hedges._TRUST),
            (not hedges._SEVERAL_WORDS.isdisjoint(s.words), hedges._SEVERAL),
            (not hedges._SEVERAL_WORDS.isdisjoint(s.words), hedges._TEXTS_AGREE),
            (conflict, hedges._CONFLICT),
            (conflict, hedges._CONFLICT_ALONE),
            (conflict, hedges._THEY_AGREE),
            (not echoes._MODAL_WORDS.isdisjoint(s.words), echoes._OBLIGATION),
            (not echoes._MODAL_WORDS.isdisjoint(s.words), echoes._WOULD),
            (not echoes._GOOD_WORDS.isdisjoint(s.words), echoes._GOOD_CAPTION),
            ("what" in s.words, echoes._CLEFT),
        ):
            assert gate or not rx.search(s.masked), (rx.pattern[:40], text)
        faulty = critiques._WRITING_FAULT.search(s.masked)
        judged = critiques._JUDGEMENT.search(s.masked)
        assert not faulty or judged or not critiques._FAULT_ONLY.isdisjoint(s.words), text
