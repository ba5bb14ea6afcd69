"""The precision guard: text the image shows is content, not a leak.

A caption may quote a sign ("Sentence 1"), describe a poster about grammar or a
screen showing an alt-text field. This module holds what every rule uses to tell
those apart from the fusion model talking about its own prompt:

- quoted text (straight or curly double quotes, paired single quotes) is masked
  before any rule looks at a sentence;
- *carriers*: things in a picture that bear text (signs, posters, covers, screens,
  pages, labels, cards, walls, shirts, ...) and writing lessons (a teacher, a
  worksheet, grammar), whose talk of "sentences" is about what they show;
- *text verbs*: verbs that say text is shown (reads, titled, printed, engraved, ...).
"""

from __future__ import annotations

import re

__all__ = [
    "CARRIERS",
    "SURFACES",
    "TEXT_VERBS",
    "WEAK_TEXT_VERBS",
    "mask_quotes",
    "shows_carrier",
    "shows_text",
    "tied_to_carrier",
]

_I = re.IGNORECASE

# Things whose point is to bear text: a sentence that names one is about text the
# image shows. A class of object, never one example's noun.
CARRIERS = (
    r"signs?|signage|signposts?|posters?|plaques?|placards?|banners?|billboards?|"
    r"whiteboards?|blackboards?|chalkboards?|noticeboards?|corkboards?|pages?|books?|"
    r"textbooks?|notebooks?|workbooks?|worksheets?|handouts?|covers?|screens?|monitors?|"
    r"displays?|slides?|projectors?|labels?|stickers?|postcards?|lettering|envelopes?|"
    r"menus?|poems?|lyrics|speech(?:es)?|essays?|articles?|paragraphs?|passages?|chapters?|"
    r"novels?|scripts?|manuscripts?|scrolls?|headlines?|newspapers?|magazines?|flyers?|"
    r"leaflets?|brochures?|pamphlets?|certificates?|diplomas?|infographics?|charts?|diagrams?|"
    r"presentations?|"
    r"lectures?|lessons?|classrooms?|exams?|quiz(?:zes)?|inscriptions?|engravings?|"
    r"comics?|cartoons?|memes?|subtitles?|tweets?|websites?|webpages?|catalogu?es?|"
    r"receipts?|marquees?|teleprompters?|prompters?|words|slogans?|mottos?|quotes?|quotations?|verses?|teachers?|"
    r"students?|instructors?|t-shirts?"
)
# Where text can sit, when it is named right beside a text ("the instructions on the
# lid" is covered by the preposition; these name the thing).
SURFACES = (
    rf"{CARRIERS}|boards?|cards?|tags?|notes?|letters?|maps?|forms?|"
    r"tickets?|titles?|murals?|walls?|windows?|doors?|storefronts?|box(?:es)?|packages?|"
    r"packaging|bottles?|jars?|wrappers?|mugs?|totes?|shirts?|jerseys?|memorials?|"
    r"monuments?|panels?|stones?|televisions?|tvs?|laptops?|computers?|phones?|"
    r"smartphones?|tablets?|apps?|albums?|posts?|stor(?:y|ies)|songs?"
)
# Verbs that say text is shown; the strong ones mark a whole sentence as about image
# text, the others only a text right before them ("the first sentence is underlined").
TEXT_VERBS = (
    r"reads?(?!\s+(?:like|as|more|less|better|well|\w+ly)\b)|reading(?!\s+(?:like|as)\b)|titled|entitled|labell?ed|"
    r"written(?!\s+(?:without|to|for|with|so|as|in\s+(?:a|an|one)\b))|printed|engraved|inscribed|handwritten|typed|spelled|spells|stamped|"
    r"embroidered|etched|scrawled|lettered"
)
WEAK_TEXT_VERBS = (
    rf"{TEXT_VERBS}|painted|carved|projected|underlined|circled|highlighted|erased|"
    r"displayed|signed|crossed\s+out|shown"
)

_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|(?<![\w'’])['‘][^'’]*['’](?![\w'’])")
_CARRIER_ANY = re.compile(rf"\b(?:{CARRIERS})\b", _I)
_TEXT_ANY = re.compile(rf"\b(?:{CARRIERS}|{TEXT_VERBS})\b", _I)
_DET = r"(?:the|a|an|this|that|these|those|its|his|her|their|each|every|both|one|my|our)"
_PREP = (
    r"(?:on|in|inside|beneath|under|underneath|below|above|at|of|next\s+to|beside|across|"
    r"along|near|atop|over|from|within|to|onto|into)"
)
# Right after the span: a surface ("Sentence 1 on the worksheet") or a place on
# something ("the instructions on the lid", "the caption under the cartoon") ...
_TIED_PLACE = re.compile(
    rf"^(?:'s|’s)?\s*(?:(?:{_PREP}\s+)+(?:{_DET}\s+)?(?:[\w'’-]+\s+){{0,3}}?(?:{SURFACES})\b"
    r"|(?:on|beneath|under|underneath|below|above|next\s+to|beside|across|along|inside|atop|"
    r"onto|at\s+the\s+(?:top|bottom|foot|head)\s+of)\s+(?!the\s+other\s+hand\b)"
    rf"(?:{_DET})\b)",
    _I,
)
# ... or a text verb ("the first sentence is underlined").
_TIED_VERB = re.compile(
    r"^\s*(?:(?:is|are|was|were|has\s+been|have\s+been|is\s+being|are\s+being)\s+)?"
    rf"(?:(?:\w+ly|also|then|all)\s+)?(?:{WEAK_TEXT_VERBS})\b",
    _I,
)
# Printed next to a picture: "the caption beneath the photo".
_TIED_PICTURE = re.compile(
    r"^\s+(?:beneath|under|underneath|below|above|next\s+to|beside|on|of)\s+(?:the|a|an|this|"
    r"that|each|every)\s+(?:[\w'’-]+\s+){0,2}?(?:photos?|photographs?|pictures?|drawings?|"
    r"paintings?|images?|portraits?|illustrations?|frames?|polaroids?|snapshots?)\b",
    _I,
)
# A carrier right before the span: "the poster's caption", "the sign text".
_TIED_BEFORE = re.compile(rf"\b(?:{SURFACES})(?:'s|’s|s'|’)?\s+(?:{_DET}\s+)?$", _I)


def mask_quotes(sentence: str) -> str:
    """Replace quoted text with ``___``, keeping the quote marks and the length of nothing else."""
    return _QUOTED.sub(lambda m: m.group(0)[0] + "___" + m.group(0)[-1], sentence)


def shows_text(masked: str) -> bool:
    """The sentence is about text in the image: it names a carrier or a text verb."""
    return _TEXT_ANY.search(masked) is not None


def shows_carrier(masked: str) -> bool:
    """The sentence names a carrier (a text verb alone does not count)."""
    return _CARRIER_ANY.search(masked) is not None


def tied_to_carrier(masked: str, start: int, end: int, verbs: bool = True) -> bool:
    """The span ``start:end`` names text that a carrier right beside it shows (with
    ``verbs``, a text verb right after it counts too)."""
    after = masked[end:]
    return bool(
        _TIED_PLACE.match(after)
        or (verbs and _TIED_VERB.match(after))
        or _TIED_PICTURE.match(after)
        or _TIED_BEFORE.search(masked[:start])
    )
