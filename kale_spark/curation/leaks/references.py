"""References to texts: how a sentence names the inputs the model was given or the
caption it writes, and whether it uses one as a source. Shared by the kinds that need
a text to talk about (meta_discourse, input_critique, agreement_hedge).

A reference is one of these strengths:

- *named*: only a prompt has it (Sentence 2, the alt-text, the synthetic caption, the
  keyword list, the given information, the model's caption);
- *ordinal*: a text picked out among several (the first sentence, both captions, the
  latter description, the other input, the prompt, the vision model);
- *pronoun*: an ordinal standing alone (the former, the original, the second one);
- *bare*: the caption, the description, the text;
- *info*: the information, this knowledge - only when cited as a source;
- *figure3*: KALE's "the visual representation".
- *provenance*: an input named by where it came from (the web snippet, the scraped
  string; :mod:`.input_names`), an input even beside shown text;
- *abbrev*: "S1", "S2", a source only when cited as one.

Named, ordinal and pronoun references leak unless the sentence is about what a text in
the image says; a bare one leaks only when it is used as a source ("the caption says",
"as described in the description"). A reference tied to a carrier right beside it
("the first sentence of the poem", "the caption under the cartoon"), a text noun used
as a modifier ("the caption contest", "an alt-text field") and quoted text are content.
"""

from __future__ import annotations

import re

from kale_spark.curation.leaks import content
from kale_spark.curation.leaks.base import Sentence
from kale_spark.curation.leaks.content import SURFACES, words
from kale_spark.curation.leaks.input_names import INPUT_NAME_PATTERNS, INPUT_NAME_WORDS
from kale_spark.curation.leaks.vocab import verb_forms

__all__ = [
    "REFERENCE_WORDS",
    "attributed",
    "find_references",
    "is_modifier",
    "owned_by_other",
    "reference_leaks",
]

_I = re.IGNORECASE
_TEXT = r"(?:sentence|caption|description|text|version|input|account|output|draft|response)"
# Smaller pieces of text: an input only when picked out as one of two ("the first line").
_PIECE = r"(?:line|statement|phrase|clause|entry|passage|snippet)"
_ORD = (
    r"first|second|third|former|latter|1st|2nd|other|two|both|either|neither|each|previous|"
    r"preceding|earlier|initial|original|above|opening|closing|concluding|longer|shorter"
)


def _parts(*table: tuple[str, str]) -> tuple[tuple[frozenset[str], re.Pattern[str]], ...]:
    """(words, regex) pairs: a regex runs only on a sentence holding one of its words,
    which spares scanning every sentence with one long alternation."""
    return tuple((frozenset(w.split()), re.compile(rx, _I)) for w, rx in table)


_TXT = "caption captions description descriptions text texts sentence sentences"
# Machines that write a caption: "the detector's caption", "the captioner's output".
_AUTHORS = (
    r"model|ai|vlm|llm|captioner|detector|tagger|classifier|algorithm|network|bot|assistant|"
    r"(?:captioning|tagging|vision|recognition)\s+(?:system|tool|engine|pipeline)"
)
_NAMED = _parts(
    (
        "sentence sentences",
        r"\bsentences?[\s-]*(?:#\s*|no\.\s*|number\s+)?[(\[]?(?:[1-4]|one|two|three|four)\b"
        r"(?![.,]\d)|(?-i:\b[Ss]entence\s+(?:I|II)\b)",
    ),
    (
        "alt alternative alternate",
        # "alt_text" is the tag name of the fenced prompts.
        r"\b(?:alt|alternative|alternate)[\s_-]?(?:text|txt|tag|attribute)s?\b",
    ),
    (
        "keyword keywords",
        r"\bkeywords?(?:[\s-]+(?:style|heavy|based|only))?[\s-]+(?:lists?|texts?|alt|captions?|"
        r"tags?|strings?)\b|\bthe\s+keywords\b",
    ),
    (
        _TXT + " wording input inputs",
        r"\b(?:synthetic|dense|generated|(?:machine|model|ai|auto|computer)[\s-]?(?:generated|"
        r"written)|automatic|automated)[\s-]+(?:(?:visual|image|dense)\s+)?(?:captions?|"
        r"descriptions?|texts?|sentences?)\b"
        r"|\b(?:web|source|input|raw|reference|original|given|provided|supplied|image|photo|"
        r"accompanying|associated|attached|surrounding|scraped|crawled|paired|companion|"
        r"user[\s-](?:supplied|provided|written)|html|seo)[\s-]+"
        r"(?:captions?|texts?|descriptions?|sentences?|inputs?|wording)\b"
        r"|\b(?:caption|description|text|passage|snippet)\s*#?\s*[1-4]\b(?![.,:]\d)"
        r"|(?-i:\b(?:[Cc]aption|[Dd]escription|[Tt]ext|[Ss]entence)\s+[AB]\b)",
    ),
    (
        "wording inputs input",
        r"\b(?:web|source|input|raw|reference|original|given|provided|supplied|image|photo)[\s-]+"
        r"(?:inputs?|wording)\b",
    ),
    (
        "knowledge ground",
        r"\bknowledge[\s-](?:augmented|enriched|enhanced|infused|grounded|injected|informed|"
        r"aware|rich|driven)(?:\s+(?:caption|description|text|"
        r"sentence|version)s?)?\b|\bground[\s-]truth\b",
    ),
    (
        # Search-engine filler is web-page text, never something an image shows.
        "seo",
        r"\bseo[\s-]+(?:keywords?|tags?|terms?|phrases?|text|spam|filler|words|strings?|titles?)\b",
    ),
    (
        "metadata hashtag hashtags file filename keywords tag tags title labels",
        r"\b(?:the|its|their|(?:image|photo|picture|file)['’]s)\s+(?:metadata|hashtags?|file\s*name|"
        r"filename|seo\s+keywords)\b"
        # What the image file carries: "the image's tags", "the photo's title".
        r"|\b(?:image|photo|picture|file)['’]s\s+(?:tags|title|keywords|labels)\b"
        # The file an image came in: "the title of the image file".
        r"|\b(?:the|its)\s+(?:image|photo|picture)\s+file\b",
    ),
    (
        "caption captions description descriptions output outputs text texts answer answers "
        "response responses label labels tag tags prediction predictions guess guesses",
        r"\b(?:vlm|llm|ai|model|bot|machine|captioner)[\s-]+(?:captions?|descriptions?|outputs?)\b"
        rf"|\b(?:{_AUTHORS})['’]s\s+(?:caption|description|output|text|answer|response|label|"
        r"tag|prediction|guess)s?\b",
    ),
    (
        "cogvlm llava blip blip2 chatgpt gpt gpt4 gpt3 gpt4o capsfusion",
        r"\b(?:cogvlm|llava|blip-?\d?|chatgpt|gpt-?\d\w*|capsfusion)\b",
    ),
    (
        # The page an image was taken from is an input: "the surrounding web page", "the
        # page the image came from", "the product title".
        "page webpage site website post listing product title",
        r"\b(?:surrounding|source|original|accompanying|host|hosting)\s+(?:web\s*)?(?:page|site)\b"
        r"|\b(?:website|webpage|site|listing)['’]s\s+(?:description|caption|text|title|copy)\b"
        r"|\b(?:page|site|website|webpage|post|listing|article)\s+(?:that\s+|which\s+)?the\s+"
        r"(?:image|photo|picture)\s+(?:came|comes|was\s+(?:taken|pulled|found))\s+from\b"
        # ... or "the page it was scraped from".
        r"|\b(?:page|site|website|webpage|listing|post)\s+(?:that\s+|which\s+)?(?:it|they|the\s+"
        r"(?:image|photo|picture|text|caption))\s+(?:was|were)\s+(?:scraped|crawled|pulled|taken)\s+"
        r"from\b"
        r"|\b(?:product|page|listing|image|photo|file)\s+(?:title|tags)\b",
    ),
    ("pieces", r"\b(?:both|two|the|these|those)\s+pieces\s+of\s+(?:text|information|input)\b"),
    # The inputs as the material a text was made from: "the source material calls it ...".
    ("source", r"\bsource\s+(?:materials?|texts?|data|info)\b"),
    # Knowledge from beyond the picture is an input: "outside knowledge identifies ...".
    (
        "outside external",
        r"\b(?:outside|external)\s+(?:knowledge|information|info|context|sources?|data)\b"
        r"|\bfrom\s+outside\s+the\s+(?:image|photo|picture)\b",
    ),
    (
        "input inputs source sources",
        r"\b(?:inputs?|sources?)\s*#?\s*(?:[1-4]|one|two)\b"
        r"|(?-i:\b(?:[Ii]nput|[Ss]ource)\s+[AB]\b)"
        r"|\b(?:first|second|other|two|both|either|neither|each|every)\s+(?:inputs?|sources?)\b"
        r"(?!\s+of\b)"
        r"|\bthe\s+inputs?\b(?!\s*(?:and|or|/|&)\s*outputs?\b)"
        # An input of a physical flow is no text: "the input of fresh water".
        r"(?!\s+of\s+(?:\w+\s+)?(?:water|air|energy|power|heat|light|current|fuel|nutrients|"
        r"sediment|steam|gas)\b)",
    ),
    (
        "image images photo photos picture pictures",
        r"\b(?:given|provided|supplied|input|attached|uploaded)\s+(?:image|photo|picture)s?\b",
    ),
    (
        "given provided supplied hand",
        r"\b(?:given|provided|supplied)\s+(?:sentences|captions|descriptions|texts?|inputs?|"
        r"information|details|context|knowledge|facts|data|keywords)\b"
        r"|\b(?:information|details|text|texts|context|knowledge|facts|sentences?|captions?|"
        r"descriptions?|inputs|data|keywords)\s+(?:provided|given|supplied|at\s+hand)\b",
    ),
    (
        "model ai assistant system captioner llm vlm",
        r"\b(?:generated|written|produced|created|output|predicted|suggested|proposed)\s+by\s+"
        r"(?:the|a|an|another)\s+(?:[\w-]+\s+){0,2}?(?:model|ai|assistant|system|captioner|llm|vlm)"
        r"(?:\s+(?:model|system|assistant|tool|program|captioner))?\b",
    ),
)
_ORD_WORDS = (
    "sentence sentences caption captions description descriptions text texts version versions "
    "input inputs account accounts output outputs draft drafts response responses"
)
_ORDINAL = _parts(
    (
        "line lines statement statements phrase phrases clause clauses entry entries passage "
        "passages snippet snippets",
        rf"\b(?:first|second|1st|2nd|former|latter|previous|preceding|earlier)\s+{_PIECE}s?\b",
    ),
    (
        _ORD_WORDS + " pair pairs source sources",
        rf"\b(?:both|either|neither|none|each|all|one|any)\s+of\s+(?:the|these|those|its|my)\s+"
        rf"(?:two\s+)?{_TEXT}s\b|\b(?:2|two)\s+{_TEXT}s\b"
        rf"|\b{_TEXT}\s+pairs?\b|\bpairs?\s+of\s+{_TEXT}s\b"
        rf"|\b(?:{_ORD})\s+{_TEXT}s?\b|\bone\s+(?:of\s+the\s+)?(?:sentence|caption|description|"
        r"input|source|text|account|version)s?\b"
        r"|\bno\s+(?:source|input|text|caption|description|sentence)s?\s+(?:names?|mentions?|says|"
        r"gives|states|identifies|specifies|lists|calls|describes|notes|indicates)\b"
        rf"|\b(?:sentence|caption|description|text)s?\s+(?:above|below)\b"
        rf"(?!\s+(?:the|a|an|it|its|his|her|their)\b)",
    ),
    (
        "prompt instruction instructions task request user guidelines",
        r"\b(?:the|this|my|your)\s+(?:prompt|instructions?|task|request)\b|\bthe\s+user\b"
        r"|\b(?:per|following|under)\s+(?:instructions|guidelines)\b",
    ),
    (
        "model models tags captioner captioners tagger taggers",
        r"\b(?:vision|language|captioning|caption|image|ai|multimodal|vision[\s-]language|"
        r"visual|text|generative)[\s-]+models?\b|\bthe\s+tags\b"
        r"|\b(?:the|a|an)\s+(?:[\w-]+\s+)?(?:captioner|tagger)s?\b",
    ),
    (
        # A text told by who or what made it or came with it: "the caption the model
        # produced", "what the captioning system wrote", "the caption produced
        # automatically", "the caption that accompanied the image".
        "caption captions description descriptions text texts output what title",
        rf"\b(?:caption|description|text|output|title)s?\s+(?:that\s+|which\s+)?(?:the|a|an)\s+"
        rf"(?:[\w-]+\s+)?(?:{_AUTHORS}|system|captioner)\s+(?:produced|wrote|generated|gave|"
        r"returned|created|proposed|suggested|output|made|came\s+up\s+with|offered|provided)\b"
        r"|\b(?:caption|description|text|title)s?\s+(?:taken\s+|pulled\s+|scraped\s+)?from\s+the\s+"
        r"(?:web(?:\s*page|\s*site)?|internet|site|website|webpage|listing|source)\b"
        rf"|\bwhat\s+the\s+(?:[\w-]+\s+)?(?:{_AUTHORS}|system|captioner)\s+(?:wrote|produced|"
        r"generated|said|says|returned|described|output|saw|sees|noticed|detected|picked\s+up)\b"
        r"|\b(?:caption|description|text)s?\s+(?:was\s+|were\s+)?(?:produced|generated|written|"
        r"created)\s+(?:automatically|by\s+(?:a\s+)?(?:machine|software|computer)|for\s+(?:this|the)\s+"
        r"(?:image|photo|picture))\b"
        r"|\b(?:caption|description|text|alt|title|words)s?\s+(?:that\s+|which\s+)?(?:accompan\w+|"
        r"(?:came|comes|shipped|supplied|provided|given|attached|paired|posted|published|uploaded|"
        r"bundled|scraped)\s+(?:along\s+)?(?:with|alongside))\s+(?:the|this|that)\s+(?:image|photo|"
        r"picture)s?\b",
    ),
)
# "The former is vague", "of the original": an ordinal standing for a text.
_PRONOUN = re.compile(
    r"\bthe\s+(?:original|former|latter|above|(?:other|first|second)\s+one)\b", _I
)
# "Taken from the second,": an ordinal alone, as a source that ends its clause.
_SOURCE_ORDINAL = re.compile(
    r"(?:(?<=\bfrom\s)|(?<=\bper\s)|(?<=\bto\s))the\s+(?:first|second)\b(?=\s*(?:[,.;:]|$))", _I
)
# Information as a source: "According to the information, ...", "this knowledge places".
_INFO = re.compile(
    r"\b(?:the|this|that|such|said)\s+(?:information|info|knowledge|data|context)\b"
    r"|\b(?:the|these)\s+(?:details|facts)\b",
    _I,
)
# Up to two modifiers, none ending in -s ("the short caption", not "the hallway explains
# sentence"); a modifier that names a surface makes it that surface's text.
_BARE = re.compile(
    r"\b(?:the|that|its|their)\s+(?P<mods>(?:[a-z][\w-]*(?<!s)(?:['’]s)?\s+){0,2}?)"
    r"(?:caption|description|sentence|text|source|listing|metadata|snippet|blurb|alt|title)s?\b"
    # The head is the last text noun: "the alt description", "the snippet text".
    r"(?![\s_-]*(?:caption|description|sentence|text|listing|snippet|blurb)s?\b)",
    _I,
)

# A singular text noun followed by a noun is a modifier ("the caption contest", "the
# input tray", "an alt-text field"); followed by a verb or one of these, it is the
# head of its phrase ("the caption says", "the caption now ...").
_HEAD_FOLLOWERS = frozenset(
    """is are was were be been being has have had does do did can could may might will
    would should must says said also only clearly then simply just merely never not now
    already still even further again however though thus too and or but nor as that which
    who where whose than so yet about of in on at by for from with within into to over under
    above below between after before here there it its itself alone instead put gave told
    wrote kept made got cannot can't can’t won't won’t isn't isn’t wasn't wasn’t doesn't
    doesn’t didn't didn’t seem appear saw came went took thought knew left let set""".split()
)
_NEXT = re.compile(r"^\s*([A-Za-z][\w'’-]*)")
_PROMPTISH = re.compile(
    r"^\s+of\s+(?:the|a|an|this|that|its|both|each)?\s*(?:\w+\s+)?(?:inputs?|prompts?|"
    r"instructions?|alt[\s-]?text|captions?|descriptions?|sentences?|texts?|sources?|"
    r"keywords?|models?|tasks?|requests?|outputs?)\b",
    _I,
)

_PARTICIPLES = (
    r"mentioned|described|stated|noted|indicated|depicted|shown|suggested|specified|given|laid\s+out|"
    r"provided|listed|named|identified|taken|drawn|derived|sourced|highlighted|outlined|"
    r"detailed|explained|presented|seen|conveyed|expressed|captured|reflected|referenced|"
    r"implied|found|retained|kept|preserved|borrowed|obtained|added|portrayed|cited|quoted|"
    r"included|contained|written|reported|recorded|called|supplied|pulled|gathered|learned|"
    r"confirmed|verified|corroborated|supported|backed\s+up|contradicted"
)
_ATTRIB_BEFORE = re.compile(
    rf"(?:\b(?:as\s+)?(?:{_PARTICIPLES})\s+(?:in|by|from|within|on|through)"
    r"|\baccording\s+to|\b(?:as\s+)?per|\bbased\s+on|\bgoing\s+by|\bthanks\s+to|"
    r"\bjudging\s+(?:by|from)|\b(?:in\s+line|consistent|in\s+keeping|in\s+accordance|"
    r"in\s+agreement|along|together)\s+with|\bmatching|\b(?:unlike|like|than|from|between|following|"
    r"besides|beyond|without|despite|contrary\s+to|given|considering|drawing\s+(?:on|from)|combining|merging|fusing|"
    r"blending|integrating|comparing|summari[sz]ing|to\s+summari[sz]e|taking|using|trusting|"
    r"favou?ring|prioriti[sz]ing|preferring|deferring\s+to|relying\s+on|relies\s+on|"
    r"rely\s+on|depends?\s+on|via|courtesy\s+of)"
    r"|^\W*(?:for|of|in|within))\s+"
    r"(?:(?:the|a|an|this|that|these|those|both|each|its|their|of\s+the|all|what)\s+|"
    r"[\w-]+(?:'s|’s)\s+)*$",
    _I,
)
# What a text does when it is used as a source: "the alt-text names ...", "Sentence 2
# omits ...", "the caption merges ...".
_SOURCE_VERBS = verb_forms(
    *"""mention describe state note say indicate identify name add provide give suggest call
    list focus tell refer highlight emphasize emphasise specify supply confirm place agree
    differ omit misspell contradict claim report offer depict show reveal explain portray
    lack exhibit contain include credit date attribute paint present capture convey imply
    cite characterize characterise frame label locate set put point read talk speak treat
    assume spell misidentify misname mislabel get use inform establish clarify contribute
    bring record hint assert insist situate center centre stress enumerate corroborate
    conflict disagree match miss ignore skip overlook neglect forget mistake reference quote
    support term dub tag merge combine blend fuse integrate weave keep retain preserve
    maintain avoid drop leave describe specify allude ask request instruct hallucinate
    invent guess overuse repeat overstate understate exaggerate oversell undersell confuse
    promise mislabel""".split()
)
_ATTRIB_AFTER = re.compile(
    # A relative that only says the text came with the image: "the title attached to the
    # image says ...", "the snippet that accompanies the picture calls it ...".
    r"^(?:'s|’s)?(?:\s+(?:(?:that|which)\s+(?:accompanies|accompanied|came\s+with|comes\s+with)|"
    r"(?:attached|paired|supplied|given|provided)\s+(?:to|with))\s+the\s+(?:image|photo|picture))?"
    r"\s+(?:(?:also|only|clearly|explicitly|further|then|simply|just|merely|probably|likely|"
    r"possibly|apparently|presumably|evidently|"
    r"correctly|wrongly|incorrectly|instead|however|actually|specifically)\s+)?"
    r"(?:(?:does|do|did)\s+not\s+|doesn't\s+|don't\s+|didn't\s+|never\s+|could\s+|may\s+|"
    r"might\s+|can\s+|fails?\s+to\s+|seems?\s+to\s+|appears?\s+to\s+)?"
    rf"(?:{_SOURCE_VERBS}|said|told|gave|given|brought|left|kept|got|spelt|made\s+clear)\b"
    r"|^(?:'s|’s)?\s+(?:is|are|was|were)\s+(?:mostly\s+|mainly\s+|all\s+)?about\b"
    r"|^(?:'s|’s)?\s+(?:talks?|deals?)\s+(?:about|with)\b|^(?:'s|’s)?\s+concerns\b"
    r"|^(?:'s|’s)?\s+makes?\s+(?:it\s+)?clear\b"
    r"|^(?:'s|’s)?\s+(?:is|are|was|were)\s+(?:\w+\s+)?(?:silent|vague|unclear|explicit|specific|"
    r"clear|wrong|right|correct|mistaken|accurate|confident|sure|inaccurate)\s+(?:about|on|that|"
    r"regarding|in|as\s+to)\b",
    _I,
)
# "The date in the caption", "the name within Sentence 1": a source, unless the
# sentence is about a thing bearing text ("the verb in Sentence 1" on a slide).
_IN_BEFORE = re.compile(
    r"\b(?:in|within)\s+(?:(?:the|a|an|this|that|these|those|both|each|its|their|all)\s+|"
    r"[\w-]+(?:'s|’s)\s+)*$",
    _I,
)
_QUOTE_NEXT = re.compile(r"^\s*[:,]?\s*[\"“‘']")


def is_modifier(masked: str, start: int, end: int) -> bool:
    """The text noun at ``start:end`` modifies the next word ("caption contest")."""
    if masked[end - 1 : end].lower() == "s" or masked[end : end + 1] in "'’":
        return False  # a plural or possessive text is a head: "the instructions ask"
    if re.search(r"\bpieces\s+of\b", masked[start:end], _I):
        return False  # "both pieces of information point to ...": plural
    if re.search(r"(?:\d|one|two|three|four)$", masked[start:end], _I):
        return False  # "Sentence 2 fills in ...": a numbered text modifies nothing
    m = _NEXT.match(masked[end:])
    if m is None:
        return False
    word = m.group(1).lower()
    if word in _HEAD_FOLLOWERS or word.endswith(("s", "ed", "ly", "ing")):
        return False
    return True


def owned_by_other(masked: str, end: int) -> bool:
    """ "The first sentence of the poem": a text of something that is not a prompt part."""
    after = masked[end:]
    return after.startswith(" of ") and not _PROMPTISH.match(after)


def attributed(s: Sentence, start: int, end: int) -> bool:
    """The reference is used as a source of information ("as described in X", "X says").
    "The caption reads: "..."" quotes what a text shows and is not attribution."""
    masked = s.masked
    before = _before(masked, start)
    if _ATTRIB_BEFORE.search(before):
        return True
    if not s.shows_carrier and _IN_BEFORE.search(before):
        return True
    after = _ATTRIB_AFTER.match(masked[end:])
    return bool(after) and not _QUOTE_NEXT.match(masked[end + after.end() :])


def _pronoun(masked: str, end: int, start: int = 0) -> bool:
    """ "The original" stands for an input: punctuation, a verb or a function word
    follows. "The second one" needs a verb ("the second one names ..."); "the second"
    alone is a text only as a source that ends its clause ("taken from the second,"):
    "the second-floor windows", "a copy of the first" and "the first shows" are not."""
    if masked[end - 5 : end].lower() in ("first", "econd"):
        return bool(
            re.match(r"\s*(?:[,.;:]|$)", masked[end:]) and _FROM_BEFORE.search(masked[:start])
        )
    m = _NEXT.match(masked[end:])
    if m is None:
        return not masked[end:].lstrip()[:1].isdigit()  # "the original 1920s tiles"
    word = m.group(1).lower()
    if masked[end - 3 : end].lower() == "one":
        return re.fullmatch(rf"(?:{_SOURCE_VERBS})", word) is not None
    return word in _HEAD_FOLLOWERS or re.fullmatch(rf"(?:{_SOURCE_VERBS})", word) is not None


# KALE's Figure 3: "The visual representation of the bridge, as depicted in Sentence 2".
_FIGURE3 = re.compile(r"\bthe\s+visual\s+representation\b", _I)
# Each pattern, with words one of which it needs (a cheap test before the regex).
_TEXT_WORDS = frozenset(
    """sentence sentences caption captions description descriptions text texts source sources
    listing listings metadata snippet snippets blurb blurbs alt title titles""".split()
)
_PATTERNS = (
    *(("named", rx, needs) for needs, rx in _NAMED),
    *(("ordinal", rx, needs) for needs, rx in _ORDINAL),
    ("pronoun", _PRONOUN, frozenset("original former latter above one".split())),
    ("pronoun", _SOURCE_ORDINAL, frozenset("first second".split())),
    ("bare", _BARE, _TEXT_WORDS),
    ("figure3", _FIGURE3, frozenset({"representation"})),
    ("info", _INFO, frozenset("information info knowledge data context details facts".split())),
    *((k, rx, needs) for k, needs, rx in INPUT_NAME_PATTERNS),
)


_FROM_BEFORE = re.compile(r"\b(?:from|according\s+to|per)\s+$", _I)
_AS_BEFORE = re.compile(r"\b(?:just\s+)?as\s+$", _I)
_OF_THE_IMAGE = re.compile(r"\s+of\s+(?:the|this|that)\s+(?:image|photo|picture)\b", _I)


def _before(masked: str, a: int) -> str:
    """The text before a span, at most 100 characters: attribution sits right before."""
    return masked[max(0, a - 100) : a]


def _keep_span(s: Sentence, a: int, b: int, strength: str, m: re.Match[str]) -> bool:
    """Whether a found span is a text the sentence talks about (see find_references)."""
    masked = s.masked
    if strength in ("named", "provenance"):
        # What an input says is never shown by a text verb ("the alt-text reads"), and an
        # input stays one whatever it is of ("the alt-text of a web image", "the given
        # description of the image").
        if s.tied(a, b, verbs=False) and not _OF_THE_IMAGE.match(masked[b:]):
            return False
    elif strength == "figure3":
        return not s.shows_carrier  # "the visual representation of the data on a screen"
    elif s.tied(a, b) or owned_by_other(masked, b):
        return False
    if strength == "info":
        # A source only when cited as one ("according to the information"), or, for
        # "this information", when it says something.
        # "As the information suggests": a source that says something, like "this".
        this = masked[a:b].lower().startswith(("this", "that", "such", "said")) or (
            _AS_BEFORE.search(_before(masked, a)) is not None and not s.shows_carrier
        )
        cited = _ATTRIB_BEFORE.search(_before(masked, a))
        if is_modifier(masked, a, b) or not (cited or this and _ATTRIB_AFTER.match(masked[b:])):
            return False
    if strength == "pronoun" and not _pronoun(masked, b, a):
        return False
    if strength == "bare" and not SURFACES.isdisjoint(words(m.group("mods"))):
        return False
    return not is_modifier(masked, a, b) or _ATTRIB_BEFORE.search(_before(masked, a)) is not None


def find_references(s: Sentence) -> list[tuple[int, int, str]]:
    """Spans (start, end, strength) of the texts the sentence talks about, leaving out
    texts tied to a carrier, texts of something else and modifiers."""
    found = []
    for strength, pattern, needs in _PATTERNS:
        if needs.isdisjoint(s.words):
            continue
        for m in pattern.finditer(s.masked):
            if _keep_span(s, m.start(), m.end(), strength, m):
                found.append((m.start(), m.end(), strength))
    return found


def reference_leaks(s: Sentence, a: int, b: int, strength: str) -> bool:
    """Whether one found reference makes the sentence a leak (see the module docstring)."""
    if attributed(s, a, b):
        return True
    if strength == "provenance":
        # "The scraped label reads ...": its own noun is no carrier in the picture; a
        # screen showing scraped data is.
        return not content.carrier_displays(s.words - words(s.masked[a:b]))
    if strength == "named":  # "the alt-text is poorly written": an input all the same
        return not content.carrier_displays(s.words)
    if strength in ("ordinal", "pronoun"):
        return not s.displays_text
    if strength == "abbrev":
        # Cited in brackets, as a source: "a crystal chandelier (S2)".
        return bool(_BRACKETED.match(s.masked[max(0, a - 1) : b + 1]))
    return strength in ("figure3", "info")


_BRACKETED = re.compile(r"[(\[]S[1-4][)\]]")


# Every reference pattern above needs one of these words.
REFERENCE_WORDS = (
    frozenset(
        """sentence sentences alt alternative alternate keyword keywords caption captions
    description descriptions text texts input inputs wording model models ai assistant
    system captioner llm vlm knowledge pieces source sources information details context
    facts data version versions account accounts prompt instruction instructions task
    request user original former latter one ground metadata hashtag hashtags filename file
    vlm bot machine outputs output cogvlm llava blip chatgpt capsfusion representation tags
    gpt described referred characterized characterised mentioned portrayed depicted passage
    snippet image photo picture line lines statement phrase clause entry info above said
    stated noted indicated specified claimed reported suggested implied first second other
    pair pairs statements phrases clauses entries passages snippets blip2 gpt4 gpt3 gpt4o
    page webpage site website post listing listings product title metadata detector tagger
    classifier algorithm network captioners tagger taggers response responses draft drafts
    previous""".split()
    )
    | INPUT_NAME_WORDS
)
