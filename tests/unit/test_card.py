"""The dataset card and histogram (kale_spark/card.py) and the filter's pure batch step."""

from __future__ import annotations

import io

import pandas as pd
from PIL import Image

from kale_spark import card, schema
from kale_spark.prompts import FUSE_CAPSFUSION_V1
from kale_spark.stages.filter import decide, filter_batch


def test_bins_and_histogram():
    assert card.bin_index(0) == 0
    assert card.bin_index(9) == 0
    assert card.bin_index(10) == 1
    assert card.bin_index(10_000) == card.N_BINS - 1
    counts = card.histogram([0, 5, 12, 67, 68, 500])
    assert len(counts) == card.N_BINS and sum(counts) == 6
    assert counts[0] == 2 and counts[1] == 1 and counts[6] == 2 and counts[-1] == 1
    assert card.bin_label(0) == "0-9" and card.bin_label(card.N_BINS - 1) == "150+"


def test_draw_histogram_is_a_deterministic_png():
    counts = card.histogram([3, 14, 15, 67, 70, 71, 120])
    png = card.draw_histogram(counts)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png == card.draw_histogram(counts)
    assert png != card.draw_histogram(card.histogram([3]))
    with Image.open(io.BytesIO(png)) as img:
        assert img.size == (800, 420)
        # a bar is drawn in the bar colour, the background stays white
        assert (66, 120, 190) in {c for _, c in img.convert("RGB").getcolors(1 << 16)}
        assert img.convert("RGB").getpixel((799, 0)) == (255, 255, 255)
    assert card.draw_histogram([0] * card.N_BINS)[:4] == b"\x89PNG"  # empty table


def _info(**kw):
    base = dict(
        table="kale",
        version=4,
        rows=7,
        shards=[("part-00000.parquet", 3), ("part-00001.parquet", 3), ("part-00002.parquet", 1)],
        columns=[("uid", "string"), ("word_count", "int32")],
        rows_by_stage={"stage1": 7},
        rows_by_model={"tiny:lm": 7},
        mean_words=21.5,
        median_words=20.0,
        mean_retention=0.75,
        mean_novel_share=0.125,
        rows_with_removals=2,
        sentences_removed=3,
        histogram=card.histogram([20, 21, 22, 23, 19, 30, 15]),
        release=2,
        published_at="2026-01-01 12:00:00 UTC",
        config_hash="abc123",
        run_id="publish-x",
        source_versions={"samples": 3, "filtered_captions": 5},
    )
    base.update(kw)
    return card.CardInfo(**base)


def test_card_text_figures_and_front_matter():
    text = card.card_text(_info())
    assert text.startswith("---\nconfigs:\n- config_name: default\n")
    assert '    path: "part-*.parquet"' in text
    assert "# kale v4" in text
    assert "version 4 (release 2)" in text
    assert "| rows | 7 |" in text
    assert "| mean caption words | 21.5 |" in text
    assert "| mean knowledge retention | 0.75 |" in text
    assert "| mean novel share | 0.12 |" in text or "| mean novel share | 0.13 |" in text
    assert "| sentences removed | 3 |" in text
    assert "| rows by `tiny:lm` | 7 |" in text
    assert "| part-00002.parquet | 1 |" in text
    assert "| `word_count` | int32 | words in `caption` |" in text
    assert "| 20-29 | 4 |" in text
    assert "| filtered_captions | 5 |" in text
    assert "kale export --version 4" in text
    assert "VERSION AS OF 4" in text
    assert "![caption length histogram](caption_length_hist.png)" in text
    assert card.card_text(_info()) == text


def test_card_text_without_release_or_figures():
    text = card.card_text(_info(release=None, mean_words=None, histogram=(), source_versions={}))
    assert "not a recorded release" in text
    assert "| mean caption words | n/a |" in text
    assert "## Lineage" not in text


def test_every_gold_column_is_documented():
    assert set(schema.KALE_SCHEMA.fieldNames()) == set(card.COLUMN_DOCS)


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
    assert list(out["removal_reasons"][0]) == ["prompt_part_reference"]
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


def test_card_words_per_text_section():
    from kale_spark.quality import WordStats

    stats = [
        WordStats("stage1", "caption", 5, 61.2, 60.0),
        WordStats("stage1", "dense_caption", 5, 80.4, 79.0),
        WordStats("stage1", "alt_text", 5, 9.8, 8.0),
        WordStats("stage2", "caption", 2, 55.0, 55.0),
        WordStats("stage2", "dense_caption", 0, None, None),
    ]
    text = card.card_text(_info(word_stats=stats))
    section = text.split("## Words per text\n", 1)[1].split("\n## ", 1)[0]
    assert section.splitlines() == [
        "",
        "KALE's captions average 67.26 words (BLIP3-KALE, Table 1). "
        "Stage 2 rows have no dense caption; they are left out of its figures.",
        "",
        "| stage | text | rows | mean words | median words |",
        "|---|---|---|---|---|",
        "| stage1 | `caption` | 5 | 61.2 | 60.0 |",
        "| stage1 | `dense_caption` | 5 | 80.4 | 79.0 |",
        "| stage1 | `alt_text` | 5 | 9.8 | 8.0 |",
        "| stage2 | `caption` | 2 | 55.0 | 55.0 |",
        "| stage2 | `dense_caption` | 0 | n/a | n/a |",
        "| KALE (paper) | `caption` | n/a | 67.26 | n/a |",
    ]
    assert "## Words per text" not in card.card_text(_info())


def test_filter_batch_checks_against_the_instruction_actually_sent():
    """A sentence echoing the system turn is a leak only for the rows whose
    gen_params say that system turn was sent (ModelSpec.lineage records it)."""
    body = "The Eiffel Tower in Paris rises against an orange sunset sky above the trees."
    echo = "It gives a factual caption only, without any introduction, notes or comments."
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
                '"system_prompt_id":"system_captioner_v1"}',
            ],
        }
    )
    out = filter_batch(pdf, min_words=5)
    assert list(out["caption"]) == [f"{body} {echo}", body]
    assert [list(r) for r in out["removal_reasons"]] == [[], ["prompt_overlap"]]
