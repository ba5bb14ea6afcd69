"""Sentence splitting for captions (pure, no Spark).

:func:`split_sentences` returns exact substrings of its input, so a caption can be
rebuilt from the sentences a filter keeps.
"""

from __future__ import annotations

import re

__all__ = ["split_sentences"]


# Titles and other abbreviations that are followed by a name, never a sentence end.
_NEVER_END = frozenset(
    "mr mrs ms messrs dr prof rev hon gen col capt cpt lt sgt sen rep gov pres mt ft fr "
    "e.g i.e cf vs viz approx ca".split()
)
# Abbreviations that can end a sentence: an end only when a typical sentence
# opener follows ("Acme Inc. The logo ..." vs "Acme Inc. Headquarters").
_AMBIGUOUS_END = frozenset(
    "inc ltd corp co llc plc jr sr st ave blvd rd hwy dept univ est bros "
    "jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
# Abbreviations before a number: "No. 10", "Vol. 2", "Fig. 3", "p. 12".
_NUMBER_ABBREV = frozenset("no nos vol vols fig figs p pp ch sec art op ed".split())

_STARTERS = frozenset(
    """the a an this that these those it its it's there here in on at as by for from with to of
    behind above below beside near next under over inside outside along across around between
    he she they we i his her their our my you your one two three four five several some many
    both each every all another other overall additionally also however meanwhile while
    although though when where if because since after before during what which who notably
    finally together nearby beyond no not its this note""".split()
)

# An end mark, then closing quotes, brackets or markdown emphasis ("*Note: ...*").
_CANDIDATE = re.compile(r"(\.{2,}|…|[.!?]+)([\"'”’»)\]*]*)(\s+)")
_TOKEN_BEFORE = re.compile(r"[^\s\"“‘'(\[]+$")
_DOTTED_ACRONYM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")
_NEXT_WORD = re.compile(r"[\"“‘'(\[]*([\w'’-]+)")
_LIST_MARKER = re.compile(r"\d{1,2}\.")


def _quote_open(prefix: str) -> bool:
    """True when a double quote opened in ``prefix`` is still open at its end."""
    straight = prefix.count('"') % 2 == 1
    curly = prefix.count("“") > prefix.count("”")
    return straight or curly


# A single-quoted span: opened after a space or a bracket, closed before a space,
# punctuation or the end (an apostrophe, "Don't", neither opens nor closes one).
_SINGLE_QUOTED = re.compile(r"(?<![\w'’])['‘](?=\S).*?(?<=\S)['’](?=[\s.,;:!?)\]]|$)")


def _inside_single_quote(line: str, m: re.Match[str]) -> bool:
    """True when the candidate end ``m`` lies inside a single quotation that closes later
    ("a poster asks 'Need help? Just ask.' in large type")."""
    return any(q.start() < m.start(1) and q.end() > m.end(2) for q in _SINGLE_QUOTED.finditer(line))


# Lower-case abbreviations of four letters or more, which a lower-case word may follow.
_LOWER_ABBREV = frozenset(
    "approx incl excl esp govt dept misc temp mins secs hrs yrs pcs qty mfg assn intl natl "
    "univ corp blvd bros sept trans orig repr illus".split()
)
_PLAIN_WORD = re.compile(r"[a-z]{4,}")


def _lower_case_start(line: str, m: re.Match[str], start: int) -> bool:
    """A sentence the writer began in lower case ("... afternoon. sentence two is vague."):
    an end only after a single period closing a plain lower-case word, which no
    abbreviation looks like ("approx. five", "etc. are", "Inc. headquarters")."""
    if m.group(1) != "." or m.group(2):
        return False
    tok = _TOKEN_BEFORE.search(line[start : m.start(1)])
    if tok is None or not _PLAIN_WORD.fullmatch(tok.group(0)):
        return False
    return tok.group(0) not in _LOWER_ABBREV and tok.group(0) not in _AMBIGUOUS_END


def _is_boundary(line: str, m: re.Match[str], start: int) -> bool:
    after = line[m.end() :]
    if not after:
        return True
    nxt = after[0]
    if nxt in ",;:":
        return False
    if nxt.islower():
        return _lower_case_start(line, m, start)
    # Inside a quotation that closes later on the line: not an end.
    prefix = line[: m.end(2)]
    if line.count('"') % 2 == 0 and line.count("“") == line.count("”") and _quote_open(prefix):
        return False
    if ("'" in line or "‘" in line) and _inside_single_quote(line, m):
        return False
    punct = m.group(1)
    if punct != ".":
        return True
    tok_match = _TOKEN_BEFORE.search(line[start : m.start(1)])
    if tok_match is None:
        return True
    tok = tok_match.group(0)
    low = tok.lower()
    nw = _NEXT_WORD.match(after)
    next_word = nw.group(1) if nw else ""
    starter = next_word.lower() in _STARTERS
    if m.group(2):  # closing quote or bracket after the period: a real end
        return True
    if low in _NEVER_END:
        return False
    if low in _NUMBER_ABBREV:
        # "No. 10", "p. 12": a number follows; "cover art. Soft light" ends a sentence.
        return not next_word[:1].isdigit() and (starter or len(tok) > 2)
    if low == "etc":
        return True
    pos = start + tok_match.start()
    if len(tok) == 1 and tok.isalpha() and pos > start and line[pos - 1] in "'’":
        return True  # a possessive or contraction ("Levi's."), not an initial
    if len(tok) == 1 and tok.isalpha():
        # An initial: "J. R. R. Tolkien"; "Plan B. The ..." ends a sentence.
        if re.match(r"[A-Z]\.\s", after):
            return False
        return starter
    if low in _AMBIGUOUS_END or _DOTTED_ACRONYM.fullmatch(tok):
        return starter
    return True


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences; each is an exact (stripped) substring of ``text``.

    A line break always ends a sentence. Inside a line a sentence ends at ``.``,
    ``!``, ``?`` or an ellipsis (with any closing quotes or brackets) followed by
    whitespace and a word that does not start in lower case (or one that does, after a
    period that closes a plain lower-case word of four letters or more), except after titles
    (Mr., Dr., Prof., e.g., i.e., vs.), initials (J. R. R. Tolkien), numbered
    abbreviations (No. 10) and inside a quotation (double or single) that closes later. After
    ambiguous abbreviations (Inc., St., U.S., a.m.) a sentence ends only when a
    typical sentence opener ("The", "A", "In", "It", ...) follows. Decimals
    (3.5) and domains (example.com) never split because no space follows the dot, and a
    list number ("2. Check the date.") stays with the sentence it numbers.
    """
    sentences: list[str] = []
    for line in re.split(r"\r?\n|\r", text or ""):
        start = 0
        for m in _CANDIDATE.finditer(line):
            if m.end() >= len(line) or not _is_boundary(line, m, start):
                continue
            piece = line[start : m.end(2)].strip()
            if _LIST_MARKER.fullmatch(piece):
                continue  # "3. Pick the name": a list number opens the sentence after it
            if piece:
                sentences.append(piece)
            start = m.end()
        piece = line[start:].strip()
        if piece:
            sentences.append(piece)
    return sentences
