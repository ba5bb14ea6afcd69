"""Small helpers the rule modules build their vocabulary with."""

from __future__ import annotations

import re

__all__ = ["alternation", "verb_forms"]


def verb_forms(*verbs: str) -> str:
    """A regex alternation of each verb's base, -s/-es, -ed/-d forms ("note" -> note,
    notes, noted; "identify" -> identify, identifies, identified). Irregular forms are
    listed by the caller as separate words."""
    forms: set[str] = set()
    for v in verbs:
        forms.add(v)
        if v.endswith("y") and v[-2:-1] not in "aeiou":
            forms.update({v[:-1] + "ies", v[:-1] + "ied"})
        elif v.endswith("e"):
            forms.update({v + "s", v + "d"})
        elif v.endswith(("s", "sh", "ch", "x", "z")):
            forms.update({v + "es", v + "ed"})
        else:
            forms.update({v + "s", v + "ed"})
    return alternation(forms)


def alternation(words) -> str:
    """Longest first, so a regex alternation prefers "notes" over "note"."""
    return "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))
