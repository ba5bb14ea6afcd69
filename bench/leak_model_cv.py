"""Leave-one-author-out test of the learned leak classifier beside the hand rules.

For each held-out split of an independent author (dev_v7, dev_holdout_v4, dev_v6, dev_v3,
dev_v5, dev_v4) the
classifier is trained on every other dev split, never on the held-out one and never on
the holdout, and scored on the held-out split three ways, each sentence embedded
between the two honest context sentences of ``artifacts_eval.py``:

- ``rules``: ``clean_caption`` with the row's prompt, as ``artifacts_eval.py`` scores it;
- ``rules+clf``: also removed when a sentence the rules keep, that names no text the
  image shows (the rules' guard: a sign, screen, cover, a text verb) has classifier
  probability above ``t_b`` (quoted text is masked before the classifier reads it);
- ``clf``: the classifier alone (probability above ``t_c`` on any piece of the sentence).

Thresholds are chosen by cross-validation inside the training splits only: each
training split is scored by a model trained on the other training splits, and the
threshold is the lowest on the grid whose pooled out-of-fold precision is at least
:data:`TARGET_PRECISION` (the highest recall at that precision). For ``rules+clf`` that
is the precision of what the learned step adds to the rules (the sentences they keep),
not of rules and step together: the rules' many hits would hide the step's mistakes.

``--rules-before`` also scores ``rules``/``rules+clf`` with the rule code as it was when
each held-out split was added (its parent commit, read with ``git archive``): today's
rules were tuned on dev_v3, dev_v4 and dev_v5, so only the earlier rules saw those
authors' wording as the rules of a new author would. Run by hand::

    python bench/leak_model_cv.py                       # table
    python bench/leak_model_cv.py --rules-before --speed --record  # + figures/leak_model_cv.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from array import array
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from artifacts_eval import (  # noqa: E402
    CONTEXT_AFTER,
    CONTEXT_BEFORE,
    DEV_SETS,
    Score,
    load_rows,
    row_prompt,
    speed_captions,
)
from artifacts_eval import score as score_rows  # noqa: E402
from train_leak_model import LEAK_SHARE, fit, probabilities  # noqa: E402

from kale_spark.curation import clean_caption, split_sentences  # noqa: E402
from kale_spark.curation.leaks import CHECKS, RULES, Sentence  # noqa: E402
from kale_spark.curation.leaks.learned import (  # noqa: E402
    DEFAULT_BITS,
    LeakModel,
    LearnedLeak,
    has_cue,
    shipped,
)
from kale_spark.prompts import FUSE_CAPSFUSION_V1  # noqa: E402

PROMPT = FUSE_CAPSFUSION_V1.template
HELD_OUT = ("dev_v7", "dev_holdout_v4", "dev_v6", "dev_v3", "dev_v5", "dev_v4")
# The commit that added each held-out split: its parent holds the rules it first met.
ADDED_BY = {
    "dev_v7": "9068d00",
    "dev_holdout_v4": "e4d6525",
    "dev_v6": "e4d6525",  # added with holdout v4 in one recovered commit
    "dev_v3": "d87c5e3",
    "dev_v5": "f771ef3",
    "dev_v4": "aa50423",
}
TARGET_PRECISION = 0.99
GRID = np.round(np.arange(0.30, 0.995, 0.01), 2)
FIGURES = ROOT / "bench" / "figures" / "leak_model_cv.json"
PLAIN = ROOT / "bench" / "data" / "plain_caption_sentences.txt"
# An independent probe of plain honest caption sentences: a precision check only (never
# trained on, never used to choose a threshold).
PROBE = ROOT / "tests" / "data" / "plain_caption_probe.jsonl"
# The leaks' share of the training loss (--leak-share; None: every sentence the same).
VARIANT: dict = {"leak_share": LEAK_SHARE}


@dataclass
class Rows:
    """One split's labelled rows and what the rules did to each (embedded in context)."""

    labels: np.ndarray  # leak?
    rules_hit: np.ndarray  # the rules removed (part of) the labelled sentence
    pieces: list[list[str]]  # pieces of the labelled sentence the rules kept, unguarded
    whole: list[list[str]]  # every piece of the labelled sentence (for the classifier alone)


def rules_outcome(rows: list[dict]) -> list[tuple[bool, str]]:
    """(labelled sentence removed?, kept text) under today's hand rules, per row."""
    out = []
    for row in rows:
        text = f"{CONTEXT_BEFORE} {row['sentence']} {CONTEXT_AFTER}"
        kept = clean_caption(text, row_prompt(row), rules=RULES).text
        out.append((row["sentence"] not in kept, kept))
    return out


def prepare(rows: list[dict], outcome: list[tuple[bool, str]]) -> Rows:
    pieces, whole = [], []
    for row, (hit, kept) in zip(rows, outcome, strict=True):
        own = [] if hit else [s for s in split_sentences(kept) if s in row["sentence"]]
        pieces.append([s for s in own if judged(Sentence(s))])
        whole.append(split_sentences(row["sentence"]))
    return Rows(
        labels=np.array([bool(r["leak"]) for r in rows]),
        rules_hit=np.array([h for h, _ in outcome]),
        pieces=pieces,
        whole=whole,
    )


def judged(view: Sentence) -> bool:
    """The learned step reads this piece (the guards of :class:`LearnedLeak`)."""
    return not view.shows_text and has_cue(view)


def max_prob(model: tuple[np.ndarray, float], groups: list[list[str]]) -> np.ndarray:
    """Per row, the highest classifier probability over its pieces (-1 when none)."""
    flat = [s for g in groups for s in g]
    probs = probabilities(model[0], model[1], flat, DEFAULT_BITS) if flat else np.array([])
    out, i = np.full(len(groups), -1.0), 0
    for j, g in enumerate(groups):
        if g:
            out[j] = probs[i : i + len(g)].max()
        i += len(g)
    return out


def train(names: list[str]) -> tuple[np.ndarray, float]:
    rows = [r for n in names for r in load_rows(DEV_SETS[n])]
    labels = [bool(r["leak"]) for r in rows]
    return fit([r["sentence"] for r in rows], labels, leak_share=VARIANT["leak_share"])


def score(labels: np.ndarray, hit: np.ndarray) -> Score:
    tp = int((hit & labels).sum())
    fp = int((hit & ~labels).sum())
    fn = int((~hit & labels).sum())
    return Score(tp, fp, fn, int(len(labels) - tp - fp - fn), 0)


def pick(labels: np.ndarray, base: np.ndarray, probs: np.ndarray) -> float:
    """The lowest grid threshold whose precision of ``base | probs > t`` reaches the target."""
    for t in GRID:
        if score(labels, base | (probs > t)).precision >= TARGET_PRECISION:
            return float(t)
    return float(GRID[-1])


def choose_thresholds(train_names: list[str], prepared: dict[str, Rows]) -> tuple[float, float]:
    """(t for rules+clf, t for clf alone) from out-of-fold scores over ``train_names``."""
    labels, hits, pb, pc = [], [], [], []
    for name in train_names:
        model = train([n for n in train_names if n != name])
        rows = prepared[name]
        labels.append(rows.labels)
        hits.append(rows.rules_hit)
        pb.append(max_prob(model, rows.pieces))
        pc.append(max_prob(model, rows.whole))
    y, h = np.concatenate(labels), np.concatenate(hits)
    none = np.zeros_like(h)
    # The step's own removals: judged on the sentences the rules keep.
    kept = ~h
    t_b = pick(y[kept], none[kept], np.concatenate(pb)[kept])
    return t_b, pick(y, none, np.concatenate(pc))


def choose_threshold(names: list[str]) -> float:
    """The rules+clf threshold for a model trained on ``names`` (train_leak_model.py)."""
    prepared = {
        n: prepare(load_rows(DEV_SETS[n]), rules_outcome(load_rows(DEV_SETS[n]))) for n in names
    }
    return choose_thresholds(names, prepared)[0]


_OLD_RULES = """
import json, sys
from kale_spark.curation import clean_caption
from kale_spark.prompts import FUSE_CAPSFUSION_V1, get_prompt
before, after = sys.argv[1], sys.argv[2]
out = []
for row in json.load(sys.stdin):
    try:
        prompt = get_prompt(row.get("prompt_id") or FUSE_CAPSFUSION_V1.id).template
    except KeyError:
        prompt = None
    kept = clean_caption(f"{before} {row['sentence']} {after}", prompt).text
    out.append([row["sentence"] not in kept, kept])
print(json.dumps(out))
"""


def rules_outcome_at(commit: str, rows: list[dict]) -> list[tuple[bool, str]]:
    """:func:`rules_outcome` with the rule code of ``commit`` (its kale_spark package)."""
    tar = subprocess.run(
        ["git", "archive", "--format=tar", commit, "kale_spark"], cwd=ROOT, capture_output=True
    )
    tar.check_returncode()
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=BytesIO(tar.stdout)) as tf:
            tf.extractall(tmp, filter="data")
        done = subprocess.run(
            [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {tmp!r})\n" + _OLD_RULES]
            + [CONTEXT_BEFORE, CONTEXT_AFTER],
            input=json.dumps(rows),
            capture_output=True,
            text=True,
            check=True,
        )
    return [(bool(h), k) for h, k in json.loads(done.stdout)]


def pipeline_score(model: tuple[np.ndarray, float] | None, t: float, rows: list[dict]) -> Score:
    """rules+clf (rules alone when ``model`` is None) through ``clean_caption`` itself, as
    the filter runs it (the learned step after the hand rules, its guards included),
    context sentences counted."""
    if model is None:
        checks = RULES
    else:
        checks = (*RULES, LearnedLeak(LeakModel(array("f", model[0].tolist()), model[1], t)))
    method = lambda text, row: clean_caption(text, row_prompt(row), checks)  # noqa: E731
    return score_rows(method, rows, keep_errors=False)[0]


def evaluate(held: str, prepared: dict[str, Rows], before: Rows | None, rows: list) -> dict:
    """Train on every dev split but ``held``, choose thresholds inside them, score ``held``."""
    train_names = [n for n in DEV_SETS if n != held]
    t_b, t_c = choose_thresholds(train_names, prepared)
    model = train(train_names)
    held_rows = prepared[held]
    none = np.zeros_like(held_rows.rules_hit)
    result = {
        "trained_on": train_names,
        "t_rules_clf": t_b,
        "t_clf": t_c,
        "rules": pipeline_score(None, 0.0, rows),
        "rules+clf": pipeline_score(model, t_b, rows),
        "clf": score(held_rows.labels, none | (max_prob(model, held_rows.whole) > t_c)),
    }
    if before is not None:
        # The rules of the time run in their own process: the learned step is added here.
        result["rules_before"] = score(before.labels, before.rules_hit)
        boost = max_prob(model, before.pieces) > t_b
        result["rules_before+clf"] = score(before.labels, before.rules_hit | boost)
    return result


def measure_speed(repeats: int = 9) -> dict:
    """CPU ms per caption of ``clean_caption`` with the hand rules alone and with the
    shipped learned step after them, interleaved repeat by repeat so both meet the same
    machine load (captions as ``artifacts_eval.py --speed`` builds them)."""
    out: dict = {"repeats": repeats, "clock": "process_time (CPU), one thread"}
    for name, honest_only in (("mixed", False), ("honest_only", True)):
        captions = speed_captions(honest_only)
        times: dict[str, list[float]] = {"rules": [], "rules+learned": []}
        clean_caption(captions[0], PROMPT)  # the weights are read here, outside the clock
        for _ in range(repeats):
            for label, checks in (("rules", RULES), ("rules+learned", CHECKS)):
                t0 = time.process_time()
                for text in captions:
                    clean_caption(text, PROMPT, checks)
                times[label].append((time.process_time() - t0) / len(captions) * 1000)
        # An upper bound that load noise cannot blur: the classifier on every sentence.
        sentences = [s for text in captions for s in split_sentences(text)]
        times["classifier_every_sentence"] = []
        for _ in range(repeats):
            t0 = time.process_time()
            for sentence in sentences:
                shipped().probability(sentence)
            times["classifier_every_sentence"].append(
                (time.process_time() - t0) / len(captions) * 1000
            )
        added = [b - a for a, b in zip(times["rules"], times["rules+learned"], strict=True)]
        out[name] = {
            "captions": len(captions),
            **{f"{k}_ms_median": round(statistics.median(v), 4) for k, v in times.items()},
            "added_ms_median": round(statistics.median(added), 4),
            "added_ms_min": round(min(added), 4),
            "added_ms_max": round(max(added), 4),
        }
    return out


def probe_sentences(path: Path) -> list[str]:
    """One sentence a line (.txt) or a JSON object a line with a ``sentence`` (.jsonl)."""
    lines = [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    if path.suffix == ".jsonl":
        return [json.loads(x)["sentence"] for x in lines]
    return lines


def plain_probe(path: Path, checks: tuple) -> dict:
    """Plain honest caption sentences, in none of the model's data: how many the rules and
    the rules + learned step (``checks``) remove, each embedded between the context
    sentences. A precision check only: nothing here is trained or tuned on it."""
    sentences = probe_sentences(path)
    out: dict = {"file": str(path.relative_to(ROOT)), "sentences": len(sentences)}
    for label, rules in (("rules", RULES), ("rules+learned", checks)):
        removed = []
        for s in sentences:
            kept = clean_caption(f"{CONTEXT_BEFORE} {s} {CONTEXT_AFTER}", PROMPT, rules).text
            if s not in kept:
                removed.append(s)
        out[label] = {"removed": len(removed), "sentences_removed": removed}
    return out


def candidate(prepared: dict[str, Rows]) -> tuple:
    """The checks the trainer would ship for this variant: the rules, then a model trained
    on every dev split with its threshold chosen by cross-validation inside them."""
    names = list(DEV_SETS)
    t = choose_thresholds(names, prepared)[0]
    weights, bias = train(names)
    return (*RULES, LearnedLeak(LeakModel(array("f", weights.tolist()), bias, t))), t


def print_table(results: dict[str, dict]) -> None:
    methods = [m for m in results[HELD_OUT[0]] if isinstance(results[HELD_OUT[0]][m], Score)]
    print(
        f"{'held out':<9} {'method':<17} {'n':>4} {'TP':>4} {'FP':>4} {'FN':>4} {'prec':>6} "
        f"{'recall':>6} {'ctx_rm':>6}  t"
    )
    for held, res in results.items():
        for m in methods:
            s = res[m]
            t = res["t_rules_clf"] if m.endswith("+clf") else res["t_clf"] if m == "clf" else ""
            # Context removals are counted on the clean_caption path only.
            ctx = s.context_removed if m in ("rules", "rules+clf") else "-"
            print(
                f"{held:<9} {m:<17} {s.tp + s.fp + s.fn + s.tn:>4} {s.tp:>4} {s.fp:>4} "
                f"{s.fn:>4} {s.precision:>6.3f} {s.recall:>6.3f} {ctx:>6}  {t}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules-before", action="store_true", help="also the rules of the time")
    parser.add_argument("--speed", action="store_true", help="added ms per caption")
    parser.add_argument("--record", action="store_true", help=f"write {FIGURES.relative_to(ROOT)}")
    parser.add_argument(
        "--leak-share", type=float, default=LEAK_SHARE, help="leaks' share of the loss; 0: none"
    )
    args = parser.parse_args(argv)
    VARIANT["leak_share"] = args.leak_share or None
    raw = {n: load_rows(path) for n, path in DEV_SETS.items()}
    prepared = {n: prepare(rows, rules_outcome(rows)) for n, rows in raw.items()}
    results = {}
    for held in HELD_OUT:
        before = None
        if args.rules_before:
            before = prepare(raw[held], rules_outcome_at(ADDED_BY[held] + "^", raw[held]))
        results[held] = evaluate(held, prepared, before, raw[held])
    print_table(results)
    checks, t_all = candidate(prepared)
    probes = {}
    for path in (PLAIN, PROBE):
        if path.exists():
            probe = probes[path.stem] = plain_probe(path, checks)
            print(
                f"{path.name}: {probe['sentences']} honest sentences; removed by rules "
                f"{probe['rules']['removed']}, by rules+learned (all dev, t={t_all}) "
                f"{probe['rules+learned']['removed']}"
            )
    speed = measure_speed() if args.speed else None
    if speed is not None:
        print(json.dumps(speed, sort_keys=True))
    if args.record:
        from bench.common import stamp

        out = {
            **stamp(["bench/leak_model_cv.py", *(argv if argv is not None else sys.argv[1:])]),
            "target_precision": TARGET_PRECISION,
            "leak_share": VARIANT["leak_share"],
            "gate": "learned.has_cue",
            "threshold_all_dev": t_all,
            "rules_before_commit": {h: ADDED_BY[h] + "^" for h in HELD_OUT},
            "held_out": {
                h: {k: (v.figures() if isinstance(v, Score) else v) for k, v in r.items()}
                for h, r in results.items()
            },
        }
        out["probes"] = probes
        if speed is not None:
            out["speed"] = speed
        FIGURES.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {FIGURES.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
