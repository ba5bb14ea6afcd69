"""Caption curation: sentence splitting and leaked-prompt removal (pure, no Spark)."""

from kale_spark.curation.artifacts import (
    BASELINE_KEYWORDS,
    Cleaned,
    classify_sentence,
    clean_caption,
    keyword_baseline,
    split_sentences,
)

__all__ = [
    "BASELINE_KEYWORDS",
    "Cleaned",
    "classify_sentence",
    "clean_caption",
    "keyword_baseline",
    "split_sentences",
]
