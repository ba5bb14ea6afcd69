"""Caption quality metrics (pure Python + pandas, no Spark).

Scores only; thresholds are applied elsewhere (score, then decide).

- ``word_count``: words in the caption. A word is a run of letters/digits that may
  contain inner apostrophes, hyphens or dots: "real-world", "don't", "3.5" and
  "U.S." each count once.
- ``knowledge_retention``: share of the alt-text's knowledge spans (see
  :func:`knowledge_spans`) that appear in the caption; ``None`` (NaN in a frame)
  when the alt-text has no spans.
- ``novel_share``: share of the caption's content-word occurrences (lowercased,
  stopwords excluded, repeats counted) that appear in neither the dense caption
  nor the alt-text; 0.0 for a caption without content words. A lexical proxy for
  hallucinated or paraphrased content: "buses" against a source saying "bus"
  counts as novel.

``word_stats`` gives the mean and median words of the caption, the dense caption
and the alt-text by stage (KALE's captions average :data:`KALE_MEAN_CAPTION_WORDS`).

Matching ignores case and punctuation: both sides are reduced to lowercase
letter/digit runs, and a span is found when its runs occur contiguously in the
caption's runs ("XR-250" matches "XR 250"; "Paris" does not match "Parisian").
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "KALE_MEAN_CAPTION_WORDS",
    "KNOWLEDGE_RETENTION",
    "NOVEL_SHARE",
    "SCORE_COLUMNS",
    "STOPWORDS",
    "WORD",
    "WORD_COUNT",
    "WORD_RUN",
    "WORD_STATS_FIELDS",
    "WordStats",
    "knowledge_retention",
    "knowledge_spans",
    "novel_share",
    "score_caption",
    "score_frame",
    "word_count",
    "word_stats",
    "word_stats_lines",
]

# KALE's captions average 67.26 words (BLIP3-KALE, arXiv 2411.07461, Table 1).
KALE_MEAN_CAPTION_WORDS = 67.26

WORD_COUNT = "word_count"
KNOWLEDGE_RETENTION = "knowledge_retention"
NOVEL_SHARE = "novel_share"
SCORE_COLUMNS = (WORD_COUNT, KNOWLEDGE_RETENTION, NOVEL_SHARE)

STOPWORDS = frozenset(
    """a about above across after again against all almost along also although am among an
    and another any are around as at be because been before behind being below beside
    besides between both but by can could did do does doing down during each either else
    even every few for from further had has have having he her here hers herself him himself
    his how i if in inside into is it its itself just many may me might more most much must
    my myself near neither next no nor not now of off on once one only onto or other our ours
    ourselves out outside over own per quite rather same several she should since so some
    such than that the their theirs them themselves then there these they this those though
    through throughout to too toward towards under until up upon us very via was we were what
    when where whether which while who whom whose why will with within without would yet you
    your yours yourself yourselves s t""".split()
)

# The one definition of a word (word counts everywhere: filter, stats, card): letters or
# digits, joined by an apostrophe, hyphen or dot ("don't", "x-ray", "3.5").
WORD = re.compile(r"[^\W_]+(?:['’\-.][^\W_]+)*")
# A word's pieces, the runs of letters or digits: what the echo rules compare.
WORD_RUN = re.compile(r"[^\W_]+")
_TOKEN = re.compile(
    r"(?:[^\W\d_]\.){2,}(?![^\W_])|\d+(?:[.,:/\-]\d+)*(?:[^\W\d_]+)?|[^\W_]+(?:['’&.\-][^\W_]+)*|&"
)
_NUMBER = re.compile(r"\d+(?:[.,:/\-]\d+)*")
# Lowercase words that may sit inside a name: "Statue of Liberty", "Johnson & Johnson".
_CONNECTORS = frozenset("of the de du da del della di la le von van der den y &".split())


def _text(value: Any) -> str:
    """``value`` as a string; None and NaN become the empty string."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return str(value)


def word_count(text: str | None) -> int:
    """Number of words in ``text`` (0 for None or empty)."""
    return len(WORD.findall(_text(text)))


def _kind(token: str) -> str:
    if token == "&" or (token.lower() in _CONNECTORS and not token.isupper()):
        return "connector"
    if _NUMBER.fullmatch(token):
        return "number"
    has_digit = any(c.isdigit() for c in token)
    has_alpha = any(c.isalpha() for c in token)
    if has_digit and has_alpha:
        return "name"  # product code: XR-250, S21, 5D
    first = token[0]
    if first.isupper():
        if (len(token) == 1 or token[1:].islower()) and token.lower() in STOPWORDS:
            return "stop"  # "The", "In", "With" (an ALL-CAPS "US" is a name)
        return "name"
    if any(c.isupper() for c in token[1:]):
        return "name"  # brand-like camel case: iPhone, eBay
    return "other"


def _close(span: list[tuple[int, int, str]], text: str, out: list[str]) -> None:
    # Drop connectors at either end, and split numbers off the ends of a name.
    while span and span[0][2] == "connector":
        span.pop(0)
    while span and span[-1][2] == "connector":
        span.pop()
    while span and span[0][2] == "number":
        out.append(text[span[0][0] : span[0][1]])
        span.pop(0)
        while span and span[0][2] == "connector":
            span.pop(0)
    tail: list[str] = []
    while span and span[-1][2] == "number":
        tail.insert(0, text[span[-1][0] : span[-1][1]])
        span.pop()
        while span and span[-1][2] == "connector":
            span.pop()
    if span:
        out.append(text[span[0][0] : span[-1][1]])
    out.extend(tail)


def knowledge_spans(alt_text: str | None) -> list[str]:
    """Knowledge-bearing spans of ``alt_text`` (an approximation of named entities).

    A span is a run of name tokens - capitalised words (Eiffel Tower), ALL-CAPS
    words (IKEA), camel-case brands (iPhone) and product codes mixing letters and
    digits (XR-250, S21) - separated only by spaces, possibly joined by "of",
    "the", "de", "von", "&", ... (Statue of Liberty). Numbers, years and dates
    (2019, 3.5, 12/25/2020) are spans of their own, and stay inside a name only
    between two name tokens (iPhone 12 Pro). Punctuation ends a span. Title-case
    stopwords (The, A, In, With) are not names, so a sentence-initial "The" is
    dropped; other sentence-initial capitalised words are kept (no dictionary).
    Spans are exact substrings of ``alt_text``, in order, without case-insensitive
    duplicates.
    """
    text = _text(alt_text)
    spans: list[str] = []
    current: list[tuple[int, int, str]] = []
    prev_end = 0
    for m in _TOKEN.finditer(text):
        kind = _kind(m.group(0))
        if current and text[prev_end : m.start()].strip():
            _close(current, text, spans)
            current = []
        prev_end = m.end()
        if kind in ("name", "number") or (kind == "connector" and current):
            current.append((m.start(), m.end(), kind))
        else:
            _close(current, text, spans)
            current = []
    _close(current, text, spans)
    seen: set[str] = set()
    unique: list[str] = []
    for span in spans:
        key = span.lower()
        if key not in seen:
            seen.add(key)
            unique.append(span)
    return unique


def _runs(text: str) -> list[str]:
    return [t.lower() for t in WORD_RUN.findall(text)]


def knowledge_retention(alt_text: str | None, caption: str | None) -> float | None:
    """Share of ``knowledge_spans(alt_text)`` found in ``caption``; None without spans."""
    spans = knowledge_spans(alt_text)
    if not spans:
        return None
    haystack = " " + " ".join(_runs(_text(caption))) + " "
    found = sum(1 for span in spans if " " + " ".join(_runs(span)) + " " in haystack)
    return found / len(spans)


def novel_share(caption: str | None, dense_caption: str | None, alt_text: str | None) -> float:
    """Share of the caption's content words found in neither source (0.0 if none)."""
    content = [t for t in _runs(_text(caption)) if t not in STOPWORDS]
    if not content:
        return 0.0
    sources = set(_runs(_text(dense_caption))) | set(_runs(_text(alt_text)))
    return sum(1 for t in content if t not in sources) / len(content)


def score_caption(
    caption: str | None, dense_caption: str | None, alt_text: str | None
) -> dict[str, int | float | None]:
    """All quality scores of one caption, keyed by :data:`SCORE_COLUMNS`."""
    return {
        WORD_COUNT: word_count(caption),
        KNOWLEDGE_RETENTION: knowledge_retention(alt_text, caption),
        NOVEL_SHARE: novel_share(caption, dense_caption, alt_text),
    }


def score_frame(pdf, caption_col: str, dense_col: str, alt_col: str):
    """A copy of ``pdf`` (pandas) with the :data:`SCORE_COLUMNS` added.

    ``word_count`` is int64, the others float64; a missing knowledge retention is
    NaN (Arrow and Spark turn it into null). Missing texts count as empty.
    """
    import pandas as pd

    scores = [
        score_caption(c, d, a)
        for c, d, a in zip(pdf[caption_col], pdf[dense_col], pdf[alt_col], strict=True)
    ]
    out = pdf.copy()
    out[WORD_COUNT] = pd.Series([s[WORD_COUNT] for s in scores], index=pdf.index, dtype="int64")
    for col in (KNOWLEDGE_RETENTION, NOVEL_SHARE):
        values = [math.nan if s[col] is None else s[col] for s in scores]
        out[col] = pd.Series(values, index=pdf.index, dtype="float64")
    return out


# ---------------------------------------------------------------------------
# Words per text, by stage (the figures to set beside KALE's 67.26)

WORD_STATS_FIELDS = ("caption", "dense_caption", "alt_text")
ALL_STAGES = "all"


@dataclass(frozen=True)
class WordStats:
    """Words per text of one field (``caption``, ``dense_caption``, ``alt_text``) over
    the rows of one stage (``stage1``, ``stage2`` or ``all``).

    ``n`` counts the rows where the field is not null; ``mean`` and ``median`` are
    over those rows (``None`` when ``n`` is 0: stage 2 rows have no dense caption).
    The median of an even count is the mean of the middle two.
    """

    stage: str
    field: str
    n: int
    mean: float | None
    median: float | None


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _median(values: list[int]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[mid])
    return (ordered[mid - 1] + ordered[mid]) / 2


def word_stats(rows: Iterable[Mapping[str, Any]]) -> list[WordStats]:
    """:class:`WordStats` per stage and field of ``rows`` (mappings with ``stage`` and
    the :data:`WORD_STATS_FIELDS`), stages sorted, then ``all``; null texts are skipped.

    The pure reference of the Spark aggregation in :mod:`kale_spark.release.stats`.
    """
    counts: dict[tuple[str, str], list[int]] = {}
    stages: set[str] = set()
    for row in rows:
        stage = str(row["stage"])
        stages.add(stage)
        for name in WORD_STATS_FIELDS:
            counts.setdefault((stage, name), [])
            counts.setdefault((ALL_STAGES, name), [])
            if not _is_null(row.get(name)):
                words = word_count(row[name])
                counts[(stage, name)].append(words)
                counts[(ALL_STAGES, name)].append(words)
    out = []
    for stage in [*sorted(stages), ALL_STAGES] if stages else []:
        for name in WORD_STATS_FIELDS:
            values = counts[(stage, name)]
            mean = sum(values) / len(values) if values else None
            out.append(WordStats(stage, name, len(values), mean, _median(values)))
    return out


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def word_stats_lines(stats: Sequence[WordStats]) -> list[str]:
    """Plain-text lines of ``stats`` for run summaries and ``kale summary``."""
    if not stats:
        return ["words per text: no rows"]
    lines = [f"words per text (mean / median; KALE: {KALE_MEAN_CAPTION_WORDS} mean caption words):"]
    for stage in dict.fromkeys(s.stage for s in stats):
        parts = [
            f"{s.field} {_num(s.mean)} / {_num(s.median)} (n={s.n})"
            for s in stats
            if s.stage == stage
        ]
        lines.append(f"  {stage}: " + ", ".join(parts))
    return lines
