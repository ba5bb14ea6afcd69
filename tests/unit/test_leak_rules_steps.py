"""The leak rules added for issue 24's second round, each tested from its definition
(kale_spark/curation/leaks): a step of the writing announced (next_step), another
version offered (assistant_offer), the writer saying what it is (model_identity), what
the text should weigh most (emphasis_directive),
and the wider reach of the existing kinds (the machine's caption, the page an image came
from, disclaimers about the inputs). Honest sentences with the same words stay, and each
new rule's name reaches the filter's removal reasons (the run's `rule.<name>` counts)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kale_spark.curation import RULES, classify_sentence
from kale_spark.curation.leaks import RULE_NAMES, Sentence, echoes, hedges, narration
from kale_spark.prompts import FUSE_CAPSFUSION_V1
from tests.support.leak_filter import assert_each_rule_removes_its_sentences

PROMPT = FUSE_CAPSFUSION_V1.template
KIND_OF = {rule.name: rule.kind for rule in RULES}

# Written from the definitions; none copied from the labelled sets.
BY_RULE = {
    # The writer announces, opens or closes a step of its own text.
    "next_step": [
        "Having outlined the harbor, the account turns toward the fishing boats.",
        "With the skyline described, the caption proceeds to the river below.",
        "So much for the interior; outside, a garden stretches to the fence.",
        "The closing section covers the weather over the valley.",
        "The next element to describe is the carpet.",
    ],
    # Another version or a further edit offered to the reader.
    "assistant_offer": [
        "A version in French can be supplied upon request.",
        "If preferred, the names can be dropped from the caption.",
        "Glad to make it punchier.",
        "Should a longer text be wanted, more detail can be added.",
    ],
    # The writer says what it is: a model, a system, an assistant without a view.
    "model_identity": [
        "The assistant has no access to the pixels themselves.",
        "Speaking as a multimodal captioning model, the scene looks like a fair.",
        "As a model built for text, the colors here are guesses.",
    ],
    # What the text should put first or weigh most.
    "emphasis_directive": [
        "Prominence should be given to the name of the lighthouse.",
        "The ship's name must come first.",
        "Lead with the name of the orchestra.",
        "The central point to get across is that this is the first flight.",
    ],
}
# The existing kinds, reaching further: the rule may be any of the kind's.
BY_KIND = {
    "meta_discourse": [
        "The description the captioning system returned mentions a kite.",
        "The tagger's labels include beach and umbrella.",
        "The caption that came with the picture names the chef.",
        "The product title calls the lamp a Tolomeo.",
        "A knowledge-grounded caption of the harbor names the ferry.",
    ],
    "narration": ["Being merely an AI, the assistant cannot see the hues."],
    "agreement_hedge": [
        "The season goes unmentioned in both texts.",
        "The team's name has not been verified against the photo.",
        "There is a discrepancy over the year between the two.",
    ],
}
# Honest captions with the same words: text on a thing in the image, or the scene itself.
CONTENT = [
    'A poster reads "Happy to help" above the information desk.',
    "The sign says tours are available on request.",
    "A banner announces the next step of the renovation.",
    "Attention-grabbing posters cover the subway wall.",
    "The input and output jacks sit on the back of the amplifier.",
    "A fashion model describes her outfit to a reporter on the runway.",
    "Two lanes merge before the bridge.",
    "The final section of the fence is painted white.",
    "A hiker walks past the trail's last marker.",
    "The menu board lists the specials, with the soup going first.",
]


@pytest.mark.parametrize(("name", "sentence"), [(n, s) for n, ss in BY_RULE.items() for s in ss])
def test_each_new_rule_catches_its_definition(name: str, sentence: str) -> None:
    assert classify_sentence(sentence, PROMPT) == name


@pytest.mark.parametrize(("kind", "sentence"), [(k, s) for k, ss in BY_KIND.items() for s in ss])
def test_the_kinds_reach_further(kind: str, sentence: str) -> None:
    reason = classify_sentence(sentence, PROMPT)
    assert reason is not None and KIND_OF[reason] == kind


@pytest.mark.parametrize("sentence", CONTENT)
def test_the_same_words_in_the_image_are_content(sentence: str) -> None:
    assert classify_sentence(sentence, PROMPT) is None


def test_new_rules_are_named_steps_counted_by_the_filter() -> None:
    for name in BY_RULE:
        assert name in RULE_NAMES
    assert_each_rule_removes_its_sentences(
        BY_RULE,
        "A lighthouse stands on the cliff at dusk.",
        "Lighthouse at dusk",
        "a lighthouse on a cliff at dusk",
    )


def test_inner_word_gates_never_change_a_decision() -> None:
    # The gates inside next_step, emphasis_directive and the hedges only spare work:
    # wherever their regex matches a dev sentence, one of the gate's words is there.
    data = Path(__file__).resolve().parents[1] / "data" / "artifact_dev_kinds.jsonl"
    texts = pd.read_json(data, lines=True)["sentence"].tolist()
    texts += [s for ss in (*BY_RULE.values(), *BY_KIND.values()) for s in ss]
    gated = [
        (narration._STEP_WORDS, narration._STEP_ANYWHERE),
        (hedges._DISCLAIMER_WORDS, hedges._DISCLAIMER),
        (hedges._DIFFERENT_WORDS, hedges._DIFFERENT),
        *echoes._PRIORITY,
    ]
    assert len(texts) > 1000
    for text in texts:
        s = Sentence(text, PROMPT)
        for words, rx in gated:
            assert not rx.search(s.masked) or not words.isdisjoint(s.words), text
