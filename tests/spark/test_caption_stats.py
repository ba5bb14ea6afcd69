"""Words per text by stage, aggregated in Spark (kale_spark/release/stats.py)."""

from __future__ import annotations

from kale_spark.curation.quality import WordStats, word_stats
from kale_spark.release import stats as caption_stats

ROWS = [
    # (stage, caption, dense_caption, alt_text); word counts in the comments
    ("stage1", "A red bus.", "A bus.", "London"),  # 3, 2, 1
    ("stage1", "A red bus drives past Big.", "A bus drives past.", "London bus"),  # 6, 4, 2
    ("stage1", "The U.S. flag flies high.", "A flag.", "US flag 2019"),  # 5, 2, 3
    ("stage2", "Two dogs run.", None, "dogs"),  # 3, null, 1
    ("stage2", "One cat sleeps on a mat today.", None, None),  # 7, null, null
]


def test_word_stats_in_spark(spark):
    df = spark.createDataFrame(
        ROWS, "stage string, caption string, dense_caption string, alt_text string"
    )
    got = caption_stats.word_stats(df)
    by = {(s.stage, s.field): s for s in got}
    assert by["stage1", "caption"] == WordStats("stage1", "caption", 3, 14 / 3, 5.0)
    assert by["stage1", "dense_caption"] == WordStats("stage1", "dense_caption", 3, 8 / 3, 2.0)
    assert by["stage1", "alt_text"] == WordStats("stage1", "alt_text", 3, 2.0, 2.0)
    assert by["stage2", "caption"] == WordStats("stage2", "caption", 2, 5.0, 5.0)
    assert by["stage2", "dense_caption"] == WordStats("stage2", "dense_caption", 0, None, None)
    assert by["stage2", "alt_text"] == WordStats("stage2", "alt_text", 1, 1.0, 1.0)
    # all: captions 3, 6, 5, 3, 7 -> mean 4.8, median 5; dense 2, 4, 2 -> median 2
    assert by["all", "caption"] == WordStats("all", "caption", 5, 4.8, 5.0)
    assert by["all", "dense_caption"] == WordStats("all", "dense_caption", 3, 8 / 3, 2.0)
    assert by["all", "alt_text"] == WordStats("all", "alt_text", 4, 1.75, 1.5)
    # Same figures, same order as the pure reference.
    names = ("stage", "caption", "dense_caption", "alt_text")
    pure = word_stats([dict(zip(names, r, strict=True)) for r in ROWS])
    assert [(s.stage, s.field, s.n, s.median) for s in got] == [
        (s.stage, s.field, s.n, s.median) for s in pure
    ]
    assert all(
        (a.mean is None and b.mean is None) or abs(a.mean - b.mean) < 1e-9
        for a, b in zip(got, pure, strict=True)
    )
    assert caption_stats.word_stats(df.limit(0)) == []
