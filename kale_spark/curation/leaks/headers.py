"""Kind ``header``: a label in front of, or instead of, the caption - "Merged:",
"New Sentence:", "Sentence 3:", "**Refined caption:**", "Here is the merged caption:",
"Assistant:", also with a dash or an arrow for the colon ("Final caption -- ...",
"Merged >> ..."). Only the label is removed; the caption after it is kept if it
passes the other rules. A label whose words name a carrier ("The sign's text:") is content.
"""

from __future__ import annotations

import re

from kale_spark.curation.leaks.base import Rule, Sentence
from kale_spark.curation.leaks.content import (
    CARRIERS,
    DISPLAY_WORDS,
    SURFACES,
    TEXT_VERBS,
    words,
)
from kale_spark.curation.leaks.vocab import alternation

__all__ = ["ChatMarkup", "Header"]

_I = re.IGNORECASE
_HEAD = (
    r"caption|description|sentence|text|version|output|result|answer|response|rewrite|"
    r"summary|revision|fusion|merge|draft|paraphrase|assistant|ai|note|explanation|"
    r"rationale|reasoning|alt[\s-]?text|input|prompt|instruction|step|analysis|observation|"
    r"comment|correction|translation|title|justification|thoughts|word\s+count|original|"
    r"knowledge|context|keywords|tags|facts|details|user|human|system|bot|gpt|model|option|"
    r"alternative|variant|candidate|choice|nb|n\.b|p\.s|ps|change|edit|changelog|disclaimer"
)
_PARTICIPLE = (
    r"merged|combined|refined|rewritten|fused|revised|final|improved|updated|corrected|"
    r"rephrased|edited|enhanced|augmented|polished|integrated"
)
_LABEL = re.compile(
    r"^[\W_]*(?:(?:sure|certainly|of\s+course|okay|ok|absolutely)[,!.]?\s+)?"
    r"(?:here\s+(?:you\s+go|it\s+is|we\s+go)"
    rf"|here(?:['’]s|\s+is|\s+are)\s+(?:[\w'’-]+\s+){{0,5}}?(?:{_HEAD})s?(?:\s+[\w'’-]+){{0,6}}?"
    rf"|(?:[\w'’-]+,?\s+){{0,5}}?(?:{_HEAD})s?(?:\s*#?\s*\d+)?(?:\s*\([^()]{{0,30}}\))?"
    r"(?:\s*#?\s*\d+)?(?:,?\s+[\w'’-]+){0,3}?"
    # A label offering another wording: "Alternatively:", "Shorter:", "TL;DR:".
    r"|alternatively|shorter|longer|simpler|in\s+short|tl;?\s*dr|bottom\s+line|"
    r"another\s+way\s+to\s+put\s+it|put\s+another\s+way|more\s+simply"
    rf"|(?:{_PARTICIPLE})(?:\s+(?:line|lines|wording|phrasing))?)"
    # The separator: a colon, a spaced dash ("-", "--", em dash), "=" or "|", or an arrow.
    r"(?:\s*\**\s*:|\s+(?:--|[—–=|-])\s|\s*(?:->|=>|→|>>|»|↓|⬇)\s*)\s*\**\s*"
    # A label on its own: "### Caption", "[Merged caption]", "New sentence."
    rf"|^\W*(?:(?:new|merged|final|refined|combined|fused|rewritten|revised|improved|"
    rf"knowledge-augmented)\s+)+(?:{_HEAD})s?\W*$"
    rf"|^\s*(?:#{{1,6}}\s*|\[)(?:[\w'’-]+\s+){{0,3}}?(?:{_HEAD}|{_PARTICIPLE})s?\s*\]?\s*$"
    # A markdown heading or a bracketed label naming a text, the caption run on after it.
    rf"|^\s*#{{1,6}}\s*(?:[\w'’-]+\s+){{0,3}}?(?:{_HEAD}|{_PARTICIPLE})s?\s+(?=(?-i:[A-Z]))"
    rf"|^\s*\[(?:[\w'’-]+\s+){{0,3}}?(?:{_HEAD}|{_PARTICIPLE})s?\s*\]\s*"
    # A bold label in front of the caption, colon or not: "**Final Caption** A ...".
    rf"|^\s*(?:\*\*|__)\s*(?:[\w'’-]+\s+){{0,3}}?(?:{_HEAD}|{_PARTICIPLE})s?\s*:?\s*(?:\*\*|__)\s*",
    _I,
)


# A label that says text is shown introduces that text: it is content.
_SAYS = TEXT_VERBS | {"says", "said", "say", "shows", "show", "displays", "asks"}
# A field of the answer's metadata, as the whole sentence: its name and a short value.
_FIELD = re.compile(
    r"^\W*(?:confidence|tone|style|register|character\s+count|word\s+count|length|language|"
    r"format|category|image\s+credit|credits?|sources?|keywords|tags|notes?)\s*:\s*[^.:]{0,40}"
    r"[.!]?\s*$",
    _I,
)
# The sentence is a shown text, attributed at its end: "..., says the poster."
_SHOWN_TAIL = re.compile(
    rf",\s+(?:{alternation(DISPLAY_WORDS)})\s+(?:the|a|an)\s+(?:[\w'’-]+\s+){{0,2}}?"
    rf"(?:{alternation(CARRIERS)})\W*$",
    _I,
)
# Only a fused text is "merged" or "rewritten"; a scoreboard's "final result" is shown text.
_OWN_OUTPUT = re.compile(
    r"\b(?:merged|combined|refined|rewritten|fused|revised|rephrased|edited|augmented|"
    rf"knowledge-augmented|integrated)\s+(?:{_HEAD})",
    _I,
)


class Header(Rule):
    """A leading label; :meth:`label_end` says where it ends."""

    name = "header"
    kind = "header"

    def label_end(self, s: Sentence) -> int | None:
        """The end of a leading label in ``s.text``, or None."""
        m = _LABEL.match(s.text)  # on the text itself: the end is an index into it
        if m is None or '"' in m.group(0):
            return None
        label = words(m.group(0))
        # "The merged caption reads:" names the model's own output, not a shown text.
        own = _OWN_OUTPUT.search(m.group(0)) is not None
        if not CARRIERS.isdisjoint(label) or (not own and not _SAYS.isdisjoint(label)):
            return None  # "The sign's text: ...", "A caption beneath reads: ..."
        if not SURFACES.isdisjoint(label) and not DISPLAY_WORDS.isdisjoint(label):
            return None  # "A recipe card lists the steps: ..."
        if _SHOWN_TAIL.search(s.masked):
            return None  # "Step 2: fold the paper, says the origami poster."
        return m.end()

    def matches(self, s: Sentence) -> bool:
        """The whole sentence is a label ("Merged caption:") or a field of the answer's
        metadata ("Tone: neutral.", "Word count: 32")."""
        if _FIELD.match(s.masked):
            return True
        end = self.label_end(s)
        return end is not None and not s.text[end:].strip()


# A chat template's own tokens: Mistral's [INST] and </s>, ChatML's <|im_end|>, LLaVA's
# <image>, Llama's <<SYS>>, a reasoning model's <think>, a "### Response:" heading.
_MARKUP = re.compile(
    r"</?s>|\[/?INST\]|<</?SYS>>|<\|[^|<>\s]{1,30}\|>(?:\s*(?:system|user|assistant)\b)?|"
    r"</?(?:image|img|think|bos|eos|pad|unk|start_of_turn|end_of_turn|assistant|user|system)>|"
    r"#{2,}\s*(?:instruction|response|input|output|human|assistant|user|system)\s*:?",
    _I,
)


class ChatMarkup(Rule):
    """Chat-template tokens left in the text. :meth:`strip` takes them out of a caption
    before it is split into sentences, so the words around them are checked as usual."""

    name = "chat_markup"
    kind = "header"

    def strip(self, text: str) -> tuple[str, list[str]]:
        """``text`` without its markup tokens, and the tokens removed."""
        if "<" not in text and "[" not in text and "#" not in text:
            return text, []
        found = [m.group(0) for m in _MARKUP.finditer(text)]
        if not found:
            return text, []
        return re.sub(r"[ \t]{2,}", " ", _MARKUP.sub(" ", text)).strip(), found

    def matches(self, s: Sentence) -> bool:
        return _MARKUP.search(s.text) is not None
