"""Caption curation (pure, no Spark): sentence splitting and leaked-prompt removal.

- :mod:`.sentences`: :func:`split_sentences`, exact substrings of a caption.
- :mod:`.artifacts`: :func:`clean_caption` (the filter's leak removal) and KALE's
  keyword rule, :func:`keyword_baseline`, kept for comparison.
- :mod:`.leaks`: the rules, one module per kind of leak, and after them the learned
  classifier (:mod:`.leaks.learned`, weights read on first use).
- :mod:`.quality`: the score columns (word count, knowledge retention, novel share) and
  the one definition of a word.

Pure Python that imports nothing else of kale_spark (the filter hands it the
instruction text); the filter stage and the release code import it.
"""

from kale_spark.curation.artifacts import (
    BASELINE_KEYWORDS,
    KEYWORD_REASON,
    Cleaned,
    classify_sentence,
    clean_caption,
    keyword_baseline,
)
from kale_spark.curation.leaks import KINDS, RULE_NAMES, RULES
from kale_spark.curation.sentences import split_sentences

__all__ = [
    "BASELINE_KEYWORDS",
    "KEYWORD_REASON",
    "KINDS",
    "RULES",
    "RULE_NAMES",
    "Cleaned",
    "classify_sentence",
    "clean_caption",
    "keyword_baseline",
    "split_sentences",
]
