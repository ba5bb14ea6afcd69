"""Kind ``input_critique``: the sentence judges the quality of an input - its
grammar, spelling, punctuation, how well it is written, being a list of keywords,
being vague, wrong or unreliable ("The first sentence is missing a verb", "The
caption is grammatically incorrect", "The alt-text is likely SEO spam").

It needs both a text the sentence talks about (see :mod:`.meta_discourse`; a bare
"the caption" counts here) and a word of judgement. A sign that misspells a word, or
a teacher marking a grammar mistake in an essay, is content: the text judged is one
the image shows.
"""

from __future__ import annotations

import re

from kale_spark.curation.leaks.base import Rule, Sentence
from kale_spark.curation.leaks.references import REFERENCE_WORDS, find_references

__all__ = ["InputCritique"]

_I = re.IGNORECASE
_JUDGEMENT = re.compile(
    r"\b(?:grammar|grammatical(?:ly)?|ungrammatical|typos?|misspell\w*|spelling|punctuat\w*|"
    r"fragment(?:ed|s|ary)?|run-on|incomplete|awkward(?:ly)?|clumsy|clunky|"
    r"(?:poorly|badly|hastily|well)[\s-]+(?:written|worded|structured|phrased|punctuated)|"
    r"(?:list|string|jumble|series|pile|bag)\s+of\s+(?:search\s+)?(?:keywords|tags|words|terms)|"
    r"keyword[\s-]?(?:stuffed|heavy|style|list)|(?:stuffed|padded|crammed)\s+with\s+(?:search\s+"
    r"terms|keywords|tags|hashtags)|vague|generic|inaccura\w*|incorrect(?:ly)?|"
    r"wrong(?:ly)?|mistaken(?:ly)?|mistakes?|erroneous(?:ly)?|errors?|flaw(?:s|ed)?|"
    r"unreliable|misleading|hallucinat\w*|redundant|repetitive|repeats\s+itself|confusing|"
    r"hard\s+to\s+(?:read|follow|parse|understand)|(?:complete|full|proper|real)\s+sentence|"
    r"lacks?\s+(?:a\s+)?(?:verb|subject|punctuation|detail|structure|context|clarity|"
    r"specifics)|missing\s+(?:a\s+)?(?:verb|subject|punctuation|words?)|too\s+(?:short|"
    r"long|brief|vague|terse|sparse)|all\s+(?:caps|capital\s+letters|lower\s*case)|seo|"
    r"spam\w*|noisy|messy|sparse|terse|truncated|garbled|nonsensical|unhelpful|irrelevant)\b",
    _I,
)


# Judgements of writing that imply a text without naming it ("The grammar is poor").
_WRITING_FAULT = re.compile(
    r"\b(?:poor|bad|broken|awkward|clumsy|flawed|faulty|imperfect|weak|sloppy|shaky|"
    r"questionable|incorrect|garbled)\s+(?:grammar|spelling|punctuation|syntax|phrasing|wording|"
    r"english)\b"
    r"|\b(?:the|its)\s+(?:grammar|spelling|punctuation|syntax|phrasing|wording)\s+(?:is|was|are|"
    r"has|needs|could|of)\b"
    r"|\bspelling\s+(?:mistakes?|errors?)\b|\btypos?\b|\bmisspell\w*|\bungrammatical\b|"
    r"\brun-on\b|\bhallucinat\w*",
    _I,
)
_FAULT_ONLY = frozenset({"syntax", "phrasing", "wording", "english"})
# "The first is clumsy": an ordinal standing for an input, next to a judgement.
_ORDINAL_ALONE = re.compile(
    r"\bthe\s+(?:first|second|former|latter|other)\s+(?:one\s+)?(?:is|was|has|reads|seems|"
    r"contains|lacks)\b",
    _I,
)


class InputCritique(Rule):
    """A text the model was given, judged for its quality."""

    name = "input_critique"
    kind = "input_critique"

    def matches(self, s: Sentence) -> bool:
        if s.shows_text:
            return False
        judged = _JUDGEMENT.search(s.masked) is not None
        # Every fault of writing is a judgement, except of the words below: a gate.
        if (judged or not _FAULT_ONLY.isdisjoint(s.words)) and _WRITING_FAULT.search(s.masked):
            return True
        if not judged:
            return False
        if _ORDINAL_ALONE.search(s.masked):
            return True
        return not REFERENCE_WORDS.isdisjoint(s.words) and bool(find_references(s))
