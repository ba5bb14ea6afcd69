"""Kind ``narration``, the writer's procedure: a numbered step of the work it did or
is to do ("1) Read both sentences.", "Step 2 - compare the dates.") and its reasons
for where it put things ("The name is placed at the end so the description flows").

A line of its change log ("- Removed the hashtags") is one too.

A numbered list of steps on a recipe card or a poster is content: a sentence that
names a carrier is left alone.
"""

from __future__ import annotations

import re

from kale_spark.curation.leaks.base import Rule, Sentence

__all__ = ["Justification", "NumberedStep"]

_I = re.IGNORECASE

# What a writer does to its inputs and its draft, as an order.
_WORK = (
    r"read|re-read|reread|compare|identify|check|cross-check|double-check|combine|merge|"
    r"fuse|blend|extract|pull|decide|determine|draft|review|verify|pick|choose|list|note|"
    r"keep|retain|drop|remove|fix|correct|rewrite|rephrase|proofread|finali[sz]e|output|"
    r"produce|write|make|ensure|start|begin|look|find|match|spot|separate|sort|weigh|"
    r"integrate|incorporate|describe|mention|add|use|take|analy[sz]e|examine|gather|collect|"
    r"resolve|reconcile|discard|ignore"
)
_STEP = re.compile(
    r"^\W*(?:\d{1,2}\s*[.)]|step\s+(?:\d{1,2}|one|two|three|four|five)\s*[:.)—–-]?)\s*"
    rf"(?:please\s+|then\s+|now\s+|first\s+|next\s+)?(?:{_WORK})\b",
    _I,
)
# A line of a change log: a bullet ("- Removed the hashtags", "* Merged both
# descriptions"), or an edit of a piece of wording without its subject ("Removed the
# phrase ...").
_EDITED = (
    r"(?:removed|kept|merged|added|dropped|combined|fixed|corrected|rephrased|reworded|"
    r"replaced|deleted|omitted|cut|trimmed|moved|reordered|retained|preserved|excluded|"
    r"simplified|shortened|condensed|converted|rewrote)"
)
_CHANGE_LINE = re.compile(
    rf"^\W*{_EDITED}\s+(?:the|a|an|all|any|both|every)\s+(?:[\w'’-]+\s+){{0,2}}?(?:phrases?|words?|"
    r"keywords?|hashtags?|sentences?|clauses?|mentions?|references?|repetitions?|wording|"
    r"adjectives?|urls?|links?|claims?|typos?|grammar|spelling|punctuation)\b",
    _I,
)
_CHANGE = re.compile(
    r"^\s*[-*•]\s*(?:removed|kept|merged|added|dropped|combined|fixed|corrected|rephrased|"
    r"reworded|replaced|deleted|omitted|cut|trimmed|moved|reordered|retained|preserved|used|"
    r"excluded|simplified|shortened|clarified|integrated|fused|condensed|converted|"
    r"restructured|rewrote|included)\b",
    _I,
)


class NumberedStep(Rule):
    """A numbered step of the writer's work, or a bullet of its change log."""

    name = "numbered_step"
    kind = "narration"

    def matches(self, s: Sentence) -> bool:
        if s.shows_carrier:
            return False  # the steps on a recipe card or an instruction poster
        return bool(
            _STEP.match(s.masked) or _CHANGE.match(s.masked) or _CHANGE_LINE.match(s.masked)
        )


# Where a part of the text was put, and why: "placed at the end so the description flows".
_PLACED = re.compile(
    r"\b(?:placed|put|moved|positioned|kept|mentioned|listed|named|given|introduced|saved)\s+"
    r"(?:at\s+the\s+(?:end|start|beginning|front)|first|last|early|later|up\s+front|"
    r"toward\s+the\s+(?:end|start))\s+(?:so|to|because|since|for)\b"
    # The text as the beneficiary of a choice: "so the description flows", "so it reads well".
    r"|\bso\s+(?:that\s+)?(?:the|this)\s+(?:caption|description|sentence|text|wording)\s+"
    r"(?:flows|reads|sounds|stays|remains|is\s+(?:easier|clearer|shorter|smoother))\b",
    _I,
)


class Justification(Rule):
    """The writer gives its reason for how it arranged the text ("The date is placed at
    the end so the description flows")."""

    name = "justification"
    kind = "narration"
    triggers = frozenset(
        """placed put moved positioned kept mentioned listed named given introduced saved
        so""".split()
    )

    def matches(self, s: Sentence) -> bool:
        if s.shows_carrier:
            return False
        return _PLACED.search(s.masked) is not None
