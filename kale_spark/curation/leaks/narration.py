"""Kind ``narration``: the writer talks about itself, to a user, or about its own
steps - first person ("I merged ...", "My analysis now turns to ..."), second person
("As you can see"), assistant chatter ("Sure!", "Hope this helps", "As an AI ..."),
announcing the next step ("Moving on to ...") and narrating its edits ("the name was
inferred from ...").

Pronouns inside quotes are masked; "my", "we" and "you" in a sentence about text
in the image (a mug that says my coffee, a board that tells you to order) are content.
A capitalised "I" after a capitalised word is a numeral (World War I).
"""

from __future__ import annotations

import re

from kale_spark.curation.leaks.base import Rule, Sentence
from kale_spark.curation.leaks.content import SURFACES
from kale_spark.curation.leaks.vocab import alternation

__all__ = [
    "AssistantNarration",
    "AssistantOffer",
    "EditNarration",
    "FirstPerson",
    "ModelIdentity",
    "NextStep",
    "Question",
]

_I = re.IGNORECASE

# Adjectives that make a model or a system a machine that writes, not a fashion model.
_MACHINE_KIND = (
    r"language|captioning|caption|vision|vision-language|text-only|text-based|multimodal|"
    r"automated|automatic|ai|machine|computer|neural|generative|image-captioning"
)
# The writer names what it is: "Speaking as an automated captioning system, ...",
# "The assistant has no direct view of the photograph" (behind :data:`_IDENTITY_WORDS`).
_IDENTITY = re.compile(
    r"\bthe\s+(?:ai|model|assistant|system|captioner)\s+(?:(?:cannot|can['’]t|could\s+not)\s+"
    r"(?:be\s+sure|see|tell|know|verify|confirm|determine|identify|view)|(?:is\s+not|isn['’]t)\s+"
    r"(?:sure|certain|able)|(?:does\s+not|doesn['’]t)\s+(?:know|see))\b|"
    r"\b(?:as|being)\s+an?\s+(?:\w+\s+)?model\s+(?:trained|built|designed|made|developed)\b"
    rf"|\b(?:as|being)\s+an?\s+(?:[\w-]+\s+){{0,2}}?(?:{_MACHINE_KIND})[\s-]+(?:model|system|"
    r"assistant|program|tool|captioner|network|ai)\b"
    r"|\bthe\s+(?:writer|author)\s+(?:here\s+|of\s+this\s+\w+\s+)?(?:is|was)\s+an?\s+(?:\w+\s+)?"
    r"(?:ai|assistant|model|machine|program|bot)\b"
    # The writer's signature, a model: "(Generated with Mistral-7B-Instruct.)"
    r"|^\W*(?:generated|written|produced|created|captioned)\s+(?:with|by|using)\s+(?:an?\s+)?"
    r"(?:mistral|llama|gpt|chatgpt|cogvlm|llava|qwen|gemma|claude|blip|vicuna|(?:language|vision|"
    r"ai)\s+model|ai\b)"
    r"|\b(?:the|this)\s+(?:assistant|model|ai|system|captioner)\s+(?:has|had)\s+no\s+"
    r"(?:\w+\s+)?(?:view|access|sight|way\s+to\s+see|eyes)\b",
    _I,
)


class ModelIdentity(Rule):
    """The writer says what it is: a model, a captioning system, an assistant without a
    view of the image ("Speaking as an automated captioning system, ...")."""

    name = "model_identity"
    kind = "narration"
    triggers = frozenset(
        "model system assistant program tool captioner network ai machine bot generated "
        "written produced created captioned".split()
    )

    def matches(self, s: Sentence) -> bool:
        return _IDENTITY.search(s.masked) is not None


# "I" followed by a verb or a contraction.
_I_CLAUSE = re.compile(r"(?<![\w'’.-])I(?:['’](?:m|ve|ll|d)\b|\s+(?=[a-z]))")
_PREV_WORD = re.compile(r"([A-Za-z][\w'’-]*)\W*$")
# First person plural and second person, case kept so "US" and "U.S." are not "us".
# A pronoun inside a hyphenated word is not one: "a thank-you card".
_PERSON = re.compile(
    r"(?<![-‐])\b(?:[Mm]y|[Mm]e|[Mm]yself|[Mm]ine|[Ww]e|[Ww]e['’](?:re|ve|ll|d)|[Oo]ur|[Oo]urselves|us|"
    r"[Yy]ou|[Yy]our|[Yy]ours|[Yy]ou['’](?:re|ve|ll|d)|[Ll]et['’]s|[Ll]et\s+us)\b(?![-‐])"
)
# Chatter that opens a sentence, and chatter anywhere (which, in a sentence about text
# in the image, may be that text: a sign saying "Please note: ...").
_OPENER = re.compile(
    r"^\W*(?:sure|certainly|of\s+course|okay|ok|absolutely|alright|gladly|happy\s+to\s+help|"
    r"no\s+problem|great\s+question|here\s+you\s+go|apologies|sorry|thank\s+you|thanks)\b"
    r"|^\W*(?:(?:everything|all(?:\s+of\s+this)?|the\s+text)\s+)?(?:below|above)\s+(?:is|are)\b|^\W*what\s+follows\b|^\W*the\s+following\s+(?:is|are|sentence|"
    r"caption|description|text)\b"
    r"|^\W*(?:presented|provided|given|shown|offered|included)\s+(?:here|below|above)\s+(?:is|are)\b"
    r"|\b(?:as|being)\s+(?:only\s+|just\s+|merely\s+|simply\s+)?an?\s+(?:ai|artificial\s+intelligence|(?:large\s+)?language\s+model|assistant|"
    r"llm|chatbot)\b"
    r"|\bas\s+an?\s+(?:\w+\s+)?(?:caption\s*writer|captioner|copywriter|annotator|describer)\b"
    r"|^\W*(?:best\s+regards|kind\s+regards|cheers|enjoy|good\s+luck|all\s+the\s+best|"
    r"thanks\s+for\s+\w+ing|happy\s+(?:captioning|writing|editing|label+ing|annotating|tagging)|"
    r"have\s+an?\s+(?:great|good|nice|wonderful|lovely)\s+(?:day|one|evening|weekend)|take\s+care)\b|"
    # A sign-off closing the answer: "That's all for this one — cheers!"
    r"\bthat['’]s\s+(?:all|it)\s+(?:for\s+(?:this\s+one|now|today|this\s+(?:image|photo|picture))|"
    r"from\s+me)\b|[—–-]\s*(?:cheers|best|thanks)\W*$|^\W*(?:well|so|alright|right|hmm+|um+|now)\s*,",
    _I,
)
# A question is put to a user (a sign's question is content: see the rule).
_QUESTION = re.compile(r"\?[\s\"'”’)]*$")
_CHATTER = re.compile(
    r"\bhope\s+(?:this|that|it)\b|\blet\s+me\b|\bfeel\s+free\b|\bplease\s+(?:note|let|see|be\s+aware|"
    r"bear\s+in\s+mind|keep\s+in\s+mind)\b"
    r"|\b(?:cannot|can['’]t|unable\s+to|without|not\s+able\s+to)\s+(?:access(?:ing)?|see(?:ing)?|"
    r"view(?:ing)?|look(?:ing)?\s+at)\s+(?:to\s+)?the\s+(?:actual\s+)?(?:image|photo|picture)\b"
    r"|\banything\s+else\b"
    r"|\b(?:not\s+much|nothing|little)\s+(?:more|else)\s+to\s+(?:say|add|describe|note|mention)\b"
    # The answer announced or closed: "The output follows.", "(End of caption)".
    r"|\b(?:caption|description|output|answer|response|result|version)s?\s+(?:\w+\s+)?"
    r"(?:follows|as\s+follows|to\s+follow|coming\s+up)(?=\s*(?:[.:!]|below\b|$))"
    r"|[(\[]\s*end\s+of\s+(?:the\s+)?(?:\w+\s+)?(?:caption|description|output|response|answer|"
    r"text)\s*[)\]]"
    r"|\bhere(?:['’]s|\s+is|\s+are)\s+(?:[\w'’-]+\s+){0,4}?(?:caption|description|sentence|"
    r"text|version|summary|rewrite|output|result|answer|response|attempt|look|breakdown|rundown|"
    r"overview|take|draft|revision)s?\b",
    _I,
)
# What a writer does to its subject matter, as a step of the text.
_WRITING_ACTS = (
    r"covered|described|discussed|examined|outlined|addressed|mentioned|noted|established|"
    r"introduced|considered|reviewed|looked\s+at|dealt\s+with|set\s+(?:out|up)\s+the\s+scene"
)
_WRITING_ACTS_ING = (
    r"describing|discussing|examining|covering|addressing|considering|reviewing|looking\s+at|"
    r"dealing\s+with|getting\s+into|detailing"
)
_NEXT_STEP = re.compile(
    r"^\W*(?:moving\s+on|turning\s+(?:now\s+|next\s+)?to|(?:next|now)\s+(?:up|comes?|for)\b|to\s+(?:begin|"
    r"start|sum\s+up|conclude)\b|(?:first(?:ly)?|next|now|finally|then|lastly),?\s+(?:i|we|"
    r"let['’]?s?)\b)"
    r"|\b(?:the|my|our)\s+(?:goal|aim|objective|task|job|intention|purpose)\s+(?:here\s+)?"
    r"(?:is|was)\s+(?:to\b|an?\s+(?:[\w'’-]+,?\s+){0,3}?(?:caption|description|sentence)s?\b)"
    r"|\b(?:analysis|attention|focus|discussion|description|caption|eye)\s+(?:now\s+|then\s+|"
    r"next\s+)?(?:turns?|shifts?|moves?)\s+(?:to|toward)",
    _I,
)
# A step of the writing done or to come, at the start of the sentence: "Having covered
# the setting, ...", "Before turning to ...", "What comes next is ...", "So much for ...".
_STEP_OPENING = re.compile(
    rf"\W*(?:having\s+(?:now\s+|already\s+)?(?:{_WRITING_ACTS})\b"
    rf"|(?:now\s+that|with)\s+(?:[\w'’-]+\s+){{1,4}}?(?:has\s+been\s+|have\s+been\s+)?"
    rf"(?:{_WRITING_ACTS})\s*,"
    r"|before\s+(?:turning|moving\s+on|going\s+on|getting)\s+to\b"
    rf"|before\s+(?:{_WRITING_ACTS_ING})\b"
    r"|what\s+(?:comes|follows)\s+(?:next|now|below)\b"
    r"|(?:shifting|turning|moving|redirecting)\s+(?:our\s+|the\s+)?(?:attention|focus)\b"
    r"|(?:to\s+(?:round\s+(?:things\s+|it\s+)?off|wrap\s+(?:things\s+|it\s+)?up|finish|close|"
    r"end)(?:\s+(?:the|this)\s+(?:description|caption|text|account))?|in\s+closing)\s*,"
    r"|next\s+on\s+the\s+list\b|(?:next|last|first)\s+in\s+line\b"
    r"|before\s+(?:closing|wrapping\s+up|finishing|ending|concluding|moving\s+on)\b"
    r"|(?:and\s+)?now\s+(?:on\s+)?to\s+(?:the|a|an|its|his|her|their)\b"
    r"|shifting\s+gears\b|(?:this|that)\s+(?:concludes|completes|covers|wraps\s+up|sums\s+up)\b"
    r"|so\s+much\s+for\b|onwards?\s+to\b|on\s+to\s+(?:the\s+)?(?:next|background|foreground|details?|people|"
    r"figures?|rest|left|right|sky|setting|second|other)\b|up\s+next\b|in\s+what\s+follows\b"
    r"|(?:finally|lastly|next|now|and|first|also),?\s+a\s+(?:quick\s+|brief\s+|final\s+|last\s+)?"
    r"(?:word|note|remark|comment)\s+(?:about|on)\b"
    # The writer's eye moving over the frame: "Moving to the right of the frame, ...".
    r"|(?:moving|turning|shifting|looking|panning)\s+(?:over\s+|across\s+)?(?:to|toward|towards)\s+"
    r"the\s+(?:left|right|background|foreground|top|bottom|cent(?:er|re)|middle)\b)",
    _I,
)
# ... and anywhere: the text as the one that moves on ("The account now moves to ...",
# "The description continues with ...", "The following part covers ...", "This brings
# the description to ...", "The next thing to describe ...", "a word about ...").
_STEP_ANYWHERE = re.compile(
    r"\b(?:analysis|attention|focus|discussion|description|caption|account|narrative|"
    r"commentary|overview|text)\s+(?:now\s+|then\s+|next\s+)?(?:turns?|shifts?|moves?|"
    r"proceeds?|passes|returns?|continues?|goes|comes)\s+(?:on\s+|\w+ward\s+|\w+wards\s+)?(?:to|toward|"
    r"from)\b"
    r"|\b(?:the|this)\s+(?:description|caption|text|account)\s+(?:\w+ly\s+|now\s+|then\s+|next\s+|"
    r"also\s+)?(?:touches|zooms|focuses|dwells|lingers|pans|centers|centres|concentrates|closes|"
    r"ends|wraps)\s+(?:in\s+)?(?:on|upon|with)\b"
    r"|\b(?:the|this)\s+(?:description|caption|text|account)\s+(?:\w+ly\s+|now\s+|then\s+|next\s+|"
    r"also\s+)?(?:covers|addresses|discusses)\b"
    r"|\b(?:description|caption|text|account)\s+(?:will|shall|is\s+going\s+to)\s+(?:now\s+|next\s+|"
    r"then\s+)?(?:cover|describe|turn|move|focus|look|address|discuss|detail)\b"
    r"|\b(?:description|caption|text|account)\s+(?:now\s+|then\s+)?(?:continues|begins|starts|"
    r"ends|closes|opens|concludes|proceeds|wraps\s+up)\s+(?:with|by|on)\b"
    r"|\bthe\s+(?:following|next|final|last|remaining|closing|opening)\s+(?:part|section|portion|"
    r"paragraph|sentences?|lines?)\s+(?:of\s+(?:this|the)\s+(?:caption|description|text)\s+)?"
    r"(?:covers?|describes?|focus(?:es)?|deals?|looks?|turns?|address(?:es)?|concerns?|"
    r"examines?|details?|is\s+about|moves?)\b"
    r"|\b(?:rest|remainder)\s+of\s+(?:this|the)\s+(?:caption|description|text|account)\b"
    r"|\b(?:is|as|comes\s+as)\s+the\s+next\s+step\b|\bthe\s+next\s+step\s+(?:is|was)\b"
    # A step of the writer's procedure as a to-do: "The first step is to compare ...".
    r"|\b(?:the\s+(?:first|second|third|final|last)\s+step|step\s+(?:one|two|three))\s+"
    r"(?:here\s+)?(?:is|was)\s+to\b"
    r"|\bbrings?\s+(?:the|this|our)\s+(?:description|caption|text|account)\s+to\b"
    r"|\bwhere\s+(?:the\s+)?(?:first|previous|last|earlier)\s+(?:part|section|sentence|paragraph)\s+"
    r"left\s+off\b"
    r"|\bleads?\s+(?:us\s+)?to\s+the\s+(?:next|second|final|last|other|remaining)\s+(?:part|half|"
    r"section|portion|detail|element)s?\b"
    r"|\b(?:next|last|first|final|other|remaining)\s+(?:thing|item|detail|element|point|aspect)s?\s+"
    r"to\s+(?:describe|mention|note|cover|address|discuss|consider|look\s+at)\b"
    r"|\ba\s+(?:quick\s+|brief\s+|final\s+|last\s+)?word\s+(?:about|on)\b",
    _I,
)


# Words one of which each pattern of _STEP_ANYWHERE needs (a cheap gate on the search).
_STEP_WORDS = frozenset(
    """turns turn shifts shift moves move proceeds proceed passes returns return continues
    continue goes comes touches zooms focuses dwells lingers pans centers centres
    concentrates closes ends wraps covers addresses discusses will shall going part section
    portion paragraph sentence sentences line lines rest remainder step brings bring left
    leads lead describe mention note cover address discuss consider look word opens begins
    starts concludes""".split()
)


class NextStep(Rule):
    """The writer announces or closes a step of its text ("Having covered the setting,
    the account now moves to ...", "The next thing to describe is ...")."""

    name = "next_step"
    kind = "narration"

    # No gate on the rule: the opening is one anchored match; the gate below spares the
    # search anywhere in the sentence.
    def matches(self, s: Sentence) -> bool:
        if _STEP_OPENING.match(s.masked):
            return True
        if _STEP_WORDS.isdisjoint(s.words):
            return False
        return _STEP_ANYWHERE.search(s.masked) is not None


class FirstPerson(Rule):
    """The writer says "I", "we", "my", "let's" or speaks to "you"."""

    name = "first_person"
    kind = "narration"

    def matches(self, s: Sentence) -> bool:
        masked = s.masked
        # A pronoun after a carrier or a verb of showing is the shown text's own:
        # "a card signed with the words I love you", "a board tells you to order".
        for m in _I_CLAUSE.finditer(masked):
            prev = _PREV_WORD.search(masked[: m.start()])
            numeral = prev is not None and prev.group(1)[0].isupper() and prev.start() > 0
            if not numeral and not s.introduced(m.start()):
                return True
        return any(not s.introduced(m.start()) for m in _PERSON.finditer(masked))


# The writer narrating its fusion step: "Combining these details, ...".
_FUSING = re.compile(
    r"^\W*(?:by\s+)?(?:combining|merging|integrating|fusing|blending|synthesi[sz]ing|"
    r"consolidating|putting\s+together|drawing\s+(?:on|from)|taking|weighing|reconciling|"
    r"trusting|favou?ring|prioriti[sz]ing|preferring|following|relying\s+on|deferring\s+to)\s+"
    r"(?:(?:these|the|both|all|this|those|that)\s+(?:\w+\s+)?(?:details|information|sentences|"
    r"captions|descriptions|sources|inputs|elements|facts|knowledge|texts|pieces|clues|accounts)|"
    r"(?:the|these|both|all)\s+two)\b"
    # A pronoun standing for the inputs, after a verb that only fuses texts: "Combining them".
    r"|^\W*(?:by\s+)?(?:combining|merging|fusing|blending|synthesi[sz]ing|consolidating|"
    r"reconciling)\s+(?:them|these|those|both)\b"
    r"|^\W*(?:putting|bringing|pulling)\s+(?:it|this|everything|them)\s+(?:all\s+)?together\b"
    # The inputs as one account: "Together, they describe a quiet harbor".
    r"|^\W*(?:together|taken\s+together|combined),?\s+(?:they|these|the\s+two|both)\s+(?:describe|"
    r"depict|say|suggest|indicate|paint|portray|mention|agree|tell)\b",
    _I,
)
# The writer closing its answer, as the whole sentence: "Done.", "End of caption.",
# "That's my final caption.", "(24 words)" ("The End." on a title card is content).
_CLOSING = re.compile(
    r"^\W*(?:(?:task|job|all)\s+(?:complete|completed|done|finished)|done|finished|"
    r"end\s+of\s+(?:the\s+)?(?:\w+\s+)?(?:caption|description|output|response|answer|text|task)|"
    r"-{2,}\s*end\s*-{2,}|\[\s*end\s*\]|that(?:['’]s|\s+is)\s+(?:the|my)\s+(?:final\s+)?(?:caption|description|"
    r"answer|response|output)|(?:word\s+count\s*:?\s*)?\d+\s+words?)\W*$",
    _I,
)


# Whether the answer serves the reader, or was written as asked, even after a verb that
# may also introduce shown text: "Do tell me whether this meets your needs", "Written in
# a single sentence, as asked".
_SERVES = re.compile(
    r"\b(?:meets?|suits?|fits?|serves?)\s+(?:your|the\s+user['’]s)\s+(?:needs|requirements|"
    r"expectations|purposes?)\b"
    r"|\bas\s+(?:requested|instructed|asked|directed|required)\b"
    # Another wording offered: "Or, more simply, ...".
    r"|^\W*(?:or|alternatively),?\s+(?:more\s+)?(?:simply|briefly|concisely|succinctly)\b",
    _I,
)


class AssistantNarration(Rule):
    """Assistant chatter, or the writer announcing or narrating its steps."""

    name = "assistant_narration"
    kind = "narration"
    triggers = frozenset(
        """together combined or alternatively simply briefly concisely succinctly sure
        certainly course okay ok absolutely alright gladly happy problem
        great here
        apologies sorry thank thanks hope let feel please requested instructed asked directed
        required comes come up for
        anything ai artificial language llm chatbot assistant below above following moving
        turning next now begin start sum conclude first firstly finally then lastly turns
        turn shifts shift moves move combining merging integrating fusing blending
        synthesizing synthesising consolidating putting drawing taking weighing reconciling
        trusting favoring favouring prioritizing prioritising preferring relying deferring
        toward what follows goal aim objective job intention purpose regards cheers enjoy
        luck best well so right hmm um cannot can unable without able captioner copywriter
        annotator describer writer much nothing little follows end
        presented provided given shown offered included bringing pulling task job all done
        finished complete completed end that word words everything cheers thanks aware bear
        keep meets meet suits suit fits fit serves serve follow coming look breakdown have take
        rundown overview take draft revision""".split()
    )

    def matches(self, s: Sentence) -> bool:
        masked = s.masked
        if _OPENER.search(masked) or _NEXT_STEP.search(masked) or _FUSING.search(masked):
            return True
        if _CLOSING.match(masked):
            return True
        if _SERVES.search(masked) and not s.shows_carrier:
            return True
        return any(not s.introduced(m.start()) for m in _CHATTER.finditer(masked))


class Question(Rule):
    """A question, which a caption never asks (a question on a sign is content)."""

    name = "question"
    kind = "narration"

    def matches(self, s: Sentence) -> bool:
        if "?" not in s.masked:
            return False
        m = _QUESTION.search(s.masked)
        return m is not None and not s.shows_text


# Verbs only a writer does to a text ("the grammar was corrected", "it was inferred").
_EDIT = re.compile(
    r"\b(?:has|have|had|was|were|is|are|been)\s+(?:\w+ly\s+)?(?:been\s+)?(?:rephrased|reworded|"
    r"restructured|concatenated|rewritten|paraphrased|corrected|fixed|inferred|omitted|left\s+out|"
    r"consolidated|reconciled|harmoni[sz]ed|supplemented|"
    r"verified|cross-checked|favou?red|incorporated|fused|merged|combined|woven|integrated|"
    r"turned\s+into\s+an?\s+(?:full|complete|proper|coherent)\s+sentence)\b",
    _I,
)
# Verbs a writer does to facts or to pieces of the inputs' wording: only when those are
# the subject ("the repeated descriptions were condensed", "the claim was removed").
# Taken or drawn needs its source ("the date was taken from ..."; a photo is "taken").
_FACTS_KEPT = re.compile(
    r"\b(?:names?|dates?|brands?|locations?|places?|details?|information|facts|knowledge|"
    r"titles?|wording|phrases?|context|years?|words?|descriptions?|claims?|mentions?|"
    r"keywords?|notices?|references?|repetitions?|hashtags?|credits?|urls?|text|adjectives|"
    r"adverbs|clauses|modifiers|qualifiers|filler|redundanc(?:y|ies)|overlaps?|duplicates|"
    r"(?:promotional|marketing|flowery|filler)\s+language)\b"
    r"[^.]*?\b(?:has|have|had|was|were|is|are)\s+(?:not\s+)?(?:\w+ly\s+)?(?:been\s+)?"
    r"(?:retained|kept|preserved|added|(?:taken|drawn|borrowed)\s+(?:from|out)|"
    r"carried\s+over|dropped|removed|reorgani[sz]ed|reordered|rearranged|condensed|"
    r"streamlined|integrated|combined|merged|moved|cut(?!\s+(?:into|in|from|through|out\s+of))|excluded|omitted|trimmed|deleted|"
    r"discarded|stripped|included|shortened|collapsed|ignored|disregarded|skipped)\b"
    # A change log without its auxiliary: "grammar fixed, redundant words removed".
    r"|\b(?:grammar|spelling|punctuation|wording|phrasing|words|keywords|details|repetitions?|"
    r"duplicates?|typos?)\s+(?:fixed|corrected|removed|dropped|cut|trimmed|merged|combined|"
    r"condensed|tidied|cleaned\s+up|simplified)(?=\s*(?:[,.;]|and\b|$))"
    # Things only a text has, changed: "the word order was adjusted".
    r"|\b(?:word\s+order|phrasing|wording|sentence\s+structure)\b[^.]*?\b(?:has|have|had|was|"
    r"were|is|are)\s+(?:\w+ly\s+)?(?:been\s+)?(?:changed|adjusted|simplified|shortened|"
    r"tightened|smoothed|clarified|improved|tweaked|altered)\b",
    _I,
)


_ONTO_THING = re.compile(
    r"\s+(?:to|on|onto|in|into|across|along|above|below|over|beneath)\s+(?:the|a|an|its|their)?\s*"
    rf"(?:[\w'’-]+\s+){{0,2}}?(?:{alternation(SURFACES)}|gold|silver|paint|ink|chalk|neon|"
    r"letters|marker|stone|wood|brass|bronze)\b",
    _I,
)


# Things, not texts, joined: "two strands of yarn are combined into one braid", "pieces
# are combined on the table". A text joined into a text is still an edit ("merged into
# one sentence").
_PHYSICAL_JOIN = re.compile(
    r"(?:(?<=combined)|(?<=merged)|(?<=fused)|(?<=woven))\s+(?:together\s+)?(?:into|on|onto|with|in|at|to\s+form)\s+"
    r"(?!(?:[\w'’-]+\s+){0,3}?(?:sentences?|captions?|descriptions?|texts?|versions?|lines?|"
    r"wording|outputs?|clauses?|phrases?)\b)",
    _I,
)


# What the writer did not add, claimed as fidelity: "No information was invented", "No
# assumptions were made about the location".
_NOTHING_ADDED = re.compile(
    r"^\W*no\s+(?:new\s+|additional\s+|extra\s+|outside\s+|further\s+)?(?:information|details?|"
    r"facts|assumptions|speculation|claims|guesses)\s+(?:was|were|has\s+been|have\s+been)\s+"
    r"(?:invented|made|added|introduced|fabricated|assumed|inferred|hallucinated|made\s+up)\b",
    _I,
)


class EditNarration(Rule):
    """The writer narrates what it did to the texts ("the grammar has been corrected",
    "the date was taken from ..."); a restored building is not edited text."""

    name = "edit_narration"
    kind = "narration"
    triggers = frozenset(
        """rephrased reworded restructured concatenated rewritten paraphrased corrected fixed
        inferred omitted left verified cross favored favoured incorporated fused merged
        combined woven integrated turned retained kept preserved added taken drawn borrowed
        carried dropped removed reorganized reorganised reordered rearranged condensed
        streamlined moved changed adjusted simplified shortened tightened smoothed clarified
        improved tweaked altered cut excluded trimmed deleted discarded stripped included
        collapsed tidied cleaned ignored disregarded skipped consolidated reconciled harmonized
        supplemented
        harmonised invented made introduced fabricated assumed hallucinated""".split()
    )

    def matches(self, s: Sentence) -> bool:
        if s.shows_carrier:
            return False
        if _NOTHING_ADDED.search(s.masked):
            return True
        if any(not _PHYSICAL_JOIN.match(s.masked, m.end()) for m in _EDIT.finditer(s.masked)):
            return True
        m = _FACTS_KEPT.search(s.masked)
        # "The name was added to the window in gold letters": put on a thing, not a text.
        return m is not None and _ONTO_THING.match(s.masked[m.end() :]) is None


# The reader's wish as the condition: "on request", "if desired", "should a shorter one
# be preferred", "just say the word".
_ON_WISH = re.compile(
    r"\b(?:on|upon)\s+(?:request|demand)\b|\bif\s+(?:so\s+)?(?:desired|preferred|wanted|needed|"
    r"necessary|required|helpful|useful)\b|\bif\s+(?:that|this)\s+(?:helps|works)\b"
    r"|^\W*should\s+(?:[\w'’-]+\s+){1,5}?(?:(?:be\s+)?(?:preferred|desired|needed|wanted|"
    r"required)|need|require)\b"
    r"|^\W*(?:just\s+)?say\s+(?:if|whether|so)\b"
    r"|\bif\s+(?:this|the)\s+(?:one|version|caption|description|wording)\s+(?:feels|seems|is|sounds|"
    r"reads)\s+too\b|^\W*should\s+(?:this|it|the\s+(?:caption|description|text))\s+be\s+too\b"
    r"|^\W*(?:please\s+)?(?:ask|request)\s+(?:for\s+)?(?:a|an|another)\s+(?:\w+\s+)?(?:version|variant|"
    r"rewrite|caption|translation)\b"
    r"|\b(?:edits?|changes|suggestions|feedback|revisions|tweaks|adjustments|requests)\b[^.]*\b(?:are|is)\s+"
    r"(?:always\s+|most\s+|very\s+)?welcome\b"
    r"|\bif\s+(?:a|an|the|another|any)\s+(?:\w+\s+)?(?:style|tone|length|version|wording|format|"
    r"focus|variant)\s+is\s+(?:needed|wanted|preferred|desired|required)\b"
    r"|\bsay\s+the\s+word\b|\b(?:just|simply)\s+ask\b|^\W*(?:happy|glad|more\s+than\s+happy)\s+to\b",
    _I,
)
# Another version or a further edit of the text offered: "a shorter version can be
# provided", "the caption can be adjusted", "a version without the names is available".
_TEXT_OBJ = (
    r"(?:caption|description|text|version|variant|alternative|rewrite|translation|option|"
    r"edit|change|revision|adjustment|detail)s?|wording|tone|this|it"
)
_OFFERED = re.compile(
    rf"\b(?:{_TEXT_OBJ})\s+(?:\w+\s+){{0,6}}?(?:can|could|will|would|may)\s+(?:also\s+|easily\s+|"
    r"gladly\s+|then\s+)*(?:be\s+)?(?:provided|adjusted|rewritten|added|made|shortened|expanded|"
    r"tweaked|revised|changed|translated|edited|modified|supplied|produced|tailored|condensed|"
    r"reworded|rephrased|follow|arranged|written|drafted|composed|offered|used|cut|adapted)\b"
    rf"|\b(?:version|variant|alternative|rewrite|translation|option)s?\b[^.]*?\b(?:is|are)\s+(?:also\s+)?"
    r"available\b|\b(?:version|variant|alternative|rewrite|translation|option)s?\s+(?:is|are)\s+"
    r"(?:easy|simple|possible|straightforward)\s+to\s+(?:produce|write|make|provide|create|"
    r"generate)\b|\b(?:phrasing|wording|version|variant|alternative|rewrite|option)s?\s+(?:is|are)\s+"
    r"(?:also\s+)?(?:possible|an\s+option)\b|\b(?:version|variant|alternative|rewrite|translation|option)s?\s+(?:also\s+)?"
    r"available\b",
    _I,
)


class AssistantOffer(Rule):
    """The writer offers the reader another version or further edits ("A shorter version
    can be provided on request", "Happy to tweak the wording")."""

    name = "assistant_offer"
    kind = "narration"
    triggers = frozenset(
        """request requests demand if should say ask happy glad can could will would may
        available option options easy simple possible straightforward written drafted
        composed offered welcome used cut too ask adapted""".split()
    )

    def matches(self, s: Sentence) -> bool:
        if s.shows_carrier:
            return False  # "Tours on request", says the sign
        return bool(_ON_WISH.search(s.masked) or _OFFERED.search(s.masked))
