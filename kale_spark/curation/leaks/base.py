"""What every leak rule shares: the kinds of leak, the sentence a rule looks at, and
the rule step itself (datatrove-style: one small class, one method, a name)."""

from __future__ import annotations

from typing import ClassVar

from kale_spark.curation.leaks import content

__all__ = ["KINDS", "Rule", "Sentence"]

# The kinds of leak, each stated once; every rule says which kind it catches.
KINDS: dict[str, str] = {
    "meta_discourse": (
        "talks about the texts the model was given or writes (Sentence 1, the alt-text, the "
        "dense caption, the prompt, this caption) instead of about the image"
    ),
    "narration": (
        "first-person or assistant narration: the writer talking about itself or to a user"
    ),
    "header": "a label in front of or instead of the caption (Merged:, New Sentence:)",
    "instruction_echo": "repeats, paraphrases or restates the instruction the model was given",
    "input_critique": "judges the quality of the inputs (grammar, keywords, accuracy)",
    "agreement_hedge": "hedges about whether the inputs agree, or about what they leave out",
}


class Sentence:
    """One sentence as the rules see it: the text, the text with quotes masked, the
    instruction sent for its row (or None), and lazily, whether it shows image text."""

    __slots__ = (
        "_displays",
        "_shows_text",
        "masked",
        "prompt",
        "shows_carrier",
        "text",
        "words",
    )

    def __init__(self, text: str, prompt: str | None = None) -> None:
        self.text = text
        self.masked = content.mask_quotes(text)
        self.prompt = prompt
        self.words = content.words(self.masked)
        # It names a thing in the image that bears text (a sign, a screen, a cover).
        self.shows_carrier = content.shows_carrier(self.words)
        self._shows_text: bool | None = None
        self._displays: bool | None = None

    @property
    def displays_text(self) -> bool:
        """It names a carrier and a verb by which it shows text (see content.displays_text)."""
        if self._displays is None:
            self._displays = content.displays_text(self.masked, self.words)
        return self._displays

    def introduced(self, pos: int) -> bool:
        """Text at ``pos`` follows a carrier or a verb that introduces shown text."""
        return content.introduced(self.masked, pos)

    @property
    def shows_text(self) -> bool:
        """It is about text in the image (a carrier or a text verb, quotes aside)."""
        if self._shows_text is None:
            self._shows_text = content.shows_text(self.masked, self.words)
        return self._shows_text

    def tied(self, start: int, end: int, verbs: bool = True) -> bool:
        """The span is text a carrier right beside it shows (see content.tied_to_carrier)."""
        return content.tied_to_carrier(self.masked, start, end, verbs)


class Rule:
    """A leak rule: ``matches(sentence)`` says whether the sentence leaks in this
    rule's way. ``name`` is the reason written to ``filtered_captions`` and the
    ``rule.<name>`` count of the filter's run; ``kind`` is a key of :data:`KINDS`."""

    name: ClassVar[str]
    kind: ClassVar[str]
    # Words one of which the rule needs to match at all (empty: no such gate). A cheap
    # set test that spares the regexes; tests check it never changes a decision.
    triggers: ClassVar[frozenset[str]] = frozenset()

    def applies(self, sentence: Sentence) -> bool:
        """False when the sentence lacks every trigger word (so ``matches`` is False)."""
        return not self.triggers or not self.triggers.isdisjoint(sentence.words)

    def matches(self, sentence: Sentence) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r})"
