"""The dataset card and histogram (kale_spark/release/card.py)."""

from __future__ import annotations

import io

from PIL import Image

from kale_spark import schema
from kale_spark.release import card


def test_bins_and_histogram():
    assert card.bin_index(0) == 0
    assert card.bin_index(9) == 0
    assert card.bin_index(10) == 1
    assert card.bin_index(10_000) == card.N_BINS - 1
    counts = card.histogram([0, 5, 12, 67, 68, 500])
    assert len(counts) == card.N_BINS and sum(counts) == 6
    assert counts[0] == 2 and counts[1] == 1 and counts[6] == 2 and counts[-1] == 1
    # {word count: captions}, as kale_spark/release/charts.py counts them in Spark: same bins
    by_words = card.histogram({0: 4, 9: 1, 10: 2, 67: 3, 149: 1, 150: 1, 900: 2})
    assert by_words == [5, 2, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 3]
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


def test_card_words_per_text_section():
    from kale_spark.curation.quality import WordStats

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
