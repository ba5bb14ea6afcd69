"""Oblique names for an input (kind ``meta_discourse``, used by :mod:`.references`).

A fusion model does not always say "the alt-text" or "Sentence 2". It names an input
by where it came from ("the web snippet", "the supplied info", "the store's own text",
"the scraped string"), by what it carries ("the visual input", "the factual one",
"the descriptive line", "the textual hint"), by an abbreviation or an item number
("S1", "item two") or as what it was handed ("what was handed over"). Each name is a
closed class of modifiers joined to a closed class of head nouns, never one
sentence's words.

Strengths (see :mod:`.references`): a *provenance* name belongs to a prompt only and
leaks even beside shown text ("the scraped label reads ..."); a publisher's text ("the
store's own text", "the product blurb") is ``named``; a name by what an input carries
is ``ordinal`` (a leak unless the sentence is about text the image shows); an
abbreviation is ``abbrev``, a leak only when cited as a source ("comes from S1").
"""

from __future__ import annotations

import re

__all__ = ["INPUT_NAME_PATTERNS", "INPUT_NAME_WORDS"]

_I = re.IGNORECASE

# Where an input came from: words no object in a picture is said to be.
_PROVENANCE = (
    r"web|scraped|crawled|supplied|provided|given|handed[\s-]over|tagged|"
    r"user[\s-](?:supplied|provided|given)"
)
# What names an input once its provenance is said.
_HEADS = (
    r"snippets?|blurbs?|strings?|hints?|info|information|inputs?|texts?|captions?|"
    r"descriptions?|sentences?|lines?|wording|labels?|notes?|copy|data|titles?|tags|"
    r"accounts?|sources?|listings?|entry|entries|content"
)
# Who published the page an input was taken from: "the store's own text".
_PUBLISHER = r"store|seller|shop|retailer|vendor|uploader|listing|product|site|website|page"
_PUBLISHED = r"blurbs?|texts?|copy|descriptions?|snippets?|captions?|wording"
# What an input carries, said of it: "the visual input", "the textual one".
_CARRIES = (
    r"textual|visual|descriptive|factual|text-only|image-based|vision-based|synthetic|"
    r"generated|machine-written|"
    r"knowledge[\s-](?:bearing|rich|heavy|laden|based|side)"
)
_CARRIER_HEADS = (
    r"inputs?|sources?|snippets?|hints?|accounts?|lines?|texts?|captions?|descriptions?|"
    r"sentences?|versions?|notes?|cues?|clues?|one|ones|half|side"
)
# Inputs of an appliance are ports, not texts: "the HDMI input".
_PORTS = r"audio|video|hdmi|usb|power|microphone|mic|aux|analog|analogue|digital|line|sensor"

INPUT_NAME_PATTERNS: tuple[tuple[str, frozenset[str], re.Pattern[str]], ...] = (
    # Scraped or crawled text is never in a picture: an input even beside shown text.
    (
        "provenance",
        frozenset("scraped crawled".split()),
        re.compile(rf"\b(?:scraped|crawled)[\s-]+(?:{_HEADS})\b", _I),
    ),
    # Web, given or supplied text may also be a lesson's or a screen's ("the whiteboard
    # lists the given information"): named, content when a carrier shows it.
    (
        "named",
        frozenset("web scraped crawled supplied provided given handed user tagged".split()),
        re.compile(rf"\b(?:{_PROVENANCE})[\s-]+(?:{_HEADS})\b", _I),
    ),
    # A publisher's text may also be on a box or a screen in the picture: named, so a
    # carrier that shows it makes it content.
    (
        "named",
        frozenset(
            "store seller shop retailer vendor uploader listing product site website page".split()
        ),
        re.compile(
            rf"\b(?:{_PUBLISHER})['’]s\s+(?:own\s+)?(?:{_PUBLISHED})\b"
            rf"|\bproduct\s+(?:blurbs?|copy|texts?|descriptions?|snippets?)\b",
            _I,
        ),
    ),
    # Each regex below runs only on a sentence holding one of its words.
    (
        "ordinal",
        frozenset(
            # "text-only", "image-based": one of their words suffices.
            "textual visual descriptive factual only based knowledge synthetic generated "
            "machine".split()
        ),
        re.compile(
            rf"\b(?:the|that|this|each|either|neither|a|an|one)\s+(?:(?:more|less|purely|other|"
            rf"first|second)\s+)?(?:{_CARRIES})\s+(?:{_CARRIER_HEADS})\b",
            _I,
        ),
    ),
    (
        "ordinal",
        frozenset("half side".split()),
        # Each input as one half of the pair: "the web half", "the text side".
        re.compile(
            r"\bthe\s+(?:web|text|image|caption|alt|alt-text|knowledge|dense|keyword)\s+"
            r"(?:half|side)\b",
            _I,
        ),
    ),
    (
        "ordinal",
        frozenset("original input inputs".split()),
        re.compile(
            r"\b(?:the|that)\s+original\s+(?:line|snippet|string|blurb|input)s?\b"
            rf"|\b(?:the|that|this|each|either|neither|every|one|an?)\s+"
            rf"(?:(?!(?:{_PORTS})\b)[\w-]+\s+){{0,2}}?inputs?\b(?!\s*(?:and|or|/|&)\s*outputs?\b)",
            _I,
        ),
    ),
    (
        "ordinal",
        frozenset("item items what".split()),
        re.compile(
            r"\bitems?\s+(?:one|two|[12])\b"
            # What the page's publisher wrote: "going by what the seller wrote".
            rf"|\bwhat\s+the\s+(?:{_PUBLISHER}|uploader|poster)\s+(?:wrote|writes|says|said|claims|"
            r"claimed|states|stated|listed|lists|calls|called)\b"
            r"|\bwhat\s+(?:was|were|is|has\s+been|had\s+been)\s+(?:handed\s+over|supplied|"
            r"provided|given|passed\s+along)(?!\s+(?:to|by|as|out|away|up|for|in)\b)",
            _I,
        ),
    ),
    # The page's publisher as the speaker of an input (hearsay): "according to the
    # uploader", "the seller writes that".
    (
        "named",
        frozenset("uploader seller vendor retailer listing per".split()),
        re.compile(
            r"\b(?:according\s+to|per)\s+(?:the|its)\s+(?:uploader|seller|vendor|retailer|listing)\b"
            r"|\b(?:the|its)\s+(?:uploader|seller|vendor|retailer|listing)\s+(?:writes|wrote|says|said|"
            r"claims|claimed|states|stated|describes|described|calls|called|notes|noted|adds|added|"
            r"mentions|mentioned|lists|listed|insists|reports|reported|swears)\b",
            _I,
        ),
    ),
    # "S1", "S2": short for Sentence 1 and 2, a source only when cited as one.
    ("abbrev", frozenset("s1 s2 s3 s4".split()), re.compile(r"(?-i:\bS[1-4]\b)")),
)
INPUT_NAME_WORDS = frozenset(w for _, words, _ in INPUT_NAME_PATTERNS for w in words)
