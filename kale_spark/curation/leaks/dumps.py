"""Kind ``input_dump``: an input copied as it came instead of a sentence about the
image - the keyword-style alt-text ("vintage leica m3 camera 50mm summicron lens walnut
desk"), a file name ("IMG_2041.jpg"), hashtags, or web-shop boilerplate ("free shipping",
"royalty free stock photo").

A keyword list has no function words: English sentences of six words or more always
have some (a, the, on, is, with ...). Shorter ones count only when they also look like
a list (lower-case start, no full stop, commas or bars between the words).
"""

from __future__ import annotations

import re

from kale_spark.curation.leaks.base import Rule, Sentence
from kale_spark.quality import STOPWORDS

__all__ = ["InputDump"]

_I = re.IGNORECASE
_JUNK = re.compile(
    r"\b(?:IMG|DSC|DSCN|PXL|VID)[_-]?\d{3,}\b|\b[\w-]+\.(?:jpe?g|png|gif|webp|tiff?|bmp|heic)\b"
    r"|(?:^|\s)#[A-Za-z]\w+|\bstock\s+(?:photos?|images?|pictures?|footage)\b|\broyalty[\s-]free\b"
    r"|\bfree\s+shipping\b|\bbuy\s+now\b|\bhd\s+wallpapers?\b|\bvector\s+illustration\b",
    _I,
)
_JUNK_WORDS = frozenset(
    """stock royalty shipping buy wallpaper wallpapers vector jpg jpeg png gif webp tif tiff
    bmp heic img dsc dscn pxl vid""".split()
)
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")


def _keyword_list(text: str) -> bool:
    tokens = _TOKEN.findall(text)
    if len(tokens) < 4 or any(t.lower() in STOPWORDS for t in tokens):
        return False
    if len(tokens) >= 6:
        return True
    listy = text[:1].islower() or not text.rstrip().endswith((".", "!", "?"))
    return listy or text.count(",") >= 2 or "|" in text


class InputDump(Rule):
    """An input pasted in as it came: a keyword list, a file name, hashtags."""

    name = "input_dump"
    kind = "input_dump"

    def matches(self, s: Sentence) -> bool:
        junk = "#" in s.masked or "_" in s.masked or not _JUNK_WORDS.isdisjoint(s.words)
        if junk and _JUNK.search(s.masked) and not s.shows_text:
            return True
        return STOPWORDS.isdisjoint(s.words) and _keyword_list(s.masked)
