"""The learned leak step (kale_spark/curation/leaks/learned.py): the shipped weights, the
features and their hashing, the guards that keep shown text, the filter's count, and the
training script. Its held-out figures come from bench/leak_model_cv.py, not from here."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zlib
from array import array
from pathlib import Path

import pandas as pd
import pytest

from kale_spark.config import load_config
from kale_spark.curation import RULE_NAMES, classify_sentence, clean_caption
from kale_spark.curation.leaks import CHECKS, RULES, Sentence
from kale_spark.curation.leaks.learned import (
    WEIGHTS_PATH,
    LeakModel,
    LearnedLeak,
    feature_ids,
    features,
    has_cue,
    shipped,
)
from kale_spark.prompts import FUSE_CAPSFUSION_V1
from kale_spark.stages.filter import filter_batch

ROOT = Path(__file__).resolve().parents[2]
PROMPT = FUSE_CAPSFUSION_V1.template
DEV_SPLITS = {
    "dev",
    "dev_history",
    "dev_kinds",
    "dev_v2",
    "dev_v3",
    "dev_v4",
    "dev_v5",
    "dev_v6",
    "dev_holdout_v4",
    "dev_v7",
}

# Written from the kinds' definitions (kale_spark/curation/leaks/base.py KINDS): a leak
# of each kind, in words a reader of the definition would use.
LEAKS = [
    "The web snippet supplies the date of the festival.",  # meta_discourse
    "Let me now combine the two descriptions into one.",  # narration
    "The output should stay faithful to the image while adding the real names.",  # echo
    "The shorter input is too terse to be useful.",  # input_critique
    "The two inputs disagree about the season.",  # agreement_hedge
]
HONEST = [
    "A red bridge spans the bay under a pale morning sky.",
    "Two children feed ducks at the edge of the pond.",
    "A wooden table holds three jars of honey and a loaf of bread.",
    "The second car in the row is a blue Volkswagen Beetle.",
]
# Labelled leaks of dev splits (its training data) that the hand rules keep and the shipped
# step removes: for the tests of its plumbing, not of its accuracy.
# Input references by an oblique name ("details" of the texts), written from the kind's
# definition: the hand rules keep them, the shipped step removes them. (The rules now
# catch every labelled dev leak, so no dev sentence serves here any more.)
STEP_LEAKS = [
    "Those details mention the designer.",
    "The listed details mention a year.",
]
# A model that calls every sentence a leak: what the guards alone keep.
ALWAYS = LeakModel(array("f", [0.0] * (1 << 4)), bias=10.0, threshold=0.5, bits=4)


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_shipped_weights_are_small_package_data_trained_on_dev_only() -> None:
    model = shipped()
    assert WEIGHTS_PATH.stat().st_size < 300_000
    assert len(model.weights) == 1 << model.bits
    assert set(model.meta["trained_on"]) == DEV_SPLITS
    assert 0.5 < model.threshold < 1.0
    # Shipped in the wheel (py3.10 has no tomllib: the line is read as text).
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"kale_spark.curation.leaks" = ["{WEIGHTS_PATH.name}"]' in pyproject


def test_import_does_not_read_the_weights() -> None:
    code = (
        "import kale_spark.curation, kale_spark.stages.filter\n"
        "from kale_spark.curation.leaks import learned\n"
        "print(learned.shipped.cache_info().currsize)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "0"


def test_features_are_words_bigrams_openers_and_flags_with_quotes_masked() -> None:
    assert features('Sentence 2 adds "the date".') == [
        "bias:quoted",
        "s:sentence",
        "s2:sentence 2",
        "w:sentence",
        "w:2",
        "w:adds",
        "b:sentence 2",
        "b:2 adds",
        "m:sentence",
    ]
    assert "bias:shows_text" in features("A poster on the wall lists the rules.")
    # Buckets are CRC-32 of the feature text: the same in every process and machine.
    assert feature_ids("Adds", bits=15)[-1] == zlib.crc32(b"w:adds") & 0x7FFF


def test_scores_do_not_depend_on_the_process() -> None:
    sentence = "The web snippet supplies the date of the festival."
    code = (
        "from kale_spark.curation.leaks.learned import shipped\n"
        f"print(repr(shipped().probability({sentence!r})))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert float(out.stdout) == shipped().probability(sentence)


def test_quoted_text_does_not_move_the_score() -> None:
    model = shipped()
    leak = 'A mug says "Let me now combine the two descriptions into one."'
    plain = 'A mug says "Good morning."'
    assert model.probability(leak) == model.probability(plain)


def test_sentences_of_each_kind_score_high_and_honest_ones_stay() -> None:
    # The shipped threshold is set for precision (0.92): a leak may score under it.
    for sentence in LEAKS:
        assert shipped().probability(sentence) > 0.8, sentence
    for sentence in STEP_LEAKS:
        assert classify_sentence(sentence, PROMPT) is None, sentence
        assert classify_sentence(sentence, PROMPT, CHECKS) == "learned", sentence
    for sentence in HONEST:
        assert classify_sentence(sentence, PROMPT, CHECKS) is None, sentence
        assert shipped().probability(sentence) < 0.5, sentence


def test_the_learned_step_runs_after_the_hand_rules_and_only_when_asked() -> None:
    # A hand rule that matches names the reason; the classifier sees what they keep.
    assert classify_sentence(LEAKS[1], PROMPT, CHECKS) == classify_sentence(LEAKS[1], PROMPT)
    assert classify_sentence(STEP_LEAKS[0], PROMPT) is None  # the default: hand rules only
    assert classify_sentence(STEP_LEAKS[0], PROMPT, CHECKS) == "learned"
    assert load_config().filter.learned_leaks is True


@pytest.mark.parametrize(
    "sentence",
    [
        "A poster on the wall says the result should stay faithful to the image.",
        "The screen displays a form with an alt-text field.",
        "The label is printed in red capitals.",
    ],
)
def test_text_the_image_shows_is_never_judged(sentence: str) -> None:
    assert not LearnedLeak(ALWAYS).matches(Sentence(sentence))
    assert LearnedLeak(ALWAYS).matches(Sentence("You can see two children feed ducks."))


def test_text_a_carrier_opens_with_a_colon_is_never_judged() -> None:
    checks = (LearnedLeak(ALWAYS),)  # the step alone: no hand rule decides here
    # "Combine" is a cue: without the colon the sentence is judged.
    step = "Stir the sauce and combine it with the pasta."
    shown = f"A recipe card lists the steps: 1. {step}"
    assert step not in clean_caption(shown, PROMPT, checks).removed
    assert clean_caption(shown, PROMPT, CHECKS).text == shown  # the shipped model
    # Without the carrier's colon the same sentence is judged (and this model removes it).
    cleaned = clean_caption(f"A cake sits on the card. {step}", PROMPT, checks)
    assert step in cleaned.removed


# Written from the gate's definition (learned.CUES): one sentence per kind of cue, and
# sentences with none of them, some of them short plain ones the classifier scores high.
CUED = [
    "The caption leaves the colour of the door open.",  # inputs
    "The alt-text gives the name of the park.",  # inputs (alt)
    "We see a tram turning at the corner.",  # persons
    "Here you can spot a heron on the rock.",  # persons
    "It should mention the stadium by name.",  # meta verbs
    "The breed of the dog is unclear.",  # hedges
    "The year of the photo is not specified.",  # hedges, two words
    "According to the details provided, the ship is the Queen Mary.",  # given facts
    "Per the supplied info, the tower is in Lyon.",  # given facts, other order
]
UNCUED = [
    "One cat sleeps on a mat today.",
    "Several people are waiting.",
    "Mix the flour.",
    "The room is full of small details.",  # details, but not given or provided
    'A child shouts "you win" at the finish line.',  # a pronoun inside quotes
    "The leaves are turning yellow by the fence.",
]


@pytest.mark.parametrize("sentence", CUED)
def test_a_sentence_with_a_cue_of_talk_about_the_texts_is_judged(sentence: str) -> None:
    view = Sentence(sentence)
    assert has_cue(view)
    step = LearnedLeak(ALWAYS)
    assert step.applies(view) and step.matches(view)  # the triggers never hide a cue


@pytest.mark.parametrize("sentence", UNCUED)
def test_a_sentence_without_a_cue_is_kept_whatever_it_scores(sentence: str) -> None:
    view = Sentence(sentence)
    assert not has_cue(view)
    assert not LearnedLeak(ALWAYS).matches(view)
    checks = (*RULES, LearnedLeak(ALWAYS))
    text = f"A red bridge spans the bay. {sentence}"
    assert clean_caption(text, PROMPT, checks).text == text


def test_the_filter_runs_and_counts_the_learned_step_when_configured() -> None:
    lead = "A red bridge spans the bay under a pale morning sky."
    captions = [f"{lead} {STEP_LEAKS[0]}", f"{lead} {STEP_LEAKS[1]}", lead]
    frame = pd.DataFrame(
        {
            "uid": ["0", "1", "2"],
            "stage": "stage1",
            "model": "m",
            "prompt_id": FUSE_CAPSFUSION_V1.id,
            "alt_text": "Golden Gate Bridge at dawn, San Francisco",
            "dense_caption": "a red bridge over water under a pale sky",
            "caption_raw": captions,
        }
    )
    on = filter_batch(frame, min_words=3, learned=True)
    assert list(on["caption"]) == [lead] * 3
    assert [list(r) for r in on["removal_reasons"]] == [["learned"], ["learned"], []]
    off = filter_batch(frame, min_words=3)
    assert list(off["caption"]) == captions
    assert "learned" in RULE_NAMES  # so `rule.learned` is in every filter run's counts


def test_training_is_deterministic_refuses_the_holdout_and_reproduces_the_shipped_file() -> None:
    train = _bench("train_leak_model")
    with pytest.raises(SystemExit):
        train.split_rows(["holdout_v5"])
    rows = train.split_rows(["dev"])
    texts, labels = [r["sentence"] for r in rows], [r["leak"] for r in rows]
    first, second = train.fit(texts, labels, steps=50), train.fit(texts, labels, steps=50)
    assert first[1] == second[1] and (first[0] == second[0]).all()
    model = shipped()
    rebuilt = train.train_model(model.meta["trained_on"], model.threshold)
    assert rebuilt.bias == pytest.approx(model.bias, abs=1e-4)
    diffs = [abs(a - b) for a, b in zip(rebuilt.weights, model.weights, strict=True)]
    assert max(diffs) < 1e-4
    assert json.dumps(rebuilt.meta, sort_keys=True) == json.dumps(model.meta, sort_keys=True)


def test_the_shipped_weights_load_when_the_package_is_imported_from_a_zip(tmp_path) -> None:
    # spark-submit ships the library as a zip (`make dist`, --py-files): the weights are
    # package data read through importlib.resources, not a path on disk.
    import zipfile

    package = Path(__file__).resolve().parents[2]  # the checkout: kale_spark/ beside tests/
    archive = tmp_path / "kale_spark.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (package / "kale_spark").rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(package).as_posix())
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import kale_spark.curation.leaks.learned as m; "
        "assert '.zip' in m.__file__, m.__file__; print(m.shipped().bits)"
    )
    # -I and -S: no site-packages, so only the zip can provide kale_spark.
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(archive)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(shipped().bits)
