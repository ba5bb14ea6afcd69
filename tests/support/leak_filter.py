"""The filter stage's batch function over one honest lead sentence followed by each
rule's example sentences: what the rule tests check end to end (tests/unit/test_leak_rules_*)."""

from __future__ import annotations

import pandas as pd

from kale_spark.prompts import FUSE_CAPSFUSION_V1
from kale_spark.stages.filter import filter_batch


def assert_each_rule_removes_its_sentences(
    by_rule: dict[str, list[str]], lead: str, alt_text: str, dense_caption: str
) -> None:
    """Every caption is ``lead`` plus one sentence of ``by_rule``: each sentence must be
    removed with its rule's name as the reason, and ``lead`` kept."""
    captions = [f"{lead} {s}" for ss in by_rule.values() for s in ss]
    frame = pd.DataFrame(
        {
            "uid": [str(i) for i in range(len(captions))],
            "stage": "stage1",
            "model": "m",
            "prompt_id": FUSE_CAPSFUSION_V1.id,
            "alt_text": alt_text,
            "dense_caption": dense_caption,
            "caption_raw": captions,
        }
    )
    out = filter_batch(frame, min_words=3)
    reasons = [r for rs in out["removal_reasons"] for r in rs]
    for name, sentences in by_rule.items():
        assert reasons.count(name) == len(sentences), name
    assert set(out["caption"]) == {lead}


def assert_gates_never_change_a_decision(texts, gates, prompt: str) -> None:
    """Word gates only spare work: wherever a gated regex (``gates``: (words, regex)
    pairs) or a rule matches one of ``texts``, its gate lets the sentence through."""
    from kale_spark.curation import RULES
    from kale_spark.curation.leaks import Sentence

    for text in texts:
        s = Sentence(text, prompt)
        for words, rx in gates:
            assert not rx.search(s.masked) or not words.isdisjoint(s.words), text
        for rule in RULES:
            assert not rule.matches(s) or rule.applies(s), (rule.name, text)
