"""Kind ``meta_discourse``: the sentence talks about texts - the inputs the model was
given (Sentence 1, the alt-text, the dense caption, the prompt) or the caption it is
writing (this caption, the merged description) - instead of about the image.

What counts as a reference to a text, and when one is content, is in
:mod:`.references`.
"""

from __future__ import annotations

import re

from kale_spark.curation.leaks.base import Rule, Sentence
from kale_spark.curation.leaks.references import (
    REFERENCE_WORDS,
    find_references,
    is_modifier,
    owned_by_other,
    reference_leaks,
)

__all__ = ["AsDescribedAside", "SelfAssessment", "SelfReference", "SourceTag", "TextReference"]

_I = re.IGNORECASE

# A text implied as the source: "The room is described as a hotel lobby."
_DESCRIBED_AS = re.compile(
    r"\b(?:is|are|was|were)\s+(?:\w+ly\s+)?(?:described|referred\s+to|characteri[sz]ed|"
    r"mentioned|portrayed|depicted)\s+as\b"
    r"|\bit\s+(?:is|was|has\s+been)\s+(?:\w+ly\s+)?(?:mentioned|stated|noted|indicated|"
    r"specified)\s+that\b",
    _I,
)
# "The model" is a text's author only as a source: a fashion model shows a dress.
_PER_MODEL = re.compile(
    r"\b(?:according\s+to|per|based\s+on|as\s+\w+\s+by)\s+the\s+model\b"
    # ... or when it says, reads or thinks: "the model describes a bicycle".
    r"|\bthe\s+(?:model|captioner|ai|assistant)\s+(?:only\s+|also\s+|clearly\s+|apparently\s+)?"
    r"(?:describes|described|mentions|mentioned|says|said|calls|called|identifies|identified|"
    r"thinks|thought|reads|sees|saw|guesses|guessed|claims|claimed|believes|assumes|assumed|"
    r"names|named|lists|listed|suggests|suggested|reports|reported|counts|counted|labels|"
    r"labeled|labelled|mistakes|mistook|misidentifies|misidentified)\b",
    _I,
)


class TextReference(Rule):
    """An input or the prompt is what the sentence talks about."""

    name = "text_reference"
    kind = "meta_discourse"
    triggers = REFERENCE_WORDS

    def matches(self, s: Sentence) -> bool:
        if any(reference_leaks(s, a, b, k) for a, b, k in find_references(s)):
            return True
        if _PER_MODEL.search(s.masked) and not s.shows_carrier:
            return True
        return not s.shows_text and _DESCRIBED_AS.search(s.masked) is not None


_OUT = (
    r"(?:caption|description|sentence|text|version|rewrite|summary|output|paragraph|response|"
    r"answer|information|details|wording|phrasing)"
)
_PROC = (
    r"merged|combined|refined|revised|rewritten|fused|integrated|updated|improved|enhanced|"
    r"resulting|generated|synthesized|consolidated|unified|polished|edited|reworded|"
    r"rephrased|expanded|augmented|enriched|corrected|condensed|shortened|blended|"
    r"knowledge[\s-]augmented|final"
)
_SELF_THIS = re.compile(
    rf"\b(?:this|these)\s+(?:(?:new|full|complete|single|present|current|whole|overall|"
    rf"detailed|coherent|more|last)\s+)*(?!details\b){_OUT}s?\b",
    _I,
)
_SELF = re.compile(
    rf"\b(?:this|these)\s+(?:(?:{_PROC}|new|full|complete|single|present|current|above|whole|"
    rf"overall|detailed|coherent|more|last)\s+)*(?:{_PROC}|above)\s+{_OUT}s?\b"
    rf"|\b(?:the|a|an|my|our|your)\s+(?:(?:new|single|coherent|more|complete|detailed)\s+)*"
    rf"(?:{_PROC})\s+{_OUT}s?\b"
    rf"|\b(?:the|my|our)\s+(?:new|present|current)\s+{_OUT}s?\b"
    rf"|\bthe\s+above\s+{_OUT}s?\b"
    rf"|\b(?:the|my|this)\s+{_OUT}s?\s+(?:above|below)\b(?!\s+(?:the|a|an|it|its|his|her|their)\b)",
    _I,
)
# The output's length: "The caption is under 80 words."
_LENGTH = re.compile(
    rf"\b(?:the|this|my|our)\s+{_OUT}\s+(?:is|has|contains|runs|stays|comes\s+in|falls)\s+"
    r"(?:to\s+)?(?:[\w-]+\s+){0,3}?(?:words?|characters?|tokens?)\b",
    _I,
)
_WORD_COUNT = re.compile(
    r"\bword\s+count\b|^\W*\(?\s*\d+\s+words\s*\)?\W*$"
    # The output's length kept within a bound: "Kept under seventy words".
    r"|\b(?:kept|keeps|stays?|is|comes\s+in)\s+(?:well\s+)?(?:under|below|within)\s+(?:[\w-]+\s+)?"
    r"words\b",
    _I,
)
# An alternative output named: "Option B is more literal" (a whiteboard's is content).
_OPTION = re.compile(r"(?-i:\b[Oo]ption\s+[A-D]\b)")
# Editing narration about the output: "the caption now ...", "the text has been merged".
_EDITED = re.compile(
    rf"\b(?:the|this)\s+{_OUT}s?\s+(?:now\b|(?:(?:has|have|had)\s+been|was|were|is|are)\s+"
    rf"(?:now\s+)?(?:{_PROC}|modified|adjusted|lengthened|tailored|crafted|written\s+to)\b)",
    _I,
)


# The act of merging as the subject of what the text does: "The merge preserves the
# name", "The fusion of these details results in ...".
_THE_MERGE = re.compile(
    r"\b(?:the|this|my|our)\s+(?:merge|fusion|rewrite|revision|combination|synthesis|blend)\s+"
    r"(?:of\s+(?:these|the|both|all)\s+(?:two\s+)?(?:details|sentences|captions|descriptions|"
    r"inputs|texts|sources|pieces|facts|elements)\s+)?(?:preserves|keeps|retains|drops|adds|"
    r"results|removes|omits|combines|merges|integrates|includes|leaves|brings|yields|produces|"
    r"creates|gives)\b",
    _I,
)


# The text told as one augmented with knowledge, or as a merged whole: "a caption
# augmented with knowledge about ...", "the merged result names ...".
_AUGMENTED = re.compile(
    r"\b(?:caption|description|text|version|sentence)s?\s+(?:\w+\s+)?(?:augmented|enriched|"
    r"enhanced|supplemented|infused)\s+with\s+(?:\w+\s+)?(?:knowledge|facts|information|context)\b"
    r"|\b(?:the|this|our|my)\s+(?:merged|combined|fused|blended|knowledge-augmented)\s+(?:result|"
    r"product|outcome|piece|whole)\b"
    r"|\bknowledge[\s-](?:rich|augmented|enriched|infused|laden|heavy)\s+(?:depiction|caption|"
    r"description|summary|rendering|account|version|portrayal|overview)\b",
    _I,
)


class SelfReference(Rule):
    """The caption talks about itself ("This caption blends ...", "the merged description")."""

    name = "self_reference"
    kind = "meta_discourse"
    triggers = frozenset(
        """caption description sentence text version rewrite summary output paragraph
        response answer information details wording phrasing""".split()
    )
    triggers = triggers | {w + "s" for w in triggers} | {"count", "words", "option"}
    triggers = triggers | frozenset(
        "merge fusion rewrite revision combination synthesis blend result knowledge".split()
    )

    def matches(self, s: Sentence) -> bool:
        masked = s.masked
        # "This description" in a sentence about printed text may be that text.
        for m in (*_SELF.finditer(masked), *_SELF_THIS.finditer(masked)):
            if owned_by_other(masked, m.end()):
                continue  # "this version of the Mona Lisa", "this description of the house"
            if not s.tied(m.start(), m.end()) and not is_modifier(masked, m.start(), m.end()):
                return True
        if _EDITED.search(masked) or _WORD_COUNT.search(masked) or _THE_MERGE.search(masked):
            return True
        if _AUGMENTED.search(masked):
            return True
        if _OPTION.search(masked) and not s.shows_text:
            return True
        return not s.shows_text and _LENGTH.search(masked) is not None


_ASIDE = re.compile(
    r"\bas\s+(?:it\s+|they\s+)?(?:(?:was|were|is|are|has\s+been|had\s+been)\s+)?"
    r"(?:(?:previously|already|earlier|originally|just|briefly)\s+)?(?:described|"
    r"mentioned|stated|noted|specified|indicated|given|provided|requested|instructed|outlined|"
    r"explained|discussed|detailed|listed|established|said|suggested|depicted|portrayed|"
    r"illustrated|presented|highlighted|conveyed|reported|cited|referenced|quoted|expressed|"
    r"implied|reflected|captured|referred\s+to|pointed\s+out|touched\s+(?:on|upon))\b"
    r"(?=\s*(?:[,.;:)!?]|$|(?:above|earlier|before|previously|below|already|here|elsewhere|"
    r"initially|originally)\b))",
    _I,
)


# The same pointer said of the text's own parts: "The dog is described above", "Above,
# the street is described", "as the sentence before says".
_POINTER = re.compile(
    r"\b(?:is|are|was|were|has\s+been|have\s+been)\s+(?:\w+ly\s+)?(?:described|mentioned|"
    r"noted|outlined|detailed|listed|discussed|explained|introduced)\s+(?:in\s+(?:more\s+|"
    r"full\s+|great\s+)?detail\s+|at\s+length\s+|briefly\s+)?(?:earlier|previously|"
    # "above the door" is a place in the image: "above" ends the clause here.
    r"(?:above|below)(?=\s*(?:[,.;:)!?]|$)))\b"
    r"|^\W*(?:above|earlier|previously),\s+(?:[\w'’-]+\s+){1,6}?(?:is|are|was|were)\s+"
    r"(?:\w+ly\s+)?(?:described|mentioned|noted|outlined|detailed|listed|introduced)\b",
    _I,
)


# A text standing behind a pronoun, or a participle pointing back or up: "like it said,
# ...", "The Vespa, previously referred to, ...", "the hikers noted earlier", "the result
# generated above includes ...".
_BACK = re.compile(
    r"\b(?:like|as)\s+(?:it|they|the\s+(?:other|first|second)\s+one)\s+(?:said|says|put\s+it|"
    r"mentioned|noted|stated|described\s+it)(?=\s*(?:[,.;:)!?]|$))"
    r"|\b(?:previously|earlier|already)\s+(?:referred\s+to|mentioned|described|noted|introduced|"
    r"named)\b"
    r"|\b(?:referred\s+to|mentioned|noted|described|introduced|named)\s+(?:earlier|before|"
    r"previously|above)\b(?!\s+(?:in|on|at|that|this|today|by|during|the)\b)"
    r"|\b(?:generated|written|produced|created|given|provided|stated|presented)\s+(?:above|below)"
    r"(?=\s*(?:[,.;:)!?]|$|(?:is|are|was|were|includes?|contains?|has|shows?|names?|lists?|"
    r"mentions?)\b))",
    _I,
)


class AsDescribedAside(Rule):
    """ "As described," "as mentioned earlier", "is described above": a pointer back to
    some text, with no object in the image ("as described on the placard" names one and
    is content)."""

    name = "as_described"
    kind = "meta_discourse"
    triggers = frozenset(
        {"as", "above", "earlier", "previously", "below", "like", "already", "before"}
    )

    def matches(self, s: Sentence) -> bool:
        masked = s.masked
        return any(rx.search(masked) is not None for rx in (_ASIDE, _POINTER, _BACK))


# How writing is graded: the qualities a writer claims for its own text.
_QUALITY = (
    r"concise|clear|informative|accurate|readable|fluent|coherent|succinct|natural|polished|"
    r"grammatical|faithful|precise|complete|comprehensive|detailed|factual|neutral|vivid|"
    r"short|brief|compact|balanced|smooth|specific|clean|crisp|tight|objective|"
    r"well[\s-](?:structured|written|formed|balanced)"
)
_GRADED_TEXT = re.compile(
    # The text said to be good: "The caption is now complete and coherent."
    r"\b(?:the|this|my|our)\s+(?:caption|description|sentence|text|output|wording|phrasing)\s+"
    r"(?:is|reads|remains|stays|sounds|feels)\s+(?:now\s+)?(?:both\s+|more\s+|fully\s+|very\s+|"
    rf"quite\s+)?(?:{_QUALITY})\b"
    # The outcome graded: "The result is short but complete."
    r"|\b(?:the|this)\s+(?:result|outcome|output|wording|phrasing)\s+(?:is|reads|stays|remains)\s+"
    rf"(?:now\s+)?(?:both\s+|more\s+|very\s+)?(?:{_QUALITY})\b"
    # A quality only writing has, improved: "Readability has been improved".
    r"|\b(?:readability|fluency|concision|conciseness|coherence|grammaticality)\s+(?:has|have|was|"
    r"is)\s+(?:been\s+)?(?:\w+ly\s+)?(?:improved|increased|enhanced|preserved|kept|maintained|"
    r"prioriti[sz]ed)\b"
    # The text said to read well or stay true to its inputs: "it reads well and stays faithful".
    r"|^\W*(?:overall,?\s+)?(?:it|this|the\s+(?:caption|text|result|wording|description))\s+"
    r"(?:now\s+)?reads\s+(?:well|smoothly|naturally|cleanly|fluently|nicely)\b"
    # The same without a subject: "Reads far more fluently than before", "Much more
    # readable now!"
    r"|^\W*reads\s+(?:far\s+|much\s+|a\s+lot\s+)?(?:more\s+)?(?:fluently|naturally|smoothly|"
    r"cleanly|better)\b"
    r"|^\W*(?:much|far|a\s+lot)\s+(?:more|less)\s+(?:readable|fluent|concise|natural|coherent|"
    r"informative|polished|wordy|repetitive)\b"
    r"|\b(?:stays?|remains?)\s+faithful\s+to\s+(?:the\s+|both\s+)?(?:inputs?|sources?|originals?|"
    r"facts)\b|^\W*it\s+(?:\w+\s+){0,4}?(?:stays|remains)\s+faithful\b"
    # The register of the writing: "The tone is neutral and descriptive throughout."
    r"|\bthe\s+(?:tone|register|style|voice)\s+(?:is|stays|remains|was)\s+(?:kept\s+)?"
    r"(?:\w+\s+(?:and\s+)?)?(?:descriptive|factual|objective|informative|encyclopedic|"
    r"matter-of-fact|journalistic)\b"
    # The outcome named as a graded text: "The result is a fluent, factual description."
    r"|\b(?:the|this)\s+(?:result|outcome|output)\s+is\s+(?:now\s+)?an?\s+(?:[\w-]+,?\s+){1,3}?"
    r"(?:caption|description|sentence|text)\b"
    # A change said to improve the text: "This makes the sentence more informative".
    r"|\bmakes?\s+(?:the|this|my)\s+(?:caption|description|sentence|text|wording)\s+"
    r"(?:more|less|much\s+more)\s+\w+"
    r"|\bwithout\s+(?:losing|sacrificing|giving\s+up|hurting)\s+(?:any\s+)?(?:clarity|"
    r"readability|accuracy|fluency|flow|meaning|coherence|brevity)\b"
    # What a change keeps the text: "This keeps it factual and readable."
    rf"|\b(?:keeps?|makes?|leaves?)\s+(?:it|the\s+(?:caption|description|sentence|text))\s+"
    rf"(?:{_QUALITY})(?:\s*,\s*|\s+and\s+|\s*,\s*and\s+)(?:{_QUALITY})\b"
    # Weighing the two inputs' contributions: "a balance between knowledge and detail".
    r"|\bbalanced?\s+(?:between|of)\s+(?:the\s+)?(?:knowledge|facts|factual\s+\w+|accuracy|"
    r"information|context|brevity|readability|detail)\w*\s+and\s+(?:the\s+)?(?:visual\s+)?"
    r"(?:detail|description|knowledge|facts|readability|brevity|clarity|structure|accuracy)",
    _I,
)
_GRADED_WORDS = frozenset(
    "caption description sentence text output wording phrasing makes make without balance result "
    "outcome balanced keeps keep leaves leave readability fluency concision conciseness "
    "coherence grammaticality it this faithful tone register style voice overall reads much far "
    "lot".split()
)
# A sentence that is nothing but grades: "Short, clear, and informative."
# "It's accurate, specific, and free of filler.", "Clean, factual, 58 words."
_GRADE = (
    rf"(?:{_QUALITY}|factual|free\s+of\s+(?:filler|fluff|padding|jargon|repetition|errors|typos|"
    r"mistakes|speculation)|error-free|easy\s+to\s+read|no\s+speculation|(?:present|past)\s+"
    r"tense|(?:under|below|within)\s+\d+\s+words|\d+\s+words)"
)
_GRADES_ONLY = re.compile(
    r"^\W*(?:(?:it['’]s|it\s+is|this\s+is|now)\s+(?:(?:both|now)\s+){0,2})?"
    rf"{_GRADE}(?:\s*,\s*(?:and\s+)?{_GRADE}|\s+and\s+{_GRADE})+\W*$",
    _I,
)


class SelfAssessment(Rule):
    """The writer grades the text it wrote ("The caption is now complete and coherent",
    "This makes the sentence more informative", "Short, clear, and informative")."""

    name = "self_assessment"
    kind = "meta_discourse"

    # No word gate: a sentence of grades alone names no text. The search below has one.
    def matches(self, s: Sentence) -> bool:
        if s.shows_carrier:
            return False  # a review quoted on a poster grades the poster's text
        if _GRADES_ONLY.match(s.masked):
            return True
        return not _GRADED_WORDS.isdisjoint(s.words) and _GRADED_TEXT.search(s.masked) is not None


# A tag in brackets naming where a fact came from or what was done to the text:
# "(merged)", "(visual)", "[knowledge]", "(from the web text)".
_TAG = re.compile(
    r"[(\[]\s*(?:merged|combined|fused|rewritten|revised|refined|edited|paraphrased|"
    r"knowledge|visual(?:\s+details?)?|(?:from\s+)?(?:the\s+)?(?:alt[\s_-]?text|web\s+text|"
    r"dense\s+caption))\s*[)\]]"
    # A bracketed note of what each input said: "(description: blue; alt: Ming dynasty)".
    r"|[(\[]\s*(?:description|caption|alt|alt[\s_-]?text|dense(?:\s+caption)?|web(?:\s+text)?|"
    r"knowledge|visual)\s*:"
    # A bracketed note ending in its source: "(location from the web)".
    r"|[(\[][^()\[\]]{0,40}\b(?:from|per|via)\s+(?:the\s+)?(?:web|alt[\s_-]?text|caption|"
    r"description|text|inputs?|sources?|metadata|title|listing)\s*[)\]]",
    _I,
)


class SourceTag(Rule):
    """A bracketed tag that says where a fact came from or how the text was made
    ("The tram is red (visual) and in Lisbon (knowledge)", "(merged)")."""

    name = "source_tag"
    kind = "meta_discourse"
    triggers = frozenset(
        "merged combined fused rewritten revised refined edited paraphrased knowledge visual alt "
        "web dense description caption from per via".split()
    )

    def matches(self, s: Sentence) -> bool:
        return _TAG.search(s.masked) is not None
