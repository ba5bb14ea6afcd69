"""The leak rules' reach after the dev_v7 / dev_holdout_v4 round (issue 24), each tested
from its kind's definition (kale_spark/curation/leaks): the writer's change log without
a subject or in the passive (an edit of a quoted piece of wording, of a part of the text,
of its tense; the inputs joined "into one clause"); grades of the writer's own text
without a subject ("Reads far more smoothly"); hearsay of the page's publisher ("the
seller writes"); doubts that cannot be settled; a named model as the writer; a bracketed
citation of an input; sign-offs that wish the user well. Honest sentences with the same
words stay, and a quotation's own "?" or "!" no longer cuts a sentence in two. None of
the sentences is copied from a labelled set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kale_spark.curation import RULES, classify_sentence, clean_caption, split_sentences
from kale_spark.curation.leaks import Sentence, meta_discourse, procedure
from kale_spark.prompts import FUSE_CAPSFUSION_V1
from tests.support.leak_filter import assert_gates_never_change_a_decision

PROMPT = FUSE_CAPSFUSION_V1.template
DATA = Path(__file__).resolve().parents[1] / "data"

BY_KIND = {
    "narration": [
        # A change-log line without its subject: a quoted piece of wording edited.
        "Turned 'approx.' into 'about' for readability.",
        "Changed 'grey' to 'gray' everywhere.",
        "Replaced '2nd' with 'second'.",
        "Swapped 'the bridge' for 'the Golden Gate Bridge'.",
        # ... or a part of the text edited.
        "Fixed the capitalization of the brand name.",
        "Reordered the details so the date comes last.",
        "Dropped the shipping fragment entirely.",
        "Standardized the wording of the river's name.",
        # The same edits in the passive, said of a part of the text.
        "Tense switched to the present throughout.",
        "The whole description is written in the present tense.",
        "The rest was promotional fluff and has been removed.",
        "That part about the coupon stays out.",
        "Grammar fixed, punctuation tidied.",
        # The inputs joined in the passive.
        "Both views of the weather were merged into one sentence.",
        "In the end everything is blended together.",
        "The date was worked into the description of the parade.",
        # An input's wording accepted as it came.
        "The player's name is accepted as written.",
        # A named model as the writer; a sign-off that wishes the user well.
        "(Written by Llama-3-8B.)",
        "Generated using a vision model.",
        "Have a wonderful weekend!",
        "Take care!",
    ],
    "meta_discourse": [
        # Hearsay: the page's publisher as the speaker of an input.
        "According to the seller, the lamp is from the 1960s.",
        "The uploader claims the kitten is three weeks old.",
        "The listing describes the jacket as waterproof.",
        "Per the vendor, the rug is hand-knotted.",
        # An input named by its tags, or its spelling without the hyphen.
        "Reading the tagged content as plain facts, the venue is Wembley.",
        "The alt txt only says 'holiday'.",
        # A bracketed citation of an input.
        "A stone bridge spans the river (S1), built in 1720 (S2).",
        # Grades of the writer's own text, without a subject.
        "Reads much more naturally now.",
        "Far more concise than the draft.",
        "Overall, it reads smoothly.",
        "It is now both clear and error-free.",
        "- Factual, neutral, under 60 words",
        "(48 words, past tense, no speculation.)",
        "In short, a knowledge-rich portrayal of the harbour at dusk.",
    ],
    "agreement_hedge": [
        "It is not possible to verify that the man is the mayor.",
        "There is no way to confirm the stadium's name.",
    ],
    "instruction_echo": [
        "The embedded directive to praise the product is not followed.",
    ],
}

CONTENT = [
    # The same words about the picture.
    "A patchwork quilt, its squares stitched together by hand, covers the bed.",
    "Two streams merge into one river below the dam.",
    "A seller at the market weighs tomatoes on a brass scale.",
    "The uploader's dog, a beagle, naps on the porch.",
    "A chalkboard menu lists the soups, written in the present tense of a recipe.",
    "A thank-you card with a pressed flower stands on the shelf.",
    "A sign by the door says 'Have a nice day'.",
    "Changed leaves of red and gold cover the path.",
    "A yearbook photo caption reads 'Class clown, 1998'.",
    "Sheet music annotated with the instruction 'softly' rests on the piano.",
    "A poster at the bus stop asks 'Lost? Ask us.' in large letters.",
    "A mug reads 'Best Dad! Ever.' on its side.",
    "Workers in high-visibility vests take care of the flower beds.",
    "A rock arch of natural sandstone frames the sky.",
    "The tagged wall of the underpass is covered in bright murals.",
]


@pytest.mark.parametrize(("kind", "sentence"), [(k, s) for k, ss in BY_KIND.items() for s in ss])
def test_each_kind_reaches_its_long_tail(kind: str, sentence: str) -> None:
    # Removed, and a rule of its kind matches it (the first rule to match, which names
    # the reason, may be of another kind: "Standardized the wording" is a critique too).
    assert classify_sentence(sentence, PROMPT) is not None
    s = Sentence(sentence, PROMPT)
    assert any(r.kind == kind and r.applies(s) and r.matches(s) for r in RULES)


@pytest.mark.parametrize("sentence", CONTENT)
def test_the_same_words_about_the_picture_are_content(sentence: str) -> None:
    assert split_sentences(sentence) == [sentence]
    assert classify_sentence(sentence, PROMPT) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "A banner asks 'Ready? Set. Go!' above the start. Runners crouch.",
            ["A banner asks 'Ready? Set. Go!' above the start.", "Runners crouch."],
        ),
        # A quotation that ends its sentence still ends it; an apostrophe opens nothing.
        ("He shouts 'Stop.' Then he runs.", ["He shouts 'Stop.'", "Then he runs."]),
        ("The dogs' bowls are red. It is noon.", ["The dogs' bowls are red.", "It is noon."]),
        ("Don't panic! It's fine.", ["Don't panic!", "It's fine."]),
    ],
)
def test_a_single_quotation_keeps_its_own_sentence_ends(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_a_quoted_question_on_a_sign_is_kept_whole() -> None:
    text = "A poster asks 'Need a lift? Call us.' in red. A taxi waits."
    assert clean_caption(text, PROMPT).text == text


def test_the_gates_in_front_of_the_new_patterns_never_change_a_decision() -> None:
    names = ("artifact_dev_v7.jsonl", "artifact_holdout_v4.jsonl", "artifact_dev_kinds.jsonl")
    rows = [json.loads(line) for n in names for line in (DATA / n).read_text().splitlines()]
    texts = [r["sentence"] for r in rows] + CONTENT
    texts += [s for ss in BY_KIND.values() for s in ss]
    assert len(texts) > 2500
    gates = (
        (procedure._METHOD_WORDS, procedure._METHOD),
        (meta_discourse._GRADED_WORDS, meta_discourse._GRADED_TEXT),
    )
    assert_gates_never_change_a_decision(texts, gates, PROMPT)
