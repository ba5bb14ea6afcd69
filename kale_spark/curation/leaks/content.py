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

from kale_spark.curation.leaks.vocab import alternation

__all__ = [
    "CARRIERS",
    "SURFACES",
    "TEXT_VERBS",
    "WEAK_TEXT_VERBS",
    "words",
    "mask_quotes",
    "DISPLAY_WORDS",
    "INTRODUCERS",
    "carrier_displays",
    "displays_text",
    "introduced",
    "shows_carrier",
    "shows_text",
    "tied_to_carrier",
]

_I = re.IGNORECASE


def _nouns(text: str) -> frozenset[str]:
    """Each noun and its plural ("box" -> box, boxes; "story" -> story, stories)."""
    out = set()
    for noun in text.split():
        out.add(noun)
        if noun.endswith("y") and noun[-2] not in "aeiou":
            out.add(noun[:-1] + "ies")
        elif noun.endswith(("s", "x", "ch", "sh", "z")):
            out.add(noun + "es")
        else:
            out.add(noun + "s")
    return frozenset(out)


# Things whose point is to bear text: a sentence that names one is about text the
# image shows. A class of object, never one example's noun.
CARRIERS = _nouns(
    """sign signage signpost poster plaque placard banner billboard whiteboard blackboard
    chalkboard noticeboard corkboard page book textbook notebook workbook worksheet handout
    cover screen monitor display slide projector label sticker postcard lettering envelope
    menu poem lyric speech essay article paragraph passage chapter novel script manuscript
    scroll headline newspaper magazine flyer leaflet brochure pamphlet certificate diploma
    infographic chart diagram presentation lecture lesson classroom exam quiz inscription
    engraving comic cartoon meme subtitle tweet website webpage catalogue catalog receipt
    marquee teleprompter prompter slogan motto quote quotation verse teacher student
    instructor shirt sheet dictionary touchscreen kiosk stamp scoreboard yearbook booklet
    guidebook scrapbook calendar timetable invitation"""
) | {"quizzes", "dictionaries"}
# Nouns that name shown text without naming a thing that bears it.
_TEXT_NOUNS = frozenset({"lettering", "inscription", "inscriptions"})
# Where text can sit, when it is named right beside a text ("the instructions on the
# lid" is covered by the preposition; these name the thing).
SURFACES = (
    CARRIERS
    | _nouns(
        """board card tag note letter map form ticket title mural wall window door storefront
    box package packaging bottle jar wrapper mug tote jersey memorial monument panel stone
    television tv laptop computer phone smartphone tablet app album post story song paper"""
    )
    | {"words"}
)
# Verbs that say text is shown: the strong ones mark a whole sentence as about image
# text, the others only a text right before them ("the first sentence is underlined").
_STRONG_VERBS = (
    r"reads?(?!\s+(?:like|as|more|less|better|well|\w+ly)\b)|reading(?!\s+(?:like|as)\b)|"
    r"titled|entitled|labell?ed|"
    # "well written" judges writing; it does not say that text is shown.
    r"(?<!well\s)(?<!well-)(?<!poorly\s)(?<!badly\s)"
    r"written(?!\s+(?:without|to|for|with|so|as|in\s+(?:a|an|one)\b))|printed|engraved|"
    r"inscribed|handwritten|typed|spelled|spells|stamped|embroidered|etched|scrawled|lettered|"
    r"signed"
)
TEXT_VERBS = frozenset(
    """read reads reading titled entitled labeled labelled written printed engraved inscribed
    handwritten typed spelled spells stamped embroidered etched scrawled lettered
    signed annotated emblazoned""".split()
)
WEAK_TEXT_VERBS = (
    rf"{_STRONG_VERBS}|painted|carved|projected|underlined|circled|highlighted|erased|"
    r"displayed|crossed\s+out|shown"
)
_SURFACES = alternation(SURFACES)
_TOKENS = re.compile(r"[a-z0-9]+")
_STRONG_VERB = re.compile(rf"\b(?:{_STRONG_VERBS})\b", _I)


def words(masked: str) -> frozenset[str]:
    """The lowercase letter/digit runs of a sentence ("T-shirt's" -> t, shirt, s)."""
    return frozenset(_TOKENS.findall(masked.lower()))


_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”|(?<![\w'’])['‘][^'’]*['’](?![\w'’])")
_DET = r"(?:the|a|an|this|that|these|those|its|his|her|their|each|every|both|one|my|our)"
_PREP = (
    r"(?:on|in|inside|beneath|under|underneath|below|above|at|of|next\s+to|beside|across|"
    r"along|near|atop|over|from|within|to|onto|into)"
)
# Right after the span: a surface ("Sentence 1 on the worksheet") or a place on
# something ("the instructions on the lid", "the caption under the cartoon") ...
_TIED_PLACE = re.compile(
    rf"^(?:'s|’s)?\s*(?:(?:{_PREP}\s+)+(?:{_DET}\s+)?(?:[\w'’-]+\s+){{0,3}}?(?:{_SURFACES})\b"
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
_TIED_BEFORE = re.compile(rf"\b(?:{_SURFACES})(?:'s|’s|s'|’)?\s+(?:{_DET}\s+)?$", _I)


def mask_quotes(sentence: str) -> str:
    """Replace quoted text with ``___``, keeping the quote marks. A sentence that is one
    quotation from end to end is the writer quoting itself, not a sign: it stays."""
    core = sentence.strip().rstrip(".!?")
    if _QUOTED.fullmatch(core):
        return sentence
    return _QUOTED.sub(lambda m: m.group(0)[0] + "___" + m.group(0)[-1], sentence)


def _verbs(text: str) -> frozenset[str]:
    out = set()
    for v in text.split():
        stem = v[:-1] if v.endswith("e") else v
        out |= {v, v + "s", stem + "ing", v + "d" if v.endswith("e") else v + "ed"}
    return frozenset(out)


# Verbs by which a thing bearing text shows or says it ("a slide asks students to ...").
DISPLAY_WORDS = (
    TEXT_VERBS
    | _verbs(
        """show display list ask say tell compare explain teach feature present contain
        include illustrate highlight bear carry describe define warn announce advertise
        promise urge offer quote print depict spell label introduce instruct invite remind
        welcome project"""
    )
    | {"shown", "said", "told", "taught", "bore", "says", "saying"}
)
# Words after which a pronoun or an aside is quoted text ("a mug that says I need
# coffee", "signed with the words I love you", "a sign reading Let me know").
INTRODUCERS = (
    DISPLAY_WORDS
    | CARRIERS
    | _TEXT_NOUNS
    | frozenset("""words slogan slogans motto title titled message messages signed reads""".split())
)


def carrier_displays(tokens: frozenset[str]) -> bool:
    """A carrier and a verb by which it shows text are both named: the sentence is about
    what that text says ("A slide asks students to find the verb in Sentence 1")."""
    if not _TEXT_NOUNS.isdisjoint(tokens):
        return True
    return not CARRIERS.isdisjoint(tokens) and not DISPLAY_WORDS.isdisjoint(tokens)


def displays_text(masked: str, tokens: frozenset[str]) -> bool:
    """:func:`carrier_displays`, or a verb only shown text takes ("printed on its side")."""
    if carrier_displays(tokens):
        return True
    return not TEXT_VERBS.isdisjoint(tokens) and _STRONG_VERB.search(masked) is not None


def introduced(masked: str, pos: int) -> bool:
    """Text at ``pos`` follows a carrier or a verb that introduces shown text."""
    return not INTRODUCERS.isdisjoint(words(masked[:pos]))


def shows_carrier(tokens: frozenset[str]) -> bool:
    """The sentence (its :func:`words`) names a carrier."""
    return not CARRIERS.isdisjoint(tokens)


def shows_text(masked: str, tokens: frozenset[str]) -> bool:
    """The sentence is about text in the image: it names a carrier or a text verb."""
    if shows_carrier(tokens) or not _TEXT_NOUNS.isdisjoint(tokens):
        return True
    return not TEXT_VERBS.isdisjoint(tokens) and _STRONG_VERB.search(masked) is not None


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
