"""The filter stage's pure parts (kale_spark/stages/filter.py): decide and filter_batch."""

from __future__ import annotations

import pandas as pd

from kale_spark import schema
from kale_spark.prompts import FUSE_CAPSFUSION_V1, PROMPTS, PromptTemplate
from kale_spark.stages.filter import decide, filter_batch


def test_decide():
    assert decide("", 0, 5) == schema.REJECT_EMPTY
    assert decide("   ", 0, 0) == schema.REJECT_EMPTY
    assert decide("A tower.", 2, 5) == schema.REJECT_TOO_SHORT
    assert decide("A tall tower by the river.", 6, 5) is None


def test_filter_batch():
    body = "The Eiffel Tower in Paris rises against an orange sunset sky above the trees."
    leak = "As indicated in Sentence 1, the photo was taken in 2019."
    pdf = pd.DataFrame(
        {
            "uid": ["a", "b", "c", "d"],
            "stage": ["stage1"] * 4,
            "model": ["m"] * 4,
            "prompt_id": [FUSE_CAPSFUSION_V1.id] * 3 + ["not_a_prompt"],
            "alt_text": ["Eiffel Tower at sunset, Paris, 2019"] * 4,
            "dense_caption": ["a tall iron tower against an orange sky with trees"] * 4,
            "caption_raw": [f"{body} {leak}", leak, None, body],
        }
    )
    out = filter_batch(pdf, min_words=5)
    assert list(out["caption"]) == [body, "", "", body]
    assert list(out["removed_sentences"][0]) == [leak]
    assert list(out["removal_reasons"][0]) == ["text_reference"]
    assert list(out["reject_reason"]) == [None, schema.REJECT_EMPTY, schema.REJECT_EMPTY, None]
    assert list(out["rejected"]) == [False, True, True, False]
    assert list(out["word_count"]) == [14, 0, 0, 14]
    assert out["knowledge_retention"][0] == 2 / 3  # Eiffel Tower, Paris; not 2019
    assert list(pdf.columns) == [
        "uid",
        "stage",
        "model",
        "prompt_id",
        "alt_text",
        "dense_caption",
        "caption_raw",
    ]  # input untouched


def test_filter_batch_checks_against_the_instruction_actually_sent(monkeypatch):
    """A sentence echoing the system turn is a leak only for the rows whose
    gen_params say that system turn was sent (ModelSpec.lineage records it). The system
    turn here uses words no general rule knows, so only the row's instruction can tell."""
    system = PromptTemplate(
        id="system_test_bakery",
        kind="system",
        template="Mention the lemon tarts and the copper kettle from the bakery counter.",
    )
    monkeypatch.setitem(PROMPTS, system.id, system)
    body = "The Eiffel Tower in Paris rises against an orange sunset sky above the trees."
    echo = "Shoppers admire the lemon tarts and the copper kettle from the bakery counter."
    pdf = pd.DataFrame(
        {
            "uid": ["a", "b"],
            "stage": ["stage1"] * 2,
            "model": ["m"] * 2,
            "prompt_id": [FUSE_CAPSFUSION_V1.id] * 2,
            "alt_text": ["Eiffel Tower at sunset"] * 2,
            "dense_caption": ["a tall iron tower against an orange sky"] * 2,
            "caption_raw": [f"{body} {echo}"] * 2,
            "gen_params": [
                '{"do_sample":false,"max_new_tokens":64,"num_beams":1}',
                '{"do_sample":false,"max_new_tokens":64,"num_beams":1,'
                '"system_prompt_id":"system_test_bakery"}',
            ],
        }
    )
    out = filter_batch(pdf, min_words=5)
    assert list(out["caption"]) == [f"{body} {echo}", body]
    assert [list(r) for r in out["removal_reasons"]] == [[], ["instruction_overlap"]]
