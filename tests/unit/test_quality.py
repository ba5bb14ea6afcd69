"""Caption quality metrics: exact values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from kale_spark.curation.quality import (
    SCORE_COLUMNS,
    WordStats,
    knowledge_retention,
    knowledge_spans,
    novel_share,
    score_caption,
    score_frame,
    word_count,
    word_stats,
    word_stats_lines,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A real-world sign, 3.5 m tall, in the U.S. isn't new.", 11),
        ("", 0),
        (None, 0),
        ("  Hello,   world!  ", 2),
    ],
)
def test_word_count(text, expected: int) -> None:
    assert word_count(text) == expected


@pytest.mark.parametrize(
    ("alt_text", "expected"),
    [
        ("The Eiffel Tower at night, Paris 2019", ["Eiffel Tower", "Paris", "2019"]),
        ("Sony XR-250 drone by DJI, June 5, 2019", ["Sony XR-250", "DJI", "June", "5", "2019"]),
        (
            "Statue of Liberty and the Empire State Building in NYC",
            ["Statue of Liberty", "Empire State Building", "NYC"],
        ),
        ("New iPhone 12 Pro in blue", ["New iPhone 12 Pro"]),
        ("Photo Of The Eiffel Tower At Night", ["Photo Of The Eiffel Tower", "Night"]),
        ("Johnson & Johnson baby shampoo, 3.5 oz", ["Johnson & Johnson", "3.5"]),
        ("The U.S. Capitol", ["U.S. Capitol"]),
        ("eBay listing: PARIS, paris, Paris", ["eBay", "PARIS"]),
        ("a dog on grass", []),
        (None, []),
    ],
)
def test_knowledge_spans(alt_text, expected: list[str]) -> None:
    assert knowledge_spans(alt_text) == expected


def test_knowledge_retention() -> None:
    alt = "Eiffel Tower, Paris 2019"
    assert knowledge_retention(alt, "The eiffel tower in Paris at dusk.") == pytest.approx(2 / 3)
    assert knowledge_retention(alt, "A Parisian tower in 2019.") == pytest.approx(1 / 3)
    assert knowledge_retention("XR-250 drone", "The XR 250 drone.") == 1.0
    assert knowledge_retention("a dog on grass", "A dog.") is None
    assert knowledge_retention("Eiffel Tower", None) == 0.0


def test_novel_share() -> None:
    caption = "A red bus drives past a tall clock tower."
    dense = "A red bus on a street near a clock tower."
    # content words: red bus drives past tall clock tower; novel: drives past tall
    assert novel_share(caption, dense, "London bus") == pytest.approx(3 / 7)
    assert novel_share("The and of.", dense, "") == 0.0
    assert novel_share("Red red bus", "bus", None) == pytest.approx(2 / 3)


def test_score_caption() -> None:
    assert score_caption("The Eiffel Tower glows at night.", "A tower glows.", "Eiffel Tower") == {
        "word_count": 6,
        "knowledge_retention": 1.0,
        "novel_share": 0.25,  # content: eiffel tower glows night; novel: night
    }


def test_score_frame() -> None:
    pdf = pd.DataFrame(
        {
            "uid": ["a", "b"],
            "caption": ["The Eiffel Tower glows at night.", None],
            "dense": ["A tower glows.", "A dog."],
            "alt": ["Eiffel Tower", "a dog"],
        },
        index=[10, 11],
    )
    out = score_frame(pdf, "caption", "dense", "alt")
    assert list(out.columns) == ["uid", "caption", "dense", "alt", *SCORE_COLUMNS]
    assert list(pdf.columns) == ["uid", "caption", "dense", "alt"]
    assert list(out.index) == [10, 11]
    assert out["word_count"].dtype == "int64"
    assert out["knowledge_retention"].dtype == "float64"
    assert out["word_count"].tolist() == [6, 0]
    assert out.loc[10, "knowledge_retention"] == 1.0
    assert math.isnan(out.loc[11, "knowledge_retention"])
    assert out["novel_share"].tolist() == [0.25, 0.0]


def test_word_stats_by_stage_with_null_dense_captions() -> None:
    rows = [
        # stage 1: caption 3 and 6 words, dense 2 and 4, alt-text 1 and 2
        {
            "stage": "stage1",
            "caption": "A red bus.",
            "dense_caption": "A bus.",
            "alt_text": "London",
        },
        {
            "stage": "stage1",
            "caption": "A red bus drives past Big.",
            "dense_caption": "A bus drives past.",
            "alt_text": "London bus",
        },
        # stage 2: the student writes no dense caption (null), NaN as pandas gives it
        {"stage": "stage2", "caption": "Two dogs run.", "dense_caption": None, "alt_text": "dogs"},
        {
            "stage": "stage2",
            "caption": "One cat sleeps on a mat today.",
            "dense_caption": math.nan,
            "alt_text": None,
        },
    ]
    stats = {(s.stage, s.field): s for s in word_stats(rows)}
    assert [(s.stage, s.field) for s in word_stats(rows)] == [
        (stage, field)
        for stage in ("stage1", "stage2", "all")
        for field in ("caption", "dense_caption", "alt_text")
    ]
    assert stats["stage1", "caption"] == WordStats("stage1", "caption", 2, 4.5, 4.5)
    assert stats["stage1", "dense_caption"] == WordStats("stage1", "dense_caption", 2, 3.0, 3.0)
    assert stats["stage2", "caption"] == WordStats("stage2", "caption", 2, 5.0, 5.0)
    assert stats["stage2", "dense_caption"] == WordStats("stage2", "dense_caption", 0, None, None)
    assert stats["stage2", "alt_text"] == WordStats("stage2", "alt_text", 1, 1.0, 1.0)
    # all: captions 3, 6, 3, 7 -> mean 4.75, median (3 + 6) / 2
    assert stats["all", "caption"] == WordStats("all", "caption", 4, 4.75, 4.5)
    assert stats["all", "dense_caption"] == WordStats("all", "dense_caption", 2, 3.0, 3.0)
    assert stats["all", "alt_text"] == WordStats("all", "alt_text", 3, 4 / 3, 1.0)
    assert word_stats([]) == []


def test_word_stats_lines() -> None:
    stats = [
        WordStats("stage2", "caption", 2, 5.0, 5.0),
        WordStats("stage2", "dense_caption", 0, None, None),
    ]
    assert word_stats_lines(stats) == [
        "words per text (mean / median; KALE: 67.26 mean caption words):",
        "  stage2: caption 5.0 / 5.0 (n=2), dense_caption n/a / n/a (n=0)",
    ]
    assert word_stats_lines([]) == ["words per text: no rows"]
