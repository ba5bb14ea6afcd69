"""Kind ``instruction_echo``: the sentence repeats, paraphrases or restates the
instruction the model was given.

- :class:`InstructionOverlap` compares with the instruction actually sent for the
  row (its prompt template and system turn): a shared five-word sequence holding at
  least three content words, or two shared content-word pairs (stopwords skipped,
  crude stems), is an echo. ``{slot}`` placeholders are dropped and n-grams never span
  them, so a caption repeating its alt-text does not "overlap".
- :class:`InstructionVocabulary` knows the vocabulary of caption-fusion instructions in
  general (CapsFusion's and this project's): sentence structure, real-world knowledge,
  well-structured, in-depth details, concatenating, false information, names, places,
  brands and dates, keeping the knowledge and the visual details.
- :class:`Directive` catches the instruction restated as an order: an imperative
  ("Mention the year.", "Avoid concatenating ..."), an obligation on the caption
  ("The caption should highlight the brand.").
- :class:`Emphasis` catches what the text should put first or weigh most ("Priority
  should be given to the name", "Lead with the brand").

All three leave alone a sentence about text in the image (a poster about sentence
structure, a sign telling visitors to keep off the grass).
"""

from __future__ import annotations

import re
from functools import lru_cache

from kale_spark.curation.leaks.base import Rule, Sentence
from kale_spark.curation.quality import STOPWORDS, WORD_RUN

__all__ = ["Directive", "Emphasis", "InstructionOverlap", "InstructionVocabulary", "TemplateSlot"]

_I = re.IGNORECASE
_SLOT = re.compile(r"\{[^{}]*\}")
# Content bigrams too common in honest captions to count as an echo on their own.
_COMMON_BIGRAMS = frozenset({("real", "world")})


def _stem(token: str) -> str:
    for suffix in ("ing", "ed", "es", "ly", "s"):
        if token.endswith(suffix) and len(token) - len(suffix) >= 4:
            return token[: -len(suffix)]
    return token


def _content_stems(text: str) -> list[str]:
    tokens = (t.lower() for t in WORD_RUN.findall(text))
    return [_stem(t) for t in tokens if t not in STOPWORDS and not t.isdigit()]


@lru_cache(maxsize=64)
def _prompt_grams(prompt: str, n: int = 5) -> tuple[frozenset, frozenset, frozenset]:
    """The instruction's five-grams (three content words or more), content bigrams and
    content stems."""
    grams: set[tuple[str, ...]] = set()
    pairs: set[tuple[str, str]] = set()
    for part in _SLOT.split(prompt):
        tokens = [t.lower() for t in WORD_RUN.findall(part)]
        for i in range(len(tokens) - n + 1):
            gram = tuple(tokens[i : i + n])
            if sum(t not in STOPWORDS for t in gram) >= 3:
                grams.add(gram)
        stems = _content_stems(part)
        pairs.update(zip(stems, stems[1:], strict=False))
    pairs -= _COMMON_BIGRAMS
    return frozenset(grams), frozenset(pairs), frozenset(t for pair in pairs for t in pair)


class InstructionOverlap(Rule):
    """Shares a five-word sequence or two content-word pairs with the row's instruction."""

    name = "instruction_overlap"
    kind = "instruction_echo"

    def matches(self, s: Sentence) -> bool:
        # On the text with its quotes: the instruction quoted is still the instruction.
        if not s.prompt or s.shows_text:
            return False
        grams, pairs, stems = _prompt_grams(s.prompt)
        text = s.text
        tokens = [t.lower() for t in WORD_RUN.findall(text)]
        # Both tests need at least two of the instruction's content words.
        if sum(_stem(t) in stems for t in set(tokens) if t not in STOPWORDS) < 2:
            return False
        if any(tuple(tokens[i : i + 5]) in grams for i in range(len(tokens) - 4)):
            return True
        stems = _content_stems(text)
        return len(set(zip(stems, stems[1:], strict=False)) & pairs) >= 2


_PHRASES = re.compile(
    r"\bsentence\s+structures?\b|\bwell[\s-]+structured\b|\bnice\s+(?:sentence\s+)?structure\b"
    r"|\breal[\s-]+world\s+(?:knowledge|information|info|facts?|details?|context|data|names?|"
    r"elements?|identity|identification|specifics|particulars|accuracy|grounding|references?|"
    r"terms|perspective|standpoint|cues|content|entities|background|insights?|clues|"
    r"specificity|attributes|information)\b|\bweb\s+images?\b"
    r"|\bin[\s-]depth\s+(?:real[\s-]world\s+)?(?:details?|knowledge|information)\b"
    r"|\b(?:detailed\s+|dense\s+)?visual\s+descriptions?\b"
    r"|\bfactual\s+(?:information|knowledge|details|context|captions?)\b"
    r"|\bnames,?\s+(?:and\s+)?places\b|\bbrands,?\s+(?:and\s+)?dates\b|\bplaces,?\s+brands\b"
    r"|\bmerg(?:e[sd]?|ing)\s+and\s+refin(?:e[sd]?|ing)\b|\bconcatenat\w*"
    r"|\bflaws?\s+in\s+(?:sentence\s+)?(?:structure|grammar)\b|\bsuffers?\s+from\s+flaws\b"
    r"|\bfalse\s+information\b|\bnotes\s+or\s+comments\b|\bdescribe\s+this\s+image\b"
    r"|\b(?:without|no|any)\s+(?:any\s+)?(?:introduction|preamble|commentary|comments|notes)\b"
    r"|\b(?:only\s+the\s+caption|the\s+caption\s+only)\b|\bwell[\s-]+formed\b"
    r"|\bgrammatically\s+(?:correct|sound|accurate|proper)\b|\bcoherent\s+(?:sentence|caption|"
    r"description|whole)\b",
    _I,
)
_KEEP = re.compile(
    r"\b(?:keep|keeps|kept|keeping|retain\w*|preserv\w*|maintain\w*|incorporat\w*|integrat\w*|"
    r"combin\w*|merg\w*|blend\w*|weav\w*|woven|fus\w*|enrich\w*|carr(?:y|ies|ied)\s+over)\b",
    _I,
)
_KEPT_THING = re.compile(
    r"\b(?:knowledge|visual\s+(?:details?|elements?|information|cues)|key\s+(?:facts|details|"
    r"information)|(?:brand|location|contextual|background|factual)\s+(?:information|details)|"
    r"names\s+and\s+(?:places|dates)|pieces\s+of\s+information|(?:relevant|important)\s+"
    r"(?:details|information|facts)|proper\s+nouns)\b",
    _I,
)


class InstructionVocabulary(Rule):
    """Uses the words of caption-fusion instructions (sentence structure, real-world
    knowledge, keeping the knowledge and the visual details)."""

    name = "instruction_vocabulary"
    kind = "instruction_echo"
    triggers = frozenset(
        """sentence structure structures structured nice real world depth visual description
        descriptions factual names brands places merge merges merged merging concatenate
        concatenates concatenated concatenating concatenation flaw flaws suffer suffers false
        notes describe introduction preamble commentary comments only knowledge key brand
        location contextual background pieces relevant important proper well formed
        grammatically coherent web""".split()
    )

    def matches(self, s: Sentence) -> bool:
        if s.shows_text:
            return False
        if _PHRASES.search(s.masked):
            return True
        return bool(_KEEP.search(s.masked) and _KEPT_THING.search(s.masked))


_WRITER_VERBS = (
    r"foreground|spotlight|underline|showcase|draw|call|dwell|linger|put|place|forget|overlook|"
    r"neglect|(?:work|weave|fold|slip|fit)\s+in|bring\s+out|lead\s+with|prioriti[sz]e|"
    r"describe|mention|include|focus|highlight|keep|retain|preserve|merge|combine|avoid|"
    r"ensure|emphasi[sz]e|refine|rewrite|correct|fix|integrate|incorporate|provide|give|"
    r"omit|remove|state|specify|write|use|add|make|capture|convey|reflect|stress|cover|"
    r"name|identify|list|note|refer|repeat|feature|read|sound|start|begin|end|stay|remain"
)
_ORDERS = (
    r"describe|mention|include|focus|highlight|keep|retain|preserve|merge|combine|avoid|"
    r"ensure|emphasi[sz]e|refine|rewrite|correct|fix|integrate|incorporate|provide|give|"
    r"omit|remove|state|specify|write|use|add|make|capture|convey|stress|repeat|"
    r"concatenate|summari[sz]e|limit|start|begin|stick|prioriti[sz]e|prefer|favou?r|trust|"
    r"rely|ignore|drop|skip|leave|cut|shorten|expand|paraphrase|translate|output|answer|"
    r"respond|return|reply|produce|generate|create|craft|compose|draft|explain|check|verify|"
    r"double-check|mind|treat|name|identify|list|note\s+down|foreground|spotlight|showcase|"
    r"underline|feature|put|place|"
    # The writer's steps on its inputs, as orders: "Compare the two dates."
    r"compare|extract|determine|review|proofread|finali[sz]e|reconcile|weigh|examine|"
    r"analy[sz]e|discard|decide|point\s+out"
)
_IMPERATIVE = re.compile(
    r"^\W*(?:(?:first|firstly|then|next|finally|now|also|lastly|second|secondly|third|step\s+\d+)"
    r"[,:]?\s+)?(?:please\s+)?(?:(?:only|just|simply)\s+)?(?:(?:do\s+not|don['’]t|never|always|be\s+sure\s+to|make\s+sure|"
    r"remember|try\s+to|note\s+that|(?:leave|cut|take|strip|filter|weed|rule)\s+out)\b"
    rf"|(?:{_ORDERS})\s+(?=(?:the|a|an|this|that|these|those|it|them|both|all|any|"
    r"only|on|to|every|each|your|its|their|what|how|which|whether|more|less|one|two|with|"
    r"details|information|context|facts|some|no|any)\b|"
    r"\w+ing\b))",
    _I,
)
_OBLIGATION = re.compile(
    r"\b(?:(?:caption|description|sentence|output|answer|response|text|rewrite|summary|version)s?|"
    r"it|this|we|you|one|words)\s+(?:also\s+|here\s+)?(?:should|must|needs?\s+to|has\s+to|have\s+to|"
    r"ought\s+to|is\s+(?:to|supposed\s+to|meant\s+to|expected\s+to|required\s+to)|"
    r"will\s+need\s+to)\s+(?:also\s+)?(?:not\s+)?"
    rf"(?:{_WRITER_VERBS}|be\s+(?:concise|factual|detailed|clear|brief|short|accurate|"
    r"written|kept|mentioned|included|avoided|removed|omitted|highlighted|a\s+single|under|"
    r"at\s+most|no\s+more|fewer|shorter|longer))\b",
    _I,
)
# Captions in general, as an instruction talks of them: "A good caption names the place."
_GOOD_CAPTION = re.compile(
    r"\b(?:a|any|the|every|each|your)\s+(?:good|great|ideal|proper|better|strong|perfect|"
    r"well-written)\s+(?:caption|description|answer|response|output)s?\b"
    r"|\bsuch\s+an?\s+(?:caption|description)\b|\bno\s+need\s+to\s+(?:repeat|mention|include|"
    r"describe|add|say|state|name)\b",
    _I,
)
# What the caption would or will do: "Any good caption here would highlight ...".
# What the caption is to do, as a cleft: "Naming the brand is what the caption should do".
_CLEFT = re.compile(
    r"\bwhat\s+(?:the|a|this|your|each|every)\s+(?:caption|description|output|answer|response|"
    r"rewrite|sentence)\s+(?:should|must|needs?\s+to|has\s+to|ought\s+to|is\s+(?:meant|"
    r"supposed)\s+to)\s+(?:do|be|say|include|contain|cover|convey|mention)\b",
    _I,
)
# A carrier that states the obligation is content: "A poster explains what a caption should
# include", "The style guide on the wall says captions must be short".
_CARRIER_SUBJECT = re.compile(
    r"^\W*(?:an?|the)\s+(?:[\w'’-]+\s+){0,2}?(?:sign|poster|slide|whiteboard|chalkboard|"
    r"handout|worksheet|banner|screen|page|guide|book|manual|board)\b[^.]*?\b(?:explains|says|"
    r"reads|states|lists|shows|reminds|warns|notes|asks|tells)\b",
    _I,
)
_WOULD = re.compile(
    r"\b(?:caption|description|output|answer|response|rewrite|summary)s?\s+(?:here\s+)?"
    rf"(?:would|will)\s+(?:also\s+)?(?:not\s+)?(?:{_WRITER_VERBS})\b",
    _I,
)


# What the text should put first or weigh most, said as an obligation or a to-do:
# "The emphasis should fall on ...", "Priority should be given to ...", "The key point
# to convey is ...", "The brand should come first".
_EMPHASIS = r"emphasis|focus|attention|priority|prominence|weight|spotlight|precedence"
_MODAL = r"should|must|ought\s+to|needs?\s+to|has\s+to|is\s+(?:meant|supposed)\s+to"


def _gated(*table: tuple[str, str]) -> tuple[tuple[frozenset[str], re.Pattern[str]], ...]:
    """(words, regex) pairs: a regex runs only on a sentence holding one of its words."""
    return tuple((frozenset(w.split()), re.compile(rx, _I)) for w, rx in table)


_PRIORITY = _gated(
    (
        "emphasis focus attention priority prominence weight spotlight precedence",
        rf"\b(?:{_EMPHASIS})\s+belongs\s+(?:on|to|with)\b"
        r"|\b(?:deserves?|merits?|needs|requires?|warrants?)\s+(?:more\s+|less\s+|the\s+most\s+|"
        rf"special\s+|particular\s+|greater\s+)?(?:{_EMPHASIS})\b"
        rf"|\b(?:{_EMPHASIS})\s+(?:\w+\s+){{0,3}}?(?:{_MODAL})\s+(?:be\s+)?(?:\w+\s+)?(?:on|to|with)\b"
        rf"|\b(?:{_EMPHASIS})\s+(?:is|was|has\s+been)\s+(?:\w+ly\s+)?(?:placed|put|given|laid)\s+"
        r"(?:on|to)\b"
        # Said as an order: "Put the emphasis on ...", "Give prominence to ...".
        rf"|^\W*(?:please\s+)?(?:put|place|lay|give|draw|call|shift)\s+(?:\w+\s+)?(?:{_EMPHASIS})\b",
    ),
    (
        "should must ought need needs has meant supposed",
        rf"\b(?:{_MODAL})\s+(?:be\s+(?:secondary|subordinate|second)\s+to|(?:be\s+)?(?:given|placed|"
        r"put|paid|laid|drawn)\s+(?:to|on)|(?:come|go|appear|be\s+(?:placed|put|mentioned|named|"
        r"listed))\s+(?:first|last|early|up\s+front|at\s+the\s+(?:start|beginning|end)|before|"
        r"ahead)|(?:not\s+)?be\s+(?:front\s+and\s+cent(?:er|re)|prominent|foregrounded|emphasi[sz]ed|"
        r"highlighted|stressed|spotlighted|left\s+out|omitted|dropped|made\s+clear|noted|"
        r"pointed\s+out))\b",
    ),
    (
        "key main central important essential chief",
        r"\b(?:key|main|central|important|essential|chief)\s+(?:point|thing|fact|detail|idea|message|"
        r"information)s?\s+(?:here\s+)?(?:is\s+)?to\s+(?:name|identify|state|mention|convey|bring\s+out|highlight|stress|emphasi[sz]e|mention|"
        r"get\s+across|capture|include|keep|retain|preserve|communicate|note)\b",
    ),
    (
        "lead open start begin bring put move end finish close",
        r"^\W*(?:please\s+)?(?:lead|open|start|begin)\s+with\s+(?:the|a|an|its|their)\b"
        r"|^\W*(?:please\s+)?(?:start|begin|open|end|finish|close)\s+(?:off\s+)?by\s+\w+ing\b"
        r"|^\W*(?:please\s+)?(?:bring|put|move|place)\b[^.]*\b(?:to\s+the\s+(?:fore|front|forefront|"
        r"top)|at\s+the\s+(?:start|beginning|end|front|top))\b",
    ),
    (
        "matters matter needs has ought naming mentioning identifying stating including giving "
        "highlighting stressing should must",
        r"\bwhat\s+matters\s+(?:most|more)\b|\bmatters?\s+(?:less|more)\s+here\b"
        r"|\bwhat\s+(?:needs|has|ought)\s+(?:to\s+be\s+)?(?:highlight|emphasi[sz]|stress|mention|"
        r"foreground|spotlight|underlin)\w*"
        r"|^\W*(?:naming|mentioning|identifying|stating|including|giving|highlighting|stressing)\b"
        r"[^.]*\b(?:is|remains)\s+(?:the\s+)?(?:top\s+|main\s+|first\s+|key\s+)?(?:priority|focus|"
        r"point|goal|aim|key)\b"
        rf"|\b(?:{_MODAL})\s+(?:lead|open|begin|start|head)\s+(?:the|this)\s+(?:caption|description|"
        r"text|sentence)\b",
    ),
    (
        "first words sentence line clause",
        r"\b(?:names?|dates?|facts|visuals|visual\s+details|knowledge|brands?|places?)\s+(?:come|go)\s+"
        r"first\b"
        rf"|\b(?:opening|first|closing|last|final)\s+(?:words?|sentence|line|clause)\s+(?:{_MODAL})\s+"
        r"(?:be|name|mention|state|give|introduce|identify)\b",
    ),
    (
        "worth important necessary essential crucial vital best wise advisable preferable",
        r"\bworth\s+(?:emphasi[sz]ing|highlighting|stressing|underlining|foregrounding)\b"
        r"|\b(?:important|necessary|essential|crucial|vital|best|wise|advisable|preferable)\s+to\s+"
        r"(?:highlight|emphasi[sz]e|mention|"
        r"stress|point\s+out|underline|note)\b",
    ),
    (
        # A suggestion about what the text would gain: "Mentioning the name would add context".
        "would could might",
        r"^\W*(?:mentioning|including|adding|naming|noting|specifying|stating|highlighting)\b"
        r"[^.]*\b(?:would|could|might)\s+(?:\w+\s+)?(?:add|help|give|improve|make|provide)\b",
    ),
)


class Emphasis(Rule):
    """What the text should put first or weigh most, restated from an instruction: an
    obligation ("Priority should be given to the name"), an order ("Put the emphasis on
    ...", "Lead with the brand") or a to-do ("The key point to convey is ...")."""

    name = "emphasis_directive"
    kind = "instruction_echo"
    triggers = frozenset(w for words, _ in _PRIORITY for w in words)

    def matches(self, s: Sentence) -> bool:
        if s.shows_text:
            return False  # "Priority boarding", "Attention: wet floor", says the sign
        return any(not words.isdisjoint(s.words) and rx.search(s.masked) for words, rx in _PRIORITY)


# Word gates that only spare work (tests check they never change a decision): an
# obligation or a "would" needs a modal; a good caption, one of its adjectives.
_MODAL_WORDS = frozenset("should must need needs has have ought is will would".split())
_GOOD_WORDS = frozenset(
    "good great ideal proper better strong perfect well written such need".split()
)


# A requirement of the output said in the passive: "Only one sentence is required".
_REQUIRED_WORDS = frozenset("required needed expected allowed permitted wanted".split())
_REQUIRED = re.compile(
    r"\b(?:caption|description|sentence|output|answer|response|paragraph|words?)s?\s+(?:is|are)\s+"
    r"(?:\w+ly\s+)?(?:required|needed|expected|allowed|permitted|wanted)\b",
    _I,
)
# An injected order in the inputs, echoed or reported: "Ignore previous instructions",
# "the embedded command ... was treated as data".
_OVERRIDE_WORDS = frozenset("ignore disregard forget embedded injected hidden treated".split())
_OVERRIDE = re.compile(
    r"\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+)?(?:the\s+|your\s+|my\s+)?(?:previous|"
    r"prior|above|earlier|preceding|foregoing|original|system)\b"
    r"|\b(?:embedded|injected|hidden)\s+(?:commands?|instructions?|prompts?|orders?|directives?|"
    r"requests?)\b"
    r"|\btreated\s+as\s+(?:data|plain\s+text|content)\b",
    _I,
)


class Directive(Rule):
    """The instruction restated as an order: an imperative, or what the caption
    should, must or needs to do."""

    name = "directive"
    kind = "instruction_echo"

    def matches(self, s: Sentence) -> bool:
        masked, words = s.masked, s.words
        # An order at the start may be a sign's ("Mind the gap, warns a sign").
        if _IMPERATIVE.match(masked) and not s.shows_text:
            return True
        modal = not _MODAL_WORDS.isdisjoint(words)
        if modal and _OBLIGATION.search(masked) and not _CARRIER_SUBJECT.search(masked):
            return True
        if modal and _WOULD.search(masked):
            return True
        good = not _GOOD_WORDS.isdisjoint(words) and _GOOD_CAPTION.search(masked)
        if good and not _CARRIER_SUBJECT.search(masked):
            return True  # "A poster explains how to write a good caption" is content
        if (
            not _REQUIRED_WORDS.isdisjoint(words)
            and _REQUIRED.search(masked)
            and not s.shows_carrier
        ):
            return True
        if (
            not _OVERRIDE_WORDS.isdisjoint(words)
            and _OVERRIDE.search(masked)
            and not s.shows_carrier
        ):
            return True
        return (
            "what" in words and bool(_CLEFT.search(masked)) and not _CARRIER_SUBJECT.search(masked)
        )


_BRACE_SLOT = re.compile(r"\{\s*[A-Za-z_][\w ]{0,30}\}")
_SLOT_NAME = re.compile(
    r"\{\s*[A-Za-z_][\w ]{0,30}\}|\[(?!sic\])(?:insert\s+)?[a-z][a-z _/-]{1,30}\]|"
    r"</?(?:insert\s+)?[a-z][a-z _]{1,30}>"
)


class TemplateSlot(Rule):
    """A placeholder left in the text: a template slot ("Sentence 1: {alt_text}"), a
    blank to fill ("[brand name]", "<location>") or a fence tag ("</alt_text>")."""

    name = "template_slot"
    kind = "instruction_echo"

    def matches(self, s: Sentence) -> bool:
        text = s.text
        if "{" not in text and "[" not in text and "<" not in text:
            return False
        # Quoted text is content ('the subtitle reads "[laughs]"'); a brace slot never is.
        if _BRACE_SLOT.search(text):
            return True
        return _SLOT_NAME.search(s.masked) is not None
