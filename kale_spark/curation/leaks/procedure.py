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
    r"simplified|shortened|condensed|converted|rewrote|changed|swapped|switched|substituted|"
    r"spelled\s+out|capitali[sz]ed|lower-?cased|expanded|translated|standardi[sz]ed|"
    r"normali[sz]ed|updated|edited|revised|adjusted|tweaked|turned)"
)
# The parts of a text an edit works on.
_TEXT_PARTS = (
    r"phrases?|words?|keywords?|hashtags?|sentences?|clauses?|mentions?|references?|"
    r"repetitions?|wording|phrasing|adjectives?|urls?|links?|claims?|typos?|grammar|spelling|"
    r"punctuation|capitali[sz]ation|fragments?|details|order|tense|terms?|numerals?|"
    r"abbreviations?|jargon|filler|emojis?"
)
_CHANGE_LINE = re.compile(
    rf"^\W*{_EDITED}\s+(?:(?:the|a|an|all|any|both|every)\s+(?:[\w'’-]+\s+){{0,2}}?"
    rf"(?:{_TEXT_PARTS})\b"
    # A piece of the wording itself, quoted: "Changed 'colour' to 'color'".
    r"|['‘\"“]___['’\"”]\s+(?:to|into|as|for|with|by)\b)",
    _I,
)
# The same edit in the passive, said of a part of the text: "Tense changed from past
# to present", "That part about the discount stays out", "The rest ... has been dropped".
_EDITED_PART = re.compile(
    r"^\W*(?:the\s+)?(?:tense|capitali[sz]ation|spelling|wording|phrasing|word\s+order)\s+"
    r"(?:was\s+|has\s+been\s+|is\s+)?(?:changed|switched|shifted|converted|normali[sz]ed|"
    r"standardi[sz]ed|updated|fixed|corrected|kept)\b"
    r"|\b(?:written|put|kept|rewritten)\s+in\s+the\s+(?:present|past|future)\s+tense\b"
    r"|^\W*(?:the\s+rest|(?:that|this|the)\s+(?:part|bit|line|remainder)|(?:the\s+)?(?:marketing\s+)?"
    r"(?:fluff|filler))\b[^.]*?\b(?:dropped|removed|omitted|left\s+out|stays?\s+out|kept\s+out|"
    r"discarded|skipped|ignored|cut)\b"
    # A quality of the writing, worked on: "Structure improved, grammar fixed throughout".
    r"|^\W*(?:the\s+)?(?:structure|grammar|flow|punctuation)\s+(?:was\s+|"
    r"has\s+been\s+)?(?:improved|fixed|corrected|tightened|polished|cleaned\s+up|smoothed)\b"
    # The inputs joined in the passive: "everything gets stitched together", "Both
    # accounts were folded into one clause", "was integrated into the description".
    r"|\b(?:everything|it\s+all|all\s+of\s+it|both|the\s+two)\s+(?:gets?|got|is|was|were|are)\s+"
    r"(?:then\s+|now\s+|finally\s+)?(?:stitched|merged|blended|combined|fused|woven|folded|pulled)\s+"
    r"together\b"
    r"|\b(?:were|was|is|are|gets?|got|been)\s+(?:\w+ly\s+)?(?:folded|stitched|integrated|merged|"
    r"woven|blended|combined|fused|incorporated|worked)\s+into\s+(?:one|a\s+single|the)\s+(?:clause|"
    r"sentence|caption|description|text|paragraph|line)\b",
    _I,
)
_CHANGE = re.compile(
    r"^\s*[-*•]\s*(?:removed|kept|merged|added|dropped|combined|fixed|corrected|rephrased|"
    r"reworded|replaced|deleted|omitted|cut|trimmed|moved|reordered|retained|preserved|used|"
    r"excluded|simplified|shortened|clarified|integrated|fused|condensed|converted|"
    r"restructured|rewrote|included)\b",
    _I,
)


# The writer's points listed by number in one sentence: "Point one: the subject; point
# two: the background".
_POINTS = re.compile(
    r"^\W*(?:point|item|step|part)\s+(?:one|1)\s*:.*\b(?:point|item|step|part)\s+(?:two|2)\s*:",
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
            _STEP.match(s.masked)
            or _CHANGE.match(s.masked)
            or _CHANGE_LINE.match(s.masked)
            or _EDITED_PART.search(s.masked)
            or _POINTS.match(s.masked)
        )


# Where a part of the text was put, and why: "placed at the end so the description flows".
_PLACED = re.compile(
    r"\b(?:placed|put|moved|positioned|kept|mentioned|listed|named|given|introduced|saved|"
    r"described|appears?|comes?)\s+"
    r"(?:at\s+the\s+(?:end|start|beginning|front)|first|last|early|later|up\s+front|"
    r"toward\s+the\s+(?:end|start))\s+(?:so|to|because|since|for)\b"
    # The text as the beneficiary of a choice: "so the description flows", "so it reads well".
    r"|\bso\s+(?:that\s+)?(?:the|this)\s+(?:caption|description|sentence|text|wording)\s+"
    r"(?:flows|reads|sounds|stays|remains|is\s+(?:easier|clearer|shorter|smoother))\b",
    _I,
)
# The writer's method and its virtues: a purpose of writing ("For accuracy, ...", "In the
# interest of brevity, ...", "So as not to mislead, ..."), care and intent ("Care was
# taken not to ...", "is deliberately neutral"), what a choice of its secures ("This
# approach preserves accuracy", "This keeps the focus on ..."), what its facts rest on
# ("can be traced to a source", "grounded in the image"), and its reader ("Mentioning
# the year gives the reader ...", "The rest is left to the viewer").
_VIRTUE = (
    r"accuracy|brevity|clarity|concision|conciseness|readability|fidelity|neutrality|"
    r"faithfulness|precision|simplicity|completeness"
)
# A purpose of writing opens the sentence, and its clause is about what is written
# ("For accuracy, only visible details are described"; an archer aims "for accuracy").
_PURPOSE = re.compile(
    rf"^\W*(?:(?:for|in\s+the\s+interest\s+of|for\s+the\s+sake\s+of)\s+(?:{_VIRTUE})|"
    rf"for\s+(?:{_VIRTUE})['’]s\s+sake"
    r"|to\s+(?:stay|remain|be|keep\s+it)\s+(?:accurate|brief|concise|clear|faithful|neutral|"
    r"factual|safe)|so\s+as\s+not\s+to\s+(?:mislead|speculate|overstate|confuse)|to\s+avoid\s+"
    r"(?:speculation|speculating|guessing|misleading|overstating|repetition|redundancy))\b"
    r"(?=[^.]*\b(?:described|mentioned|named|given|stated|included|omitted|left\s+out|summari[sz]ed|"
    r"kept|noted|listed|identified|specified|dropped|called)\b)",
    _I,
)
_METHOD = re.compile(
    # An input's wording accepted as it came: "The spelling has been taken as written".
    r"\b(?:taken|accepted|kept|used|treated)\s+as\s+(?:written|given|provided|supplied|"
    r"stated|fact|facts)\b|"
    r"\bcare\s+(?:was|has\s+been)\s+taken\s+(?:not\s+to\s+(?:invent|add|speculate|guess|overstate|"
    r"mislead|introduce|assume|embellish)|to\s+(?:avoid\s+(?:speculation|speculating|guessing|"
    r"inventing)|stay\s+(?:faithful|accurate)))\b"
    r"|\b(?:is|are|was|were|kept|left)\s+(?:intentionally|deliberately|purposely|purposefully)\s+"
    r"(?:neutral|brief|short|concise|general|vague|factual|unnamed|unspecified|open|out|simple)\b"
    r"|^\W*(?:this|that)\s+(?:approach|choice|method|strategy|decision|ordering|arrangement)\s+"
    r"(?:\w+\s+)?(?:preserves|ensures|keeps|avoids|balances|retains|maintains|guarantees)\b"
    r"|^\W*this\s+(?:keeps|ensures|guarantees|makes\s+sure|avoids|preserves)\s+(?:that\s+)?"
    r"(?:the\s+)?(?:focus|caption|description|text|accuracy|clarity|facts|reader|account|"
    r"wording)\b"
    r"|\b(?:traced|attributed)\s+(?:back\s+)?to\s+(?:a|the|one\s+of\s+the)\s+(?:sources?|inputs?)\b"
    r"|\b(?:grounded|anchored)\s+in\s+(?:the\s+)?(?:image|photo|picture|inputs?|sources?|"
    r"evidence)\b"
    r"|^\W*(?:mentioning|naming|including|adding|stating|giving|placing|noting)\b[^.]*\b(?:gives?|"
    r"helps?|lets?|tells?|offers?|orients?)\s+the\s+reader\b"
    r"|\bthe\s+rest\s+is\s+left\s+to\s+the\s+(?:viewer|reader|imagination)\b",
    _I,
)
_METHOD_WORDS = frozenset(
    f"""{_VIRTUE.replace("|", " ")} to so care intentionally deliberately purposely
    purposefully this that traced attributed grounded anchored reader rest taken accepted
    kept used treated""".split()
)


class Justification(Rule):
    """The writer gives its reason for how it arranged the text ("The date is placed at
    the end so the description flows"), or states its method and its virtues ("For
    accuracy, ...", "This approach preserves accuracy")."""

    name = "justification"
    kind = "narration"
    triggers = (
        frozenset(
            """placed put moved positioned kept mentioned listed named given introduced saved
        so described appears appear comes come""".split()
        )
        | _METHOD_WORDS
    )

    def matches(self, s: Sentence) -> bool:
        if s.shows_carrier:
            return False
        if _PLACED.search(s.masked) is not None:
            return True
        if _METHOD_WORDS.isdisjoint(s.words):
            return False
        return bool(_PURPOSE.search(s.masked) or _METHOD.search(s.masked))
