"""Kind ``agreement_hedge``: the sentence hedges about the inputs instead of
describing the image - whether they agree ("The two descriptions differ on ...",
"Both mention ...", "Despite the conflicting details ..."), whether one can be
trusted ("If the alt-text is accurate ...", "The year cannot be confirmed") or what
they leave out ("No date is given", "The location is not specified").

Content stays: two flags that do not match, a mural of a conflict, a plaque saying
a date is unknown, a brand not mentioned on a box.
"""

from __future__ import annotations

import re

from kale_spark.curation.leaks.base import Rule, Sentence
from kale_spark.curation.leaks.content import SURFACES
from kale_spark.curation.leaks.references import find_references
from kale_spark.curation.leaks.vocab import alternation, verb_forms

__all__ = ["AgreementHedge", "AbsenceHedge"]

_I = re.IGNORECASE
_AGREE = verb_forms(
    "agree",
    "disagree",
    "differ",
    "conflict",
    "contradict",
    "concur",
    "diverge",
    "mention",
    "say",
    "describe",
    "confirm",
    "note",
    "state",
    "specify",
    "indicate",
    "name",
    "identify",
    "place",
    "refer",
    "call",
    "list",
)
_TEXTS = r"sources?|inputs?|texts?|accounts?|versions?|descriptions?|captions?|sentences?"
# Several things as the subject of a verb of saying or agreeing: "Both mention ...",
# "the two accounts differ"; the noun, if any, must be a text ("both teams agree" is not).
_SEVERAL = re.compile(
    r"\b(?:both|neither|either|the\s+two)(?:\s+of\s+them|\s+(?P<noun>[a-z]+))?"
    r"\s+(?:(?:also|only|clearly|do|does|did|not|don['’]t|doesn['’]t|seem\s+to|appear\s+to)\s+)*"
    rf"(?:{_AGREE})\b",
    _I,
)
_TEXT_NOUN = re.compile(rf"(?:{_TEXTS})", _I)
# Texts that agree or not: "the sentences match", "the two accounts differ".
_TEXTS_AGREE = re.compile(
    r"\b(?:sources|inputs|texts|accounts|versions|descriptions|captions|sentences)\s+"
    r"(?:(?:do|does|did|not|don['’]t|also|both|all|only|seem\s+to|appear\s+to|\w+ly)\s+)*"
    r"(?:agree|disagree|differ|conflict|contradict|match|concur|diverge|align|coincide|"
    r"are\s+(?:in\s+(?:agreement|accord|harmony)|at\s+odds)|"
    r"line\s+up|point\s+to|overlap|corroborate|complement|reinforce|mirror)\b",
    _I,
)
# Words of conflict that need no texts named: captions rarely have discrepancies.
_CONFLICT_ALONE = re.compile(
    r"\b(?:discrepanc(?:y|ies)|inconsistenc(?:y|ies)|contradictions?|contradictory|"
    r"mismatch(?:ed|es)?|reconcil\w+)\b",
    _I,
)
_CONFLICT = re.compile(
    r"\b(?:discrepanc(?:y|ies)|inconsisten\w+|contradict\w*|mismatch\w*|disagree\w*|"
    r"reconcil\w+|conflicting|(?:no|little|some|lack\s+of)\s+agreement|(?:at\s+odds|do\s+not\s+agree|don['’]t\s+agree|do\s+not\s+match|"
    r"don['’]t\s+match|are\s+(?:not\s+)?(?:in)?consistent)|conflicts?\s+(?:between|about|over|on|"
    r"regarding|with))\b",
    _I,
)
# Texts that give different answers: "The description and the alt-text name different
# mountains" (a reference or plural texts are needed too).
_DIFFERENT = re.compile(
    r"\b(?:name|give|list|mention|say|suggest|report|state|offer|use|cite|provide)\s+(?:two\s+)?"
    r"(?:different|conflicting|contradictory|other)\b",
    _I,
)
_DIFFERENT_WORDS = frozenset("different conflicting contradictory other".split())
_PLURAL_TEXTS = re.compile(
    rf"\b(?:{_TEXTS}|details|information|data|reports|claims)\b",
    _I,
)
_TRUST = re.compile(
    r"\b(?:if|assuming|provided\s+that|supposing|as\s+long\s+as)\b[^,.]*\b(?:correct|accurate|"
    r"right|reliable|true|trustworthy|to\s+be\s+believed)\b"
    r"|\b(?:cannot|can['’]t|could\s+not|couldn['’]t)\s+be\s+(?:\w+ly\s+)?(?:confirmed|verified|"
    r"determined|established|ascertained|checked|cross-checked|double-checked|corroborated|"
    r"validated|substantiated)\b|\b(?:unverified|unconfirmed)\b"
    r"|\b(?:unclear|uncertain|not\s+clear|not\s+certain)\s+(?:whether|if|which|from)\b"
    r"|\bit\s+is\s+(?:unclear|uncertain|not\s+clear|not\s+certain|impossible\s+to\s+(?:tell|"
    r"say|know|confirm|verify|determine))\b"
    r"|\bwhich\s+(?:[\w-]+\s+){0,3}?(?:is|was|are)\s+(?:correct|right|accurate|true|wrong|"
    r"mistaken)\b"
    r"|\b(?:hard|difficult|impossible)\s+to\s+(?:say|tell|know|determine|confirm|verify)\b"
    r"|\b(?:remains?|stays?)\s+(?:unclear|uncertain|ambiguous|unconfirmed|unverified)\b"
    r"|\bmay\s+or\s+may\s+not\b"
    r"|\b(?:one\s+of\s+(?:them|the\s+two)|either|both|they)\s+(?:must|may|might|could|"
    r"can['’]?not|cannot|can['’]t)\s+be\s+(?:wrong|mistaken|incorrect|inaccurate|right|correct|"
    r"true)\b",
    _I,
)


# Disclaimers about the inputs and disagreements over what the thing shown is, behind
# their own word gate: "have not been checked", "no claim is made about the accuracy of
# ...", "a discrepancy over the year".
_DISCLAIMER_WORDS = frozenset(
    """checked verified confirmed cross double corroborated validated claim guarantee
    warranty accuracy reliability correctness truth disagreement discrepancy discrepancies
    conflict confusion ambiguity""".split()
)
_DISCLAIMER = re.compile(
    r"\b(?:is|are|was|were|has|have|had)\s+not\s+(?:been\s+)?(?:\w+ly\s+)?(?:checked|verified|"
    r"confirmed|cross-checked|double-checked|corroborated|validated)\b"
    r"|\bno\s+(?:claim|guarantee|warranty)\s+(?:is|can\s+be)\s+(?:made|given)\b"
    r"|\b(?:accuracy|reliability|correctness|truth)\s+of\s+(?:the|these|those|this|its|their)\s+"
    r"(?:sources?|inputs?|texts?|alt|captions?|descriptions?|information|details|facts|web)\b"
    # A disagreement about an attribute of the thing shown is one between the texts.
    r"|\b(?:disagreement|discrepanc(?:y|ies)|conflict|confusion|ambiguity)\s+(?:about|over|on|"
    r"regarding|as\s+to|concerning)\s+(?:the\s+|its\s+|their\s+)?(?:exact\s+|precise\s+)?"
    r"(?:colou?r|name|date|year|location|place|identity|number|brand|make|model|type|breed|"
    r"species|size|time|age|origin|title|venue|city|country|spelling|era|material)s?\b",
    _I,
)

_THEY_AGREE = re.compile(
    r"\b(?:they|these|both)\s+(?:all\s+|both\s+)?(?:agree|disagree|conflict|contradict|"
    r"corroborate)\s+(?:that|on|about|regarding|with\s+each\s+other)\b|\bconsensus\b",
    _I,
)


# Word gates that only spare work (tests check they never change a decision): _TRUST
# needs one of its words; _SEVERAL and _TEXTS_AGREE need several things or plural texts;
# the conflict patterns need one of these stems.
_TRUST_WORDS = frozenset(
    """if assuming provided supposing long cannot can could couldn unverified unconfirmed
    unclear uncertain not impossible which hard difficult remains remain stays stay may one
    either both they""".split()
)
_SEVERAL_WORDS = frozenset(
    "both neither either two sources inputs texts accounts versions descriptions captions "
    "sentences".split()
)
_CONFLICT_STEMS = (
    "discrepanc",
    "consisten",
    "contradict",
    "match",
    "agree",
    "reconcil",
    "conflict",
    "odds",
    "corroborat",
    "consensus",
)


def _several_texts(masked: str) -> bool:
    for m in _SEVERAL.finditer(masked):
        noun = m.group("noun")
        if noun is None or _TEXT_NOUN.fullmatch(noun):
            return True
    return False


class AgreementHedge(Rule):
    """Whether the inputs agree, or whether one can be trusted."""

    name = "agreement_hedge"
    kind = "agreement_hedge"

    def matches(self, s: Sentence) -> bool:
        if s.shows_carrier:
            return False
        masked, words = s.masked, s.words
        if not _TRUST_WORDS.isdisjoint(words) and _TRUST.search(masked):
            return True
        if not _SEVERAL_WORDS.isdisjoint(words) and (
            _several_texts(masked) or _TEXTS_AGREE.search(masked)
        ):
            return True
        if not _DISCLAIMER_WORDS.isdisjoint(words) and _DISCLAIMER.search(masked):
            return True
        low = masked.lower()
        conflict = any(stem in low for stem in _CONFLICT_STEMS)
        if conflict and (_CONFLICT_ALONE.search(masked) or _THEY_AGREE.search(masked)):
            return True
        different = not _DIFFERENT_WORDS.isdisjoint(words) and _DIFFERENT.search(masked)
        if different or (conflict and _CONFLICT.search(masked)):
            return bool(_PLURAL_TEXTS.search(masked) or find_references(s))
        return False


_ABSENT = re.compile(
    r"\b(?:(?:is|are|was|were)\s+(?:not|never)|isn['’]t|aren['’]t|wasn['’]t|weren['’]t)\s+"
    r"(?:\w+ly\s+)?(?:mentioned|specified|stated|said|"
    r"provided|given|indicated|named|identified|listed|included|described|supplied|available|"
    r"clear)\b"
    r"|^\W*(?:no|neither|none)\b[^.]*\b(?:is|are|was|were)\s+(?:\w+ly\s+)?(?:mentioned|"
    r"specified|stated|provided|given|indicated|named|included)\b"
    r"|\b(?:(?:does|do|did)\s+not|doesn['’]t|don['’]t|didn['’]t)\s+(?:mention|specify|say|state|"
    r"give|name|indicate|provide|"
    r"include|identify)\b"
    r"|\bno\s+(?:mention|indication|information|details?)\s+(?:of|about|on|regarding|is|are)\b"
    r"|\b(?:not\s+enough|insufficient|limited|little)\s+(?:information|details?|context|data)\b"
    r"|\bunclear\s+from\b|\bthere\s+is\s+no\s+(?:way\s+to|mention)\b"
    # The inputs as all there is: "That is all the information available".
    r"|\b(?:all|only)\s+(?:the\s+)?(?:information|details|context|data)\s+(?:\w+\s+)?(?:available|"
    r"given|provided|at\s+hand)\b"
    r"|\bonly\s+the\s+(?:text|texts|alt[\s-]?text|descriptions?|captions?)\s+(?:is|are)\s+available\b"
    r"|\b(?:information|details|mention|data)\b[^.]*\b(?:is|are)\s+(?:missing|absent|lacking|"
    r"unavailable)\b"
    r"|^\W*nothing\s+in\s+(?:the|either|both|these|those)\b"
    # "Nowhere is the street named", "The year is left unspecified".
    r"|\b(?:goes|go|went|gone)\s+(?:\w+ly\s+)?(?:unmentioned|unspecified|unstated|unsaid|unnamed|"
    r"unremarked|unaddressed)\b"
    r"|^\W*nothing\s+is\s+(?:said|mentioned|stated|given|specified|noted)\b"
    r"|\bnowhere\b[^.]*\b(?:given|mentioned|stated|specified|named|provided|indicated|listed)\b"
    r"|\b(?:is|are|was|were|left|remains?|stays?)\s+(?:\w+ly\s+)?(?:unspecified|unstated|"
    r"unmentioned|undisclosed|unaddressed)\b"
    r"|\bno\s+(?:image|photo|picture)\s+(?:was|is|has\s+been)\s+(?:provided|shared|given|"
    r"attached|available|supplied)\b",
    _I,
)


_ON_SURFACE = re.compile(
    rf"\b(?:on|in|inside)\s+(?:the|a|an|its|this|their)\s+(?:[\w'’-]+\s+){{0,3}}?(?:{alternation(SURFACES)})\b",
    _I,
)


_SURFACE_SAYS = re.compile(
    rf"\b(?:{alternation(SURFACES)})(?:['’]s)?\s+(?:\w+\s+){{0,2}}$",
    _I,
)


class AbsenceHedge(Rule):
    """What the inputs leave out ("No date is given", "The location is not specified")."""

    name = "absence_hedge"
    kind = "agreement_hedge"
    triggers = frozenset(
        "not never no neither none insufficient limited little unclear missing absent lacking "
        "unavailable nothing available given provided hand isn aren wasn weren doesn don didn "
        "nowhere unspecified unstated "
        "unmentioned undisclosed unaddressed unsaid unnamed unremarked".split()
    )

    def matches(self, s: Sentence) -> bool:
        m = _ABSENT.search(s.masked)
        if m is None:
            return False
        # Absent from a thing in the image, not from the inputs: "not mentioned anywhere
        # on the box", "the sign does not say ...".
        return _ON_SURFACE.search(s.masked) is None and not _SURFACE_SAYS.search(
            s.masked[: m.start()]
        )
