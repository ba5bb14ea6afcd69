"""Leaked-prompt rules, one module per kind of leak (see :data:`base.KINDS`).

:data:`RULES` is the order in which a sentence is checked; the first rule that
matches names the reason it is removed. The header rule runs first and on its own
(it removes a leading label and lets the rest of the sentence be checked).

:data:`CHECKS` is :data:`RULES` and then :data:`LEARNED`, the learned classifier
(:mod:`.learned`): a detector of every kind rather than a kind of its own, so it runs
last, only on sentences every hand rule keeps, with the reason ``learned``.
"""

from __future__ import annotations

from kale_spark.curation.leaks.base import KINDS, Rule, Sentence
from kale_spark.curation.leaks.critiques import InputCritique
from kale_spark.curation.leaks.echoes import (
    Directive,
    Emphasis,
    InstructionOverlap,
    InstructionVocabulary,
    TemplateSlot,
)
from kale_spark.curation.leaks.headers import ChatMarkup, Header
from kale_spark.curation.leaks.hedges import AbsenceHedge, AgreementHedge
from kale_spark.curation.leaks.learned import LearnedLeak
from kale_spark.curation.leaks.meta_discourse import (
    AsDescribedAside,
    SelfAssessment,
    SelfReference,
    SourceTag,
    TextReference,
)
from kale_spark.curation.leaks.narration import (
    AssistantNarration,
    AssistantOffer,
    EditNarration,
    FirstPerson,
    ModelIdentity,
    NextStep,
    Question,
)
from kale_spark.curation.leaks.procedure import Justification, NumberedStep

__all__ = [
    "CHECKS",
    "HEADER",
    "KINDS",
    "LEARNED",
    "MARKUP",
    "RULES",
    "RULE_NAMES",
    "Rule",
    "Sentence",
]

HEADER = Header()
MARKUP = ChatMarkup()
RULES: tuple[Rule, ...] = (
    MARKUP,
    HEADER,
    TemplateSlot(),
    AssistantNarration(),
    AssistantOffer(),
    NextStep(),
    ModelIdentity(),
    FirstPerson(),
    Question(),
    InputCritique(),
    AgreementHedge(),
    AbsenceHedge(),
    Directive(),
    Emphasis(),
    SelfReference(),
    TextReference(),
    AsDescribedAside(),
    EditNarration(),
    NumberedStep(),
    Justification(),
    SelfAssessment(),
    SourceTag(),
    InstructionVocabulary(),
    InstructionOverlap(),
)
LEARNED = LearnedLeak()
CHECKS: tuple[Rule, ...] = (*RULES, LEARNED)
RULE_NAMES: tuple[str, ...] = tuple(r.name for r in CHECKS)
assert len(set(RULE_NAMES)) == len(RULE_NAMES), "rule names are reasons: keep them unique"
assert all(r.kind in KINDS for r in RULES)
