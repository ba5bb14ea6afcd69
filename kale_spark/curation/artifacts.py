"""Leaked-prompt removal (pure, no Spark).

The fusion LLM sometimes writes about its prompt instead of the image ("as
indicated in Sentence 1", "Here is the merged caption:", "... keeps the real-world
knowledge ..."). KALE dropped every sentence containing an artifact keyword
(:func:`keyword_baseline`); that rule also drops honest sentences (a sign reading
"real-world skills") and misses leaks without its keywords.

:func:`clean_caption` splits a caption into sentences and checks each against the
rules of :mod:`kale_spark.curation.leaks`, one small named rule per way of leaking,
grouped by kind (talk about the texts, narration, headers, echoes of the
instruction, critiques of the inputs, hedges about them); with ``rules=leaks.CHECKS``
(``filter.learned_leaks``) the learned classifier of :mod:`kale_spark.curation.leaks.learned`
follows them (reason ``learned``). A removed
sentence keeps the name of the first rule that matched it as its reason; kept sentences
are returned byte for byte.

``prompt`` is the instruction sent for the row: its prompt *template* (``{slot}``
placeholders allowed; several joined with newlines, e.g. the system turn first) or
its instruction text. Never the rendered prompt: the alt-text and dense caption in
it would make every faithful caption "overlap".
"""

from __future__ import annotations

from dataclasses import dataclass

from kale_spark.curation.leaks import HEADER, LEARNED, MARKUP, RULES, Rule, Sentence
from kale_spark.curation.leaks.learned import introduces_text
from kale_spark.curation.sentences import split_sentences

__all__ = [
    "BASELINE_KEYWORDS",
    "Cleaned",
    "KEYWORD_REASON",
    "classify_sentence",
    "clean_caption",
    "keyword_baseline",
]

KEYWORD_REASON = "keyword"


@dataclass(frozen=True)
class Cleaned:
    """A caption after artifact removal.

    ``text`` holds the kept sentences joined by single spaces (the input unchanged
    when nothing was removed); ``removed`` the removed sentences or labels in order,
    and ``reasons`` the rule name for each entry of ``removed``.
    """

    text: str
    removed: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """True when something was removed."""
        return bool(self.removed)


# A reconstruction of KALE's rule: the keywords the paper names, and the numbered
# prompt sentences its Figure 3 shows leaking.
BASELINE_KEYWORDS: tuple[str, ...] = (
    "real-world",
    "real world",
    "sentence structure",
    "sentence 1",
    "sentence 2",
)


def _assemble(kept: list[str], removed: list[str], reasons: list[str], text: str) -> Cleaned:
    if not removed:
        return Cleaned(text=text, removed=(), reasons=())
    return Cleaned(text=" ".join(kept), removed=tuple(removed), reasons=tuple(reasons))


def keyword_baseline(text: str, keywords: tuple[str, ...] = BASELINE_KEYWORDS) -> Cleaned:
    """KALE's rule: drop every sentence that contains one of ``keywords`` (case-insensitive)."""
    lowered = tuple(k.lower() for k in keywords)
    kept: list[str] = []
    removed: list[str] = []
    for sentence in split_sentences(text):
        low = sentence.lower()
        (removed if any(k in low for k in lowered) else kept).append(sentence)
    return _assemble(kept, removed, [KEYWORD_REASON] * len(removed), text)


def classify_sentence(
    sentence: str, prompt: str | None = None, rules: tuple[Rule, ...] = RULES
) -> str | None:
    """The name of the first rule ``sentence`` breaks, or None to keep it.

    Looks at the whole sentence: a sentence that is only a label ("Merged caption:")
    is a ``header``; a label in front of a caption is :func:`clean_caption`'s job.
    """
    return _first_rule(Sentence(sentence, prompt), rules)


def _first_rule(view: Sentence, rules: tuple[Rule, ...], skip: str | None = None) -> str | None:
    for rule in rules:
        if rule.name != skip and rule.applies(view) and rule.matches(view):
            return rule.name
    return None


def clean_caption(text: str, prompt: str | None = None, rules: tuple[Rule, ...] = RULES) -> Cleaned:
    """Remove the sentences of ``text`` that leak the prompt (see the module docstring).

    Chat-template tokens are removed first (reason ``chat_markup``); a leading label is
    removed on its own (reason ``header``) and the rest of its sentence is checked like
    any other. ``rules`` are the checks in order: the hand rules, or ``leaks.CHECKS``
    for the hand rules then the learned classifier. Kept sentences are joined by
    single spaces; when nothing is removed ``text`` comes back as is. The learned
    classifier skips a sentence whose previous one opens text the image shows with a
    colon ("A recipe card lists the steps: 1. Mix the flour."): it is that text.
    """
    body, tokens = MARKUP.strip(text)
    kept: list[str] = []
    removed: list[str] = list(tokens)
    reasons: list[str] = [MARKUP.name] * len(tokens)
    previous: Sentence | None = None
    for sentence in split_sentences(body):
        view = Sentence(sentence, prompt)
        end = HEADER.label_end(view)
        if end is not None:
            removed.append(sentence[:end].strip())
            reasons.append(HEADER.name)
            sentence = sentence[end:].strip()
            if not sentence:
                continue
            view = Sentence(sentence, prompt)
        reason = _first_rule(view, rules, LEARNED.name if introduces_text(previous) else None)
        previous = view
        if reason is None:
            kept.append(sentence)
        else:
            removed.append(sentence)
            reasons.append(reason)
    return _assemble(kept, removed, reasons, text)
