"""Leaked-prompt artifact detection and sentence removal (pure, no Spark).

The fusion LLM sometimes writes about its prompt instead of the image ("as
indicated in Sentence 1", "Here is the merged caption:", "... keeps the
real-world knowledge ..."). KALE dropped every sentence that contains an artifact
keyword (:func:`keyword_baseline`). That rule also drops honest sentences (a sign
reading "real-world skills") and misses leaks that avoid its keywords.

:func:`clean_caption` instead classifies each sentence with general structural
cues and keeps every sentence it does not flag, byte for byte:

``prompt_part_reference``
    The sentence refers to a part of the fusion prompt (Sentence 1/2/3, the
    alt-text, the synthetic/dense caption, the given sentences, both
    descriptions, the first source, the keyword list, the original/web text,
    the vision/language model, both pieces of information, the prompt, the
    instructions, ...). Weak references ("the first sentence", "both captions")
    and bare ones ("the caption") only count when the sentence is not about
    text *in the image*: a reference tied to an in-image carrier ("the first
    sentence of the poem", "the caption under the cartoon", "the caption
    beneath the photo", "the two inputs on the back of the television") is
    content, as is a sentence that mentions a sign, poster, slide, book,
    device, ... or text being read, printed or written - unless the reference
    is used as a source ("as mentioned in Sentence 1", "according to the first
    sentence", "in line with Sentence 1", "the alt-text says ...").
``meta_commentary``
    The sentence talks about the output, the task or the assistant itself:
    "Here is the merged caption", "This new sentence ...", "The merged
    description ...", "I have combined ...", "As an AI language model, I
    cannot ...", "Note: ...", "Let me know ...", "as requested", "As noted
    above", "No date is provided", "there is not enough information to ...",
    editing narration ("the grammar has been corrected", "was rephrased").
``echoed_instruction``
    The sentence repeats instruction vocabulary ("nice sentence structure",
    "real-world knowledge", keeping/merging "the knowledge and the visual
    details"), unless it is about in-image text (a poster about sentence
    structure).
``prompt_overlap``
    Only when ``prompt`` is given (the filter passes the instruction actually
    sent for the row: its prompt template and system turn): the sentence shares
    with the instruction a five-word sequence holding at least three
    non-stopwords, or two content-word pairs (stopwords skipped, crude stems, the
    common pair "real world" not counted): "it suffers from flaws in grammar and
    may contain false information" echoes CapsFusion's instruction.
``meta_prefix``
    A leading label such as "Here is the merged caption:", "New Sentence:",
    "Sentence 3:", "Refined description:" or "Combined:" in front of a real
    caption in the same sentence. Only the prefix is removed (it is reported as
    a removed fragment); the caption after it is kept if it passes the checks
    above on its own.

Text between double quotes (straight or curly) or between paired single quotes
is never evidence of a leak: 'a worksheet titled "Sentence 1 and Sentence 2"'.

The ``prompt`` argument is the *template* (for example
``kale_spark.prompts.FUSE_CAPSFUSION_V1.template``, several templates may be
joined with newlines) or its instruction text: ``{slot}`` placeholders are
removed and n-grams never span them. Do not pass the rendered prompt - the
alt-text and dense caption in it would make every faithful caption "overlap".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from kale_spark.quality import STOPWORDS

__all__ = [
    "BASELINE_KEYWORDS",
    "Cleaned",
    "REASONS",
    "classify_sentence",
    "clean_caption",
    "keyword_baseline",
    "split_sentences",
]

REASON_PART_REFERENCE = "prompt_part_reference"
REASON_META = "meta_commentary"
REASON_ECHO = "echoed_instruction"
REASON_OVERLAP = "prompt_overlap"
REASON_META_PREFIX = "meta_prefix"
REASON_KEYWORD = "keyword"
REASONS = (
    REASON_PART_REFERENCE,
    REASON_META,
    REASON_ECHO,
    REASON_OVERLAP,
    REASON_META_PREFIX,
    REASON_KEYWORD,
)


@dataclass(frozen=True)
class Cleaned:
    """A caption after artifact removal.

    ``text`` holds the kept sentences joined by single spaces (the input unchanged
    when nothing was removed); ``removed`` the removed sentences or prefixes in
    order, and ``reasons`` one reason code per entry of ``removed``.
    """

    text: str
    removed: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """True when something was removed."""
        return bool(self.removed)


# ---------------------------------------------------------------------------
# Sentence splitting

# Titles and other abbreviations that are followed by a name, never a sentence end.
_NEVER_END = frozenset(
    "mr mrs ms messrs dr prof rev hon gen col capt cpt lt sgt sen rep gov pres mt ft fr "
    "e.g i.e cf vs viz approx ca".split()
)
# Abbreviations that can end a sentence: an end only when a typical sentence
# opener follows ("Acme Inc. The logo ..." vs "Acme Inc. Headquarters").
_AMBIGUOUS_END = frozenset(
    "inc ltd corp co llc plc jr sr st ave blvd rd hwy dept univ est bros "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
# Abbreviations before a number: "No. 10", "Vol. 2", "Fig. 3", "p. 12".
_NUMBER_ABBREV = frozenset("no nos vol vols fig figs p pp ch sec art op ed".split())

_STARTERS = frozenset(
    """the a an this that these those it its it's there here in on at as by for from with to of
    behind above below beside near next under over inside outside along across around between
    he she they we i his her their our my you your one two three four five several some many
    both each every all another other overall additionally also however meanwhile while
    although though when where if because since after before during what which who notably
    finally together nearby beyond no not its this note""".split()
)

_CANDIDATE = re.compile(r"(\.{2,}|…|[.!?]+)([\"'”’»)\]]*)(\s+)")
_TOKEN_BEFORE = re.compile(r"[^\s\"“‘'(\[]+$")
_DOTTED_ACRONYM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")
_NEXT_WORD = re.compile(r"[\"“‘'(\[]*([\w'’-]+)")


def _quote_open(prefix: str) -> bool:
    """True when a double quote opened in ``prefix`` is still open at its end."""
    straight = prefix.count('"') % 2 == 1
    curly = prefix.count("“") > prefix.count("”")
    return straight or curly


def _is_boundary(line: str, m: re.Match[str], start: int) -> bool:
    after = line[m.end() :]
    if not after:
        return True
    nxt = after[0]
    if nxt.islower() or nxt in ",;:":
        return False
    # Inside a quotation that closes later on the line: not an end.
    prefix = line[: m.end(2)]
    if line.count('"') % 2 == 0 and line.count("“") == line.count("”") and _quote_open(prefix):
        return False
    punct = m.group(1)
    if punct != ".":
        return True
    tok_match = _TOKEN_BEFORE.search(line[start : m.start(1)])
    if tok_match is None:
        return True
    tok = tok_match.group(0)
    low = tok.lower()
    nw = _NEXT_WORD.match(after)
    next_word = nw.group(1) if nw else ""
    starter = next_word.lower() in _STARTERS
    if m.group(2):  # closing quote or bracket after the period: a real end
        return True
    if low in _NEVER_END:
        return False
    if low in _NUMBER_ABBREV:
        return not next_word[:1].isdigit() and starter
    if low == "etc":
        return True
    if len(tok) == 1 and tok.isalpha():
        # An initial: "J. R. R. Tolkien"; "Plan B. The ..." ends a sentence.
        if re.match(r"[A-Z]\.\s", after):
            return False
        return starter
    if low in _AMBIGUOUS_END or _DOTTED_ACRONYM.fullmatch(tok):
        return starter
    return True


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences; each is an exact (stripped) substring of ``text``.

    A line break always ends a sentence. Inside a line a sentence ends at ``.``,
    ``!``, ``?`` or an ellipsis (with any closing quotes or brackets) followed by
    whitespace and a word that does not start in lower case, except after titles
    (Mr., Dr., Prof., e.g., i.e., vs.), initials (J. R. R. Tolkien), numbered
    abbreviations (No. 10) and inside a double quotation that closes later. After
    ambiguous abbreviations (Inc., St., U.S., a.m.) a sentence ends only when a
    typical sentence opener ("The", "A", "In", "It", ...) follows. Decimals
    (3.5) and domains (example.com) never split because no space follows the dot.
    """
    sentences: list[str] = []
    for line in re.split(r"\r?\n|\r", text or ""):
        start = 0
        for m in _CANDIDATE.finditer(line):
            if m.end() >= len(line) or not _is_boundary(line, m, start):
                continue
            piece = line[start : m.end(2)].strip()
            if piece:
                sentences.append(piece)
            start = m.end()
        piece = line[start:].strip()
        if piece:
            sentences.append(piece)
    return sentences


# ---------------------------------------------------------------------------
# The KALE keyword rule

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
        if any(k in low for k in lowered):
            removed.append(sentence)
        else:
            kept.append(sentence)
    return _assemble(kept, removed, [REASON_KEYWORD] * len(removed), text)


# ---------------------------------------------------------------------------
# Building blocks of the detector

_I = re.IGNORECASE

# Nouns of things that carry text inside an image. A sentence that mentions one
# (or says that text is read/printed/written) is taken to be about in-image text.
_ANCHOR_NOUNS = (
    r"signs?|signage|signposts?|posters?|plaques?|placards?|banners?|billboards?|boards?|"
    r"whiteboards?|blackboards?|chalkboards?|corkboards?|noticeboards?|pages?|books?|"
    r"textbooks?|notebooks?|workbooks?|worksheets?|handouts?|covers?|screens?|monitors?|"
    r"displays?|slides?|projectors?|labels?|tags?|stickers?|cards?|postcards?|letters?|"
    r"envelopes?|notes?|menus?|poems?|songs?|lyrics|speech(?:es)?|essays?|articles?|"
    r"paragraphs?|passages?|chapters?|novels?|stor(?:y|ies)|scripts?|manuscripts?|scrolls?|"
    r"murals?|walls?|t-shirts?|shirts?|mugs?|totes?|jerseys?|headlines?|newspapers?|"
    r"magazines?|flyers?|leaflets?|brochures?|pamphlets?|certificates?|diplomas?|charts?|"
    r"diagrams?|infographics?|presentations?|lectures?|lessons?|classrooms?|exams?|quiz(?:zes)?|"
    r"inscriptions?|engravings?|tablets?|stones?|memorials?|monuments?|panels?|comics?|"
    r"cartoons?|memes?|subtitles?|albums?|posts?|tweets?|websites?|webpages?|catalogu?es?|"
    r"maps?|box(?:es)?|packages?|packaging|bottles?|jars?|wrappers?|receipts?|tickets?|"
    r"storefronts?|marquees?|teachers?|students?|instructors?|grammar|exercises?|verses?|"
    r"quotes?|quotations?|captions? contests?|windows?|doors?|"
    # devices: they show text and have inputs/outputs of their own
    r"televisions?|tvs?|amplifiers?|consoles?|computers?|laptops?|phones?|smartphones?|"
    r"keyboards?|devices?|ports?|machines?|printers?|copiers?|routers?|mixers?|cameras?"
)
_TEXT_VERBS = (
    r"reads?|reading|titled|entitled|labell?ed|written|printed|painted|engraved|carved|"
    r"inscribed|handwritten|typed|spelled|spells|stamped|embroidered|etched|scrawled|"
    r"projected|underlined|circled|circling|highlighted|erased"
)
_SOURCE_VERBS = (
    r"mention(?:s|ed)?|describ(?:e|es|ed)|stat(?:e|es|ed)|not(?:e|es|ed)|says?|said|"
    r"indicat(?:e|es|ed)|identif(?:y|ies|ied)|nam(?:e|es|ed)|adds?|added|provid(?:e|es|ed)|"
    r"gives?|gave|suggest(?:s|ed)?|calls?|called|lists?|listed|focus(?:es|ed)?|tells?|told|"
    r"refers?|referred|highlight(?:s|ed)?|emphasi[sz](?:e|es|ed)|specif(?:y|ies|ied)|"
    r"suppl(?:y|ies|ied)|confirm(?:s|ed)?|places?|placed|agree|agrees|differ|differs|"
    r"omit(?:s|ted)?|misspell(?:s|ed)?|contradicts?|claims?|reports?|notes?|offers?|"
    r"depicts?|shows?|points?\s+out|reveals?|explains?|portrays?|lacks?|exhibits?|"
    r"contains?|includes?"
)
_ANCHOR_ANY = re.compile(rf"\b(?:{_ANCHOR_NOUNS}|{_TEXT_VERBS})\b", _I)
_DET = r"(?:the|a|an|this|that|these|those|its|his|her|their|each|every|both|your|my|our)"
_PREP = (
    r"(?:on|in|inside|beneath|under|underneath|below|above|at|of|next\s+to|beside|across|"
    r"along|near|atop|over|from|within|to)"
)
_ANCHOR_AFTER = re.compile(
    rf"^(?:'s|’s)?\s*(?:(?:{_PREP}\s+)+(?:{_DET}\s+)?(?:[\w'’-]+\s+){{0,3}}?"
    rf"(?:{_ANCHOR_NOUNS})\b|(?!(?:{_SOURCE_VERBS})\b)(?:{_ANCHOR_NOUNS})\b|(?:{_TEXT_VERBS})\b)",
    _I,
)
_ANCHOR_AFTER_PROPER = re.compile(r"^\s+(?:of|from|in)\s+(?:the\s+|an?\s+)?[A-Z]")
# Printed next to a picture: "the caption beneath the photo", "the text under the cartoon".
_ANCHOR_AFTER_PICTURE = re.compile(
    r"^\s+(?:beneath|under|underneath|below|above|next\s+to|beside|on)\s+(?:the|a|an|this|"
    r"that|each|every)\s+(?:[\w'’-]+\s+){0,2}?(?:photos?|photographs?|pictures?|drawings?|"
    r"paintings?|images?|portraits?|illustrations?|frames?)\b",
    _I,
)
_ANCHOR_BEFORE = re.compile(rf"\b(?:{_ANCHOR_NOUNS})(?:'s|’s|s'|’)?\s+(?:{_DET}\s+)?$", _I)

_META_NOUN = r"(?:sentence|caption|description|text)"
_PROC = (
    r"merged|combined|refined|revised|rewritten|fused|integrated|updated|improved|enhanced|"
    r"resulting|generated|synthesized|consolidated|unified|polished|edited|reworded|"
    r"rephrased|expanded|augmented"
)
_GEN = r"new|final|more|single|coherent|comprehensive|following|complete|above|image|whole"

# References to the parts of the fusion prompt. Strong ones name a prompt part
# outright; weak ones could also name text in the picture.
# Numbered prompt sentences and the alt-text: never text an image shows unless tied
# to a carrier right there ("Sentence 1 on the worksheet"); quoted text is masked.
_NAMED_PART = re.compile(
    r"\bsentences?\s*(?:#\s*)?(?:[1-4]|one|two|three)\b(?![.,]\d)"
    r"|\b(?:alt|alternative)[\s-]?(?:text|tag|attribute)s?\b",
    _I,
)
_STRONG_REF = re.compile(
    r"\bsentences?\s*(?:#\s*)?(?:[1-4]|one|two|three)\b"
    r"|\b(?:alt|alternative)[\s-]?(?:text|tag|attribute)s?\b"
    r"|\bkeywords?(?:[\s-]+(?:style|heavy|based))?[\s-]+(?:lists?|texts?|alt|captions?|tags?)\b"
    r"|\b(?:original|source|input|web|given|provided|supplied)\s+texts?\b"
    r"|\b(?:vision|language|captioning|caption|image|ai|multimodal|vision-language)"
    r"[\s-]+models?\b"
    r"|\b(?:both|two|the|these|those)\s+pieces\s+of\s+(?:text|information|input)\b"
    r"|\b(?:synthetic|dense|generated|machine[\s-]generated|model[\s-]generated)[\s-]+"
    r"(?:(?:visual|image|dense)\s+)?(?:captions?|descriptions?)\b"
    r"|\bweb[\s-]+(?:captions?|texts?|descriptions?|alt)\b"
    r"|\b(?:inputs?|sources?)\s*(?:#\s*)?(?:[12]|one|two)\b"
    r"|\b(?:first|second|other|two|both|either|neither)\s+(?:inputs?|sources?)\b"
    r"|\bthe\s+inputs?\b"
    r"|\b(?:given|provided|supplied)\s+(?:sentences|captions|descriptions|texts?|inputs?|"
    r"information|details|context|knowledge|facts)\b"
    r"|\b(?:information|details|text|texts|context|knowledge|facts|sentences|captions|"
    r"descriptions|inputs)\s+(?:provided|given|supplied)\b"
    r"|\bthe\s+prompt\b"
    r"|\b(?:the|your|these|my)\s+instructions?\b",
    _I,
)
_WEAK_REF = re.compile(
    rf"\b(?:first|second|former|latter|1st|2nd|other|two|both|either|neither|each|original|"
    rf"initial|previous|preceding|earlier)\s+(?:{_META_NOUN}s?|versions?|inputs?)\b"
    rf"|\b{_META_NOUN}s?\s+(?:above|below)\b(?!\s+(?:the|a|an|it|its|his|her|their)\b)"
    rf"|\bthe\s+above\s+{_META_NOUN}s?\b",
    _I,
)
_BARE_REF = re.compile(rf"\b(?:the|that)\s+{_META_NOUN}s?\b", _I)

_ATTRIB_BEFORE = re.compile(
    r"(?:\b(?:as\s+)?(?:mentioned|described|stated|noted|indicated|depicted|shown|suggested|"
    r"specified|given|provided|listed|named|identified|taken|drawn|derived|sourced|"
    r"highlighted|outlined|detailed|explained|presented|seen|conveyed|expressed|captured|"
    r"reflected|referenced|implied|found|retained|kept|preserved|borrowed|obtained|added)\s+"
    r"(?:in|by|from|within|on)"
    r"|\baccording\s+to|\b(?:as\s+)?per|\bbased\s+on|\b(?:in\s+line|consistent|in\s+keeping|"
    r"in\s+accordance|in\s+agreement|as\s+in|along)\s+with|\bunlike|\blike|\bdrawing\s+(?:on|from)|\bcombining|"
    r"\bmerging|\bfusing|\bblending|\bfrom|\bsummariz\w+|\bbetween|\bfollowing|\bunlike|"
    rf"\bcontradicts|^\s*(?:in|within))\s+(?:(?:{_DET}|of\s+the)\s+|[\w-]+(?:'s|’s)\s+)*$",
    _I,
)
_ATTRIB_AFTER = re.compile(
    r"^(?:'s|’s)?\s+(?:(?:also|only|clearly|explicitly|further|then|simply|just|merely)\s+)?"
    r"(?:(?:does|do|did)\s+not\s+|doesn't\s+|don't\s+|didn't\s+|never\s+)?"
    rf"(?:{_SOURCE_VERBS})\b",
    _I,
)

_META_PATTERNS = (
    # Assistant chatter and first person.
    re.compile(r"^\W*(?:sure|certainly|of\s+course|okay|ok|absolutely|alright|gladly)\b", _I),
    re.compile(
        rf"\bhere(?:'s|’s|\s+is|\s+are)\b.*\b(?:{_META_NOUN}|versions?|summary|rewrite|output|"
        r"result)s?\b",
        _I,
    ),
    re.compile(
        r"(?<![\w'’])I(?:'ve|’ve|'m|’m|'ll|’ll|'d|’d)\b|(?<![\w'’])I\s+(?:have|had|hope|am|"
        r"will|would|can|could|merged|combined|refined|rewrote|revised|kept|added|removed|"
        r"included|made|tried|think|believe|used|incorporated|integrated|focused|chose|"
        r"decided|did|should|also|then|just)\b"
    ),
    re.compile(
        r"\b(?:let\s+me|feel\s+free|hope\s+(?:this|that|it)|please\s+(?:note|let)|as\s+requested|"
        r"as\s+instructed|as\s+you\s+(?:requested|asked)|if\s+you\s+(?:would|need|want|like))\b",
        _I,
    ),
    re.compile(
        r"\byou\s+(?:\w+\s+)?(?:provided|gave|shared|requested|asked|wanted|mentioned|sent|"
        r"supplied|need|needed|would\s+like)\b"
        rf"|\byour\s+(?:\w+\s+)?(?:{_META_NOUN}s?|requests?|prompts?|inputs?|needs|"
        r"instructions?|questions?|first|second|original)\b",
        _I,
    ),
    # An assistant talking about itself or what it cannot do.
    re.compile(
        r"\bas\s+an?\s+(?:ai|artificial\s+intelligence|language\s+model|assistant|"
        r"large\s+language\s+model|llm)\b"
        r"|(?:^|[,;:]\s*|\b(?:and|but|so|because|as|if|while|although|though|since)\s+)"
        r"I\s+(?:cannot|can't|can’t|can|could|do|don't|don’t|did|am|was|need|must|only|"
        r"apologi[sz]e|sorry|see|found|noticed|assumed|inferred|wrote|chose)\b"
        r"|^\W*(?:i\s+am|i'm|i’m|we\s+are|sorry|apologies|unfortunately)\b[^.]*\b(?:cannot|"
        r"can't|can’t|unable|not\s+(?:able|possible|enough|sure|clear)|no\s+(?:way|information))\b",
        _I,
    ),
    # Editing narration: "the grammar has been corrected", "it was rephrased".
    re.compile(
        r"\b(?:has|have|had|was|were|is|are)\s+been\s+(?:\w+ly\s+)?(?:corrected|rephrased|"
        r"reworded|restructured|omitted|left\s+out|retained|favou?red|incorporated|merged|"
        r"combined|verified|inferred|fused|concatenated)\b"
        r"|\b(?:was|were|is|are)\s+(?:\w+ly\s+)?(?:rephrased|reworded|restructured|omitted|"
        r"left\s+out|inferred|concatenated|turned\s+into\s+an?\s+(?:full|complete|proper|"
        r"coherent)\s+sentence)\b",
        _I,
    ),
    # Not enough to go on: "there is not enough information to identify ...".
    re.compile(
        r"\b(?:not\s+enough|insufficient|no|limited|little)\s+(?:information|details|"
        r"context|data)\s+(?:to|about|on|regarding|is|are|was|were)\b(?![^.]*\b(?:"
        + "signs?|boards?|panels?|plaques?|labels?"
        + r")\b)",
        _I,
    ),
    # "Note: ...", "(Note that ...)".
    re.compile(
        r"^\W*(?:note|n\.?\s?b\.?|p\.?\s?s\.?|disclaimer|edit)\s*[:\-–—]|^\W*note\s+that\b", _I
    ),
    # Self-reference: "as noted above", "as mentioned earlier".
    re.compile(
        r"\bas\s+(?:mentioned|noted|stated|described|discussed|said|indicated|explained|shown|"
        r"seen)\s+(?:earlier|above|before|previously|below)\b",
        _I,
    ),
    # "Combining these details, ..." at the start of a sentence.
    re.compile(
        r"^\W*(?:by\s+)?(?:combining|merging|integrating|fusing|blending|synthesi[sz]ing|"
        r"consolidating|putting\s+together|drawing\s+(?:on|from)|taking)\s+(?:these|the|both|"
        r"all|this|those)\s+(?:\w+\s+)?(?:details|information|sentences|captions|descriptions|"
        r"sources|inputs|elements|facts|knowledge|texts|pieces)\b",
        _I,
    ),
    # "The caption now ...", "The description has been combined ...".
    re.compile(
        rf"\b(?:the|this)\s+{_META_NOUN}s?\s+(?:now\b|(?:(?:has|have|had)\s+been|was|were|"
        rf"is|are)\s+(?:now\s+)?(?:{_PROC}|enriched|modified|adjusted|shortened|"
        rf"lengthened|tailored|crafted)\b)",
        _I,
    ),
)
# "This caption", "this merged version", "the refined sentence", "a new description".
_SELF_THIS = re.compile(
    rf"\b(?:this|these)\s+(?:(?:{_PROC}|{_GEN})\s+)*(?:{_META_NOUN}|versions?|rewrite|summary|"
    rf"output|paragraph)s?\b",
    _I,
)
_SELF_PROC = re.compile(
    rf"\b(?:the|a|an|my|our|your)\s+(?:(?:{_PROC}|{_GEN})\s+)*(?:{_PROC})\s+"
    rf"(?:{_META_NOUN}|versions?|rewrite|summary|output|paragraph)s?\b",
    _I,
)
# "The new description", "the final sentence" (but "the final sentence of the letter").
_SELF_GEN = re.compile(rf"\b(?:the|a|an|my|our|your)\s+(?:(?:{_GEN})\s+)+{_META_NOUN}s?\b", _I)
# Absence of information in the inputs: "No date is provided", "is not mentioned".
_ABSENCE = re.compile(
    r"\b(?:is|are|was|were)\s+(?:not|never)\s+(?:\w+ly\s+)?(?:mentioned|specified|stated|"
    r"provided|given|indicated|named|identified|listed|included)\b"
    r"|^\W*(?:no|neither|none)\b.*\b(?:is|are|was|were)\s+(?:\w+ly\s+)?(?:mentioned|"
    r"specified|stated|provided|given)\b"
    r"|\bunclear\s+from\b",
    _I,
)

_ECHO_PHRASES = re.compile(
    r"\bsentence\s+structures?\b"
    r"|\breal[\s-]+world\s+(?:knowledge|information|facts|details|context)\b"
    r"|\bvisual\s+descriptions?\b"
    r"|\bfactual\s+(?:information|knowledge|details|context)\b"
    r"|\bnames,?\s+places\b|\bbrands,?\s+(?:and\s+)?dates\b"
    r"|\bmerge[sd]?\s+and\s+refine[sd]?\b",
    _I,
)
_KEEP_VERB = re.compile(
    r"\b(?:keep|keeps|kept|keeping|retain\w*|preserv\w*|maintain\w*|incorporat\w*|integrat\w*|"
    r"combin\w*|merg\w*|blend\w*|weav\w*|woven|fus\w*|enrich\w*)\b",
    _I,
)
_KEEP_OBJECT = re.compile(
    r"\b(?:knowledge|visual\s+(?:details?|elements?|information|descriptions?|cues)|"
    r"key\s+(?:facts|details|information)|(?:brand|location|contextual|background)\s+"
    r"information|names\s+and\s+(?:places|dates)|pieces\s+of\s+information|"
    r"(?:relevant|important|original)\s+(?:details|information|facts))\b",
    _I,
)

_META_PREFIX = re.compile(
    r"^\W*(?:(?:sure|certainly|of\s+course|okay|ok|absolutely)[,!.]?\s+)?"
    rf"(?:here(?:'s|’s|\s+is|\s+are)\s+(?:[\w'’-]+\s+){{0,5}}?(?:{_META_NOUN}|version|summary|"
    r"rewrite|output|result)s?(?:\s+[\w'’-]+){0,5}?"
    r"|(?:(?:the|a|an|my|your)\s+)?(?:(?:"
    rf"{_PROC}|{_GEN}|output|final)\s+)*(?:{_META_NOUN}|version|output|result|answer|summary|"
    r"response|rewrite)(?:\s*(?:#\s*)?\d+)?"
    rf"|{_PROC}|rewritten|revision|fusion|merge)\s*:\s*",
    _I,
)

_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|(?<![\w'’])['‘][^'’]*['’](?![\w'’])")
_QUOTE_NEXT = re.compile(r"\s*[:,]?\s*[\"“‘']")
_WORD = re.compile(r"[^\W_]+")


def _mask_quotes(sentence: str) -> str:
    """Replace quoted text with a neutral token, keeping the quote marks."""
    return _QUOTED.sub(lambda m: m.group(0)[0] + "___" + m.group(0)[-1], sentence)


def _anchored(masked: str, start: int, end: int) -> bool:
    """True when the span at ``start:end`` is tied to an in-image text carrier."""
    after = masked[end:]
    before = masked[:start]
    return bool(
        _ANCHOR_AFTER.match(after)
        or _ANCHOR_AFTER_PROPER.match(after)
        or _ANCHOR_AFTER_PICTURE.match(after)
        or _ANCHOR_BEFORE.search(before)
    )


def _attributed(masked: str, start: int, end: int) -> bool:
    """True when the reference is used as a source of information.

    "The caption says: "..."" quotes in-image text and is not attribution.
    """
    if _ATTRIB_BEFORE.search(masked[:start]):
        return True
    after = _ATTRIB_AFTER.match(masked[end:])
    return bool(after) and not _QUOTE_NEXT.match(masked[end + after.end() :])


def _reference_leak(masked: str, about_image_text: bool) -> bool:
    spans: list[tuple[int, int, str]] = []
    spans += [(m.start(), m.end(), "named") for m in _NAMED_PART.finditer(masked)]
    spans += [(m.start(), m.end(), "strong") for m in _STRONG_REF.finditer(masked)]
    spans += [(m.start(), m.end(), "weak") for m in _WEAK_REF.finditer(masked)]
    spans += [(m.start(), m.end(), "bare") for m in _BARE_REF.finditer(masked)]
    for start, end, kind in spans:
        if _anchored(masked, start, end):
            continue
        if _attributed(masked, start, end):
            return True
        if kind != "bare" and not about_image_text:
            return True
    return False


def _self_reference(masked: str) -> bool:
    if _SELF_PROC.search(masked):
        return True
    for pattern in (_SELF_THIS, _SELF_GEN):
        for m in pattern.finditer(masked):
            if not _anchored(masked, m.start(), m.end()):
                return True
    return False


@lru_cache(maxsize=64)
def _prompt_ngrams(prompt: str, n: int = 5) -> frozenset[tuple[str, ...]]:
    grams: set[tuple[str, ...]] = set()
    for part in re.split(r"\{[^{}]*\}", prompt):
        tokens = [t.lower() for t in _WORD.findall(part)]
        for i in range(len(tokens) - n + 1):
            gram = tuple(tokens[i : i + n])
            if sum(t not in STOPWORDS for t in gram) >= 3:
                grams.add(gram)
    return frozenset(grams)


def _stem(token: str) -> str:
    for suffix in ("ing", "ed", "es", "ly", "s"):
        if token.endswith(suffix) and len(token) - len(suffix) >= 4:
            return token[: -len(suffix)]
    return token


def _content_stems(text: str) -> list[str]:
    tokens = (t.lower() for t in _WORD.findall(text))
    return [_stem(t) for t in tokens if t not in STOPWORDS and not t.isdigit()]


# Content bigrams too common in honest captions to count as an echo on their own.
_COMMON_BIGRAMS = frozenset({("real", "world")})


@lru_cache(maxsize=64)
def _prompt_bigrams(prompt: str) -> frozenset[tuple[str, str]]:
    grams: set[tuple[str, str]] = set()
    for part in re.split(r"\{[^{}]*\}", prompt):
        stems = _content_stems(part)
        grams.update(zip(stems, stems[1:], strict=False))
    return frozenset(grams - _COMMON_BIGRAMS)


def _overlaps_prompt(masked: str, prompt: str, n: int = 5) -> bool:
    """A five-word sequence of the instruction (three of them content words), or two
    content-word pairs of the instruction (stopwords skipped, crude stems: "suffers from
    flaws" ~ "suffer flaw")."""
    grams = _prompt_ngrams(prompt, n)
    tokens = [t.lower() for t in _WORD.findall(masked)]
    if any(tuple(tokens[i : i + n]) in grams for i in range(len(tokens) - n + 1)):
        return True
    stems = _content_stems(masked)
    shared = set(zip(stems, stems[1:], strict=False)) & _prompt_bigrams(prompt)
    return len(shared) >= 2


def classify_sentence(sentence: str, prompt: str | None = None) -> str | None:
    """The reason code for removing ``sentence``, or ``None`` to keep it.

    Looks at the whole sentence; the leading-prefix case is handled by
    :func:`clean_caption`.
    """
    masked = _mask_quotes(sentence)
    about_image_text = bool(_ANCHOR_ANY.search(masked))
    if _reference_leak(masked, about_image_text):
        return REASON_PART_REFERENCE
    if any(p.search(masked) for p in _META_PATTERNS) or _self_reference(masked):
        return REASON_META
    if not about_image_text and _ABSENCE.search(masked):
        return REASON_META
    if not about_image_text and (
        _ECHO_PHRASES.search(masked) or (_KEEP_VERB.search(masked) and _KEEP_OBJECT.search(masked))
    ):
        return REASON_ECHO
    if prompt and _overlaps_prompt(masked, prompt):
        return REASON_OVERLAP
    return None


def clean_caption(text: str, prompt: str | None = None) -> Cleaned:
    """Remove the sentences of ``text`` that leak the prompt; see the module docstring.

    ``prompt`` is the prompt template (``{slot}`` placeholders allowed) or its
    instruction text, never the rendered prompt. Kept sentences are unchanged and
    joined by single spaces; when nothing is removed ``text`` comes back as is.
    """
    kept: list[str] = []
    removed: list[str] = []
    reasons: list[str] = []
    for sentence in split_sentences(text):
        body = sentence
        prefix = _META_PREFIX.match(sentence)
        if prefix and sentence[prefix.end() :].strip():
            removed.append(sentence[: prefix.end()].strip())
            reasons.append(REASON_META_PREFIX)
            body = sentence[prefix.end() :].strip()
        reason = classify_sentence(body, prompt)
        if reason is None:
            kept.append(body)
        else:
            removed.append(body)
            reasons.append(reason)
    return _assemble(kept, removed, reasons, text)
