"""The dataset card's figures, aggregated in Spark over the exported table version.

The caption-length histogram is binned by :func:`kale_spark.release.card.histogram` (the one
binning rule): Spark only counts rows per word count, which has few distinct values.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from kale_spark.release import card
from kale_spark.release import stats as caption_stats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["card_figures"]


def card_figures(df: DataFrame) -> dict[str, Any]:
    """`card.CardInfo` keyword arguments: row count, means, median, removals, the
    caption-length histogram, rows by stage and by model, and words per text by stage
    (kale_spark/release/stats.py), of `kale` rows `df`."""
    from pyspark.sql import functions as F

    agg = df.agg(
        F.count("*").alias("rows"),
        F.avg("word_count").alias("mean_words"),
        F.percentile(F.col("word_count"), F.lit(0.5)).alias("median_words"),
        F.avg("knowledge_retention").alias("mean_retention"),
        F.avg("novel_share").alias("mean_novel_share"),
        F.sum((F.size("removed_sentences") > 0).cast("long")).alias("rows_with_removals"),
        F.sum(F.size("removed_sentences")).alias("sentences_removed"),
    ).first()
    by_words: Counter[int] = Counter()
    by_stage: Counter[str] = Counter()
    by_model: Counter[str] = Counter()
    for row in df.groupBy("word_count", "stage", "model").count().collect():
        n = int(row["count"])
        by_words[int(row["word_count"])] += n
        by_stage[row["stage"]] += n
        by_model[row["model"]] += n
    return {
        "rows": int(agg["rows"]),
        "mean_words": agg["mean_words"],
        "median_words": agg["median_words"],
        "mean_retention": agg["mean_retention"],
        "mean_novel_share": agg["mean_novel_share"],
        "rows_with_removals": int(agg["rows_with_removals"] or 0),
        "sentences_removed": int(agg["sentences_removed"] or 0),
        "histogram": card.histogram(by_words),
        "rows_by_stage": dict(by_stage),
        "rows_by_model": dict(by_model),
        "word_stats": caption_stats.word_stats(df),
    }
