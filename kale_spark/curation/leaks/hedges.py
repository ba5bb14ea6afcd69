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
    r"don['’]t\s+match|(?:are|seem|appear|look)\s+(?:to\s+be\s+)?(?:not\s+)?(?:in)?consistent)|"
    r"tension\s+between|conflicts?\s+(?:between|about|over|on|"
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
    r"|\bwhich(?:ever)?\s+(?:[\w-]+\s+){0,3}?(?:is|was|are)\s+(?:correct|right|accurate|true|wrong|"
    r"mistaken)\b"
    r"|\b(?:hard|difficult|impossible|not\s+possible|no\s+way)\s+to\s+(?:say|tell|know|determine|"
    r"confirm|verify)\b"
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

# Doubt about a claim's reliability, the writer warning the reader: "the name may be
# wrong", "should be double-checked", "cannot be guaranteed", "based on an assumption",
# "only partly supported", "the credit might belong to a different image".
_DOUBT_WORDS = frozenset(
    """may might could reliable unreliable should must need needs ought guaranteed
    unverifiable guessed based partly partially fully weakly caution treated taken uncertain
    doubtful dubious questionable tentative caveat caveats best keep bear reader readers""".split()
)
_DOUBT = re.compile(
    # What may be wrong is a claim about the thing shown, not the thing: a clock may be
    # wrong by a few minutes, an identification is what a text gave.
    r"\b(?:names?|identification|identity|date|year|brand|credit|attribution|species|claims?|"
    r"information|details|facts|location|label(?:l)?ing|guess|attribution)\s+(?:\w+\s+){0,2}?"
    r"(?:may|might|could)\s+(?:well\s+|also\s+)?(?:be\s+(?:wrong|mistaken|incorrect|inaccurate|"
    r"unreliable|in\s+error|off\s+by)|belong\s+to\s+(?:a\s+)?(?:different|another|other)\s+(?:image|photo|"
    r"picture|photograph))\b"
    r"|\b(?:is|are|was|were)\s+(?:not\s+|un)reliable\b"
    r"|\b(?:should|must|needs?\s+to|ought\s+to)\s+be\s+(?:double-checked|checked|verified|"
    r"confirmed|cross-checked|(?:treated|taken|read)\s+with\s+(?:caution|care|a\s+grain))\b"
    r"|\b(?:cannot|can['’]t)\s+be\s+guaranteed\b|\bunverifiable\b"
    r"|\b(?:was|were|is|are)\s+(?:probably\s+|likely\s+|possibly\s+|merely\s+|only\s+)?guessed\b"
    r"|\bbased\s+on\s+(?:an?\s+)?(?:assumption|guess|guesswork|inference|speculation)\b"
    # A claim "partly supported", never a thing held up: "partly supported by a frame".
    r"|\b(?:partly|partially|only\s+partly|not\s+fully|weakly)\s+(?:corroborated|substantiated|"
    r"confirmed|verified|supported(?=\s*(?:[,.;:!?]|$|by\s+(?:the\s+)?(?:image|photo|picture|"
    r"sources?|inputs?|texts?|evidence)\b)))\b"
    r"|\bcaution\s+(?:should|must|is\s+advised|is\s+needed)\b"
    # A caveat put to the reader: "Caveat: ...", "a best guess", "Keep in mind ...".
    r"|\bcaveats?\b|\b(?:a|the|my|our|only\s+a)\s+best\s+guess\b|^\W*(?:keep|bear)\s+in\s+mind\b"
    r"|\breaders?\s+(?:should|must|may\s+want\s+to)\s+(?:note|know|be\s+aware|keep\s+in\s+mind|"
    r"bear\s+in\s+mind)\b"
    r"|\b(?:facts|claims|details|identifications?|attributions?)\s+(?:\w+\s+)?(?:are|is|were|was|"
    r"remains?)\s+(?:uncertain|doubtful|dubious|questionable|tentative)\b",
    _I,
)

# Doubt with a reason in the picture is about what is seen, not about the inputs: "hard
# to tell from his open mouth", "unclear whether the door is open, as it lies in shadow".
_SEEN_REASON = re.compile(
    r"\b(?:in|into)\s+(?:the\s+|deep\s+)?(?:shadows?|shade|darkness|dim\s+light|fog|mist|haze|"
    r"glare)\b|\b(?:blurr(?:y|ed)|out\s+of\s+focus|obscured|backlit)\b"
    r"|\bfrom\s+(?:this|that|such\s+a)\s+(?:angle|distance|height)\b"
    r"|\bfrom\s+(?:his|her|their|its)\s+(?:\w+\s+)?(?:face|mouth|eyes|expression|posture|pose|"
    r"stance|gesture|shape|outline|silhouette)\b",
    _I,
)

# The picture set against the texts: what it alone cannot show or confirm ("The photo
# itself does not show the date", "not visible in the image itself", "rather than the
# photo"), and a label the inputs give that the look belies ("Described as a church, the
# building looks like a museum").
_IMAGE_ALONE_WORDS = frozenset(
    "itself alone rather nothing looks look resembles resemble appears appear seems seem though "
    "visual "
    "although while".split()
)
_IMAGE_ALONE = re.compile(
    r"\b(?:image|photo|picture|photograph)\s+(?:itself|alone|by\s+itself)\s+(?:does\s+not|doesn['’]t|"
    r"cannot|can['’]t|could\s+not|gives\s+no|shows\s+no|offers\s+no|says\s+nothing)\b"
    r"|\bnot\s+(?:\w+ly\s+)?(?:visible|shown|apparent|evident|seen|confirmed)\s+in\s+the\s+(?:image|"
    r"photo|picture|photograph)\s+(?:itself|alone)\b"
    r"|\brather\s+than\s+(?:from\s+)?the\s+(?:image|photo|picture|photograph)\b"
    r"|^\W*visually,\s+nothing\s+(?:confirms|verifies|supports|corroborates)\b"
    r"|\bvisual\s+(?:confirmation|verification|evidence|proof)\s+(?:of\s+[^.]*?)?(?:is|was)\s+"
    r"(?:impossible|lacking|missing|absent|unavailable|not\s+possible)\b"
    r"|\b(?:labell?ed|called|described|billed|identified|listed|tagged|captioned)\s+(?:as\s+)?"
    r"an?\s+(?:[\w-]+\s+){0,2}?[\w-]+(?:\s+by\s+the\s+\w+)?,\s+(?:but\s+|though\s+|although\s+|"
    r"yet\s+)?(?:it|the\s+[\w-]+)\s+(?:\w+ly\s+)?(?:looks?|resembles?|appears?|seems?)\b"
    r"|^\W*(?:though|although|while)\s+(?:labell?ed|called|described|billed|listed|tagged)\s+as\b",
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
    unclear uncertain not impossible no which whichever hard difficult remains remain stays stay
    may one either both they""".split()
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
    "tension",
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
        trust = not _TRUST_WORDS.isdisjoint(words) and _TRUST.search(masked)
        if trust and not _SEEN_REASON.search(masked):
            return True
        if not _SEVERAL_WORDS.isdisjoint(words) and (
            _several_texts(masked) or _TEXTS_AGREE.search(masked)
        ):
            return True
        if not _DISCLAIMER_WORDS.isdisjoint(words) and _DISCLAIMER.search(masked):
            return True
        if not _DOUBT_WORDS.isdisjoint(words) and _DOUBT.search(masked):
            return True
        if not _IMAGE_ALONE_WORDS.isdisjoint(words) and _IMAGE_ALONE.search(masked):
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
    r"|\bno\s+(?:(?:further|additional|more|other|specific)\s+)?(?:mention|indication|information|"
    r"details?)\s+(?:of|about|on|regarding|is|are)\b"
    # A thing the inputs do not give, mid-sentence: "Since no name is supplied, ...".
    r"|\bno\s+(?:\w+\s+){1,2}?(?:is|are|was|were)\s+(?:\w+ly\s+)?(?:mentioned|specified|stated|"
    r"provided|given|indicated|named|included|supplied)\b"
    # Nothing to say without more inputs: "There is nothing to go on", "Little else can be
    # said without more context".
    r"|\bnothing\s+to\s+go\s+(?:on|by)\b|\bwithout\s+(?:more|further|additional)\s+(?:context|"
    r"information|details|data)\b"
    r"|\b(?:little|nothing|not\s+much)\s+(?:else|more)\s+can\s+be\s+(?:said|added|determined|"
    r"inferred|told)\b"
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
    r"unmentioned|undisclosed|unaddressed|unsaid)\b"
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
        "unmentioned undisclosed unaddressed unsaid unnamed unremarked without".split()
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
