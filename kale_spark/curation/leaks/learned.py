"""A learned leak-sentence classifier: logistic regression over hashed features of one
sentence, scored in pure Python (no numpy, no sklearn at inference).

Features (:func:`features`) are read from the sentence with quoted text masked, like
the rules see it: lowercased word unigrams and bigrams, the first word and the first
two, suffix-free stems of long words (so "captioning" shares weight with "caption"),
and flags for quotes and for text the image shows (a carrier or a text verb named).
Each feature string is hashed with CRC-32 into ``2**bits`` buckets; the score is the
bias plus the sum of the buckets' weights, squashed by the logistic function. The step
judges only a sentence with a cue of talk about the texts or the task (:func:`has_cue`).

The weights are a small binary file (``learned_leaks.bin``: a JSON header line, then
float32 weights) trained by ``bench/train_leak_model.py``. It is read on first use,
never at import, so ``import kale_spark.curation`` stays as fast as the rules alone.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

from kale_spark.curation.leaks import content
from kale_spark.curation.leaks.base import Rule, Sentence

__all__ = [
    "DEFAULT_BITS",
    "WEIGHTS_PATH",
    "CUE_WORDS",
    "LearnedLeak",
    "LeakModel",
    "has_cue",
    "feature_ids",
    "introduces_text",
    "features",
    "load",
    "shipped",
]

WEIGHTS_PATH = Path(__file__).with_name("learned_leaks.bin")
DEFAULT_BITS = 15
# Bumped whenever :func:`features` changes: weights of another version are refused.
FEATURES_VERSION = 1

_TOKEN = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
_SUFFIX = re.compile(r"(?:ing|ings|ed|es|s|ion|ions|ive|ly|er|ers|ment|ments)$")


# The precision gate: the classifier judges only a sentence that carries a cue of talk
# about the texts or the task; any other sentence is kept whatever it scores (plain short
# caption sentences score high, the dev splits being mostly leaks). A closed vocabulary by
# kind, read from the words outside quotes, with their inflections.
CUES: dict[str, frozenset[str]] = {
    # Names of the inputs and outputs of the fusion task.
    "inputs": frozenset(
        "caption captions captioned captioning description descriptions text texts alt "
        "source sources input inputs snippet snippets metadata prompt prompts instruction "
        "instructions version versions output outputs sentence sentences keyword keywords "
        "task".split()
    ),
    # First and second person outside quotes, and the user: the writer or the user talking.
    "persons": frozenset("i me my we our us you your user".split()),
    # Verbs of talk about a text or of editing one.
    "meta_verbs": frozenset(
        "mention mentions mentioned mentioning state states stated stating note notes noted "
        "noting indicate indicates indicated indicating describe describes described "
        "describing say says said saying merge merges merged merging fuse fuses fused fusing "
        "combine combines combined combining keep keeps kept keeping omit omits omitted "
        "omitting include includes included including rewrite rewrites rewrote rewritten "
        "rewriting".split()
    ),
    # Hedges about what the inputs leave open.
    "hedges": frozenset("unclear unspecified ambiguous uncertain unsure unknown".split()),
}
CUE_WORDS: frozenset[str] = frozenset().union(*CUES.values())
# Cues of two words: facts named as given ("the details provided", "the supplied info"),
# or left out ("not specified").
_CUE_PHRASE = re.compile(
    r"\b(?:information|info|details?)\s+(?:provided|given|supplied)\b"
    r"|\b(?:provided|given|supplied)\s+(?:information|info|details?)\b"
    r"|\bnot\s+(?:specified|clear|provided|given|stated|mentioned)\b",
    re.IGNORECASE,
)
_PHRASE_WORDS = frozenset("information info details detail not".split())


def has_cue(view: Sentence) -> bool:
    """``view`` (quotes masked) carries a cue of talk about the texts or the task."""
    if not CUE_WORDS.isdisjoint(view.words):
        return True
    return not _PHRASE_WORDS.isdisjoint(view.words) and bool(_CUE_PHRASE.search(view.masked))


def features(sentence: str) -> list[str]:
    """The feature strings of one sentence (duplicates removed, in first-seen order)."""
    view = Sentence(sentence)
    return view_features(view.masked, view.masked != sentence, view.shows_text)


def view_features(masked: str, quoted: bool, shows_text: bool) -> list[str]:
    """:func:`features` from what a rule's :class:`Sentence` already holds."""
    tokens = _TOKEN.findall(masked.lower())
    out = ["bias:quoted"] if quoted else []
    if shows_text:
        out.append("bias:shows_text")
    if tokens:
        out.append("s:" + tokens[0])
        out.append("s2:" + " ".join(tokens[:2]))
    out.extend("w:" + t for t in tokens)
    out.extend("b:" + a + " " + b for a, b in zip(tokens, tokens[1:], strict=False))
    out.extend("m:" + _stem(t) for t in tokens if len(t) > 5)
    return list(dict.fromkeys(out))


@functools.lru_cache(maxsize=1 << 16)
def _stem(token: str) -> str:
    return _SUFFIX.sub("", token)


def feature_ids(sentence: str, bits: int = DEFAULT_BITS) -> list[int]:
    """The hashed buckets of :func:`features` (stable across runs and machines)."""
    return _hashed(features(sentence), bits)


def _hashed(names: list[str], bits: int) -> list[int]:
    mask = (1 << bits) - 1
    return [zlib.crc32(f.encode("utf-8")) & mask for f in names]


@dataclass(frozen=True)
class LeakModel:
    """Weights over ``2**bits`` hashed buckets, a bias, and the decision threshold the
    training script chose by cross-validation (``probability > threshold`` is a leak)."""

    weights: array
    bias: float
    threshold: float
    bits: int = DEFAULT_BITS
    meta: dict | None = None

    def probability(self, sentence: str | Sentence) -> float:
        """The probability that ``sentence`` (text, or a rule's view of it) leaks the prompt."""
        view = sentence if isinstance(sentence, Sentence) else Sentence(sentence)
        names = view_features(view.masked, view.masked != view.text, view.shows_text)
        w = self.weights
        # Each bucket once, as the trainer counts it (two features may share a bucket).
        z = self.bias + sum(w[i] for i in set(_hashed(names, self.bits)))
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def is_leak(self, sentence: str | Sentence) -> bool:
        return self.probability(sentence) > self.threshold

    def save(self, path: Path) -> None:
        """Write the header line (JSON) and the little-endian float32 weights."""
        header = {
            "bits": self.bits,
            "bias": self.bias,
            "threshold": self.threshold,
            "features_version": FEATURES_VERSION,
            "meta": self.meta or {},
        }
        weights = array("f", self.weights)
        if sys.byteorder != "little":
            weights.byteswap()
        data = json.dumps(header, sort_keys=True).encode("utf-8") + b"\n" + weights.tobytes()
        Path(path).write_bytes(data)


def load(path: Path | None = None) -> LeakModel:
    """Read a weights file written by :meth:`LeakModel.save`; by default the shipped one,
    read as package data (importlib.resources), so it loads where the package is imported
    from a zip too (spark-submit's --py-files), not only from a folder."""
    if path is None:
        from importlib.resources import files

        path = WEIGHTS_PATH
        data = files(__package__).joinpath(WEIGHTS_PATH.name).read_bytes()
    else:
        data = Path(path).read_bytes()
    head, _, body = data.partition(b"\n")
    header = json.loads(head)
    if header["features_version"] != FEATURES_VERSION:
        raise ValueError(
            f"{path}: features v{header['features_version']}, want v{FEATURES_VERSION}"
        )
    weights = array("f")
    weights.frombytes(body)
    if sys.byteorder != "little":
        weights.byteswap()
    if len(weights) != 1 << header["bits"]:
        raise ValueError(f"{path}: {len(weights)} weights for {header['bits']} bits")
    return LeakModel(
        weights, float(header["bias"]), float(header["threshold"]), header["bits"], header["meta"]
    )


def introduces_text(view: Sentence | None) -> bool:
    """``view`` names text the image shows, or a surface text sits on, and opens it with a
    colon, so the sentence after it is that text ("A recipe card lists the steps: 1. Mix
    the flour.")."""
    if view is None or ":" not in view.masked:
        return False
    return view.shows_text or not content.SURFACES.isdisjoint(view.words)


@functools.cache
def shipped() -> LeakModel:
    """The model shipped in the package, read once per process on first use."""
    return load()


class LearnedLeak(Rule):
    """Any kind of leak, in wording no hand rule names: the shipped classifier's
    probability is above its threshold. It judges only a sentence with a cue of talk
    about the texts or the task (:func:`has_cue`). Text the image shows is content here too: a
    sentence that names a carrier or a text verb is never judged by the classifier, and
    quoted text is masked before it reads the sentence. It runs after every hand rule,
    so it only sees sentences they keep."""

    name = "learned"
    kind = "learned"
    # A superset of the cues' words: a sentence with none of them has no cue.
    triggers = CUE_WORDS | _PHRASE_WORDS

    def __init__(self, model: LeakModel | None = None) -> None:
        self._model = model

    def matches(self, sentence: Sentence) -> bool:
        if sentence.shows_text or not has_cue(sentence):
            return False
        return (self._model or shipped()).is_leak(sentence)
