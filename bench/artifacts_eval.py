"""Sentence-level precision/recall of leaked-prompt detection, on dev and on the holdout.

Run by hand: ``python bench/artifacts_eval.py [--show-errors {dev,holdout}]``.

Two labelled sets (``tests/data``):

- ``artifact_eval.jsonl`` - **dev**: written with the first rules; the rules are tuned on it.
- ``artifact_holdout.jsonl`` - **holdout**: written from sources the rules never saw
  (KALE's Figure 3 leak pattern, CapsFusion-style fusion failures, paraphrases of
  CapsFusion's instruction, honest sentences with trigger words), frozen in its own
  commit before any rule change. The holdout figure is the headline.

Each labelled sentence is embedded between two fixed, honest context sentences
and the whole caption is cleaned; the labelled sentence counts as removed when
it no longer appears intact in the cleaned text (so a stripped meta prefix counts
as a detection). Context sentences that get removed are reported separately.
The positive class is "leak". Methods: KALE's keyword rule, ``clean_caption``
without a prompt, and ``clean_caption`` given the instruction actually sent for the
row (the template of its ``prompt_id``, default ``fuse_capsfusion_v1``), as the
filter stage runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kale_spark.artifacts import Cleaned, clean_caption, keyword_baseline  # noqa: E402
from kale_spark.prompts import FUSE_CAPSFUSION_V1, get_prompt  # noqa: E402

DATA = ROOT / "tests" / "data"
SETS = {"dev": DATA / "artifact_eval.jsonl", "holdout": DATA / "artifact_holdout.jsonl"}
CONTEXT_BEFORE = "The photo was taken on a clear afternoon."
CONTEXT_AFTER = "Soft shadows fall across the ground."

Method = Callable[[str, dict], Cleaned]


@dataclass(frozen=True)
class Score:
    tp: int
    fp: int
    fn: int
    tn: int
    context_removed: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def load_set(name: str) -> list[dict]:
    with SETS[name].open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def row_prompt(row: dict) -> str:
    """The instruction sent for the row: the template of its prompt id."""
    return get_prompt(row.get("prompt_id", FUSE_CAPSFUSION_V1.id)).template


def method_table() -> dict[str, Method]:
    return {
        "keyword_baseline": lambda text, row: keyword_baseline(text),
        "clean_caption": lambda text, row: clean_caption(text),
        "clean_caption+prompt": lambda text, row: clean_caption(text, row_prompt(row)),
    }


def detected(method: Method, row: dict) -> tuple[bool, int]:
    """(labelled sentence removed?, number of context sentences removed)."""
    sentence = row["sentence"]
    kept = method(f"{CONTEXT_BEFORE} {sentence} {CONTEXT_AFTER}", row).text
    context_lost = (CONTEXT_BEFORE not in kept) + (CONTEXT_AFTER not in kept)
    return sentence not in kept, context_lost


def score(method: Method, rows: list[dict]) -> tuple[Score, list[dict]]:
    tp = fp = fn = tn = ctx = 0
    errors = []
    for row in rows:
        hit, lost = detected(method, row)
        ctx += lost
        if row["leak"] and hit:
            tp += 1
        elif row["leak"]:
            fn += 1
            errors.append(row)
        elif hit:
            fp += 1
            errors.append(row)
        else:
            tn += 1
    return Score(tp, fp, fn, tn, ctx), errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-errors", choices=tuple(SETS), help="list misclassified rows")
    args = parser.parse_args(argv)

    header = (
        f"{'method':<22} {'set':<8} {'n':>4} {'leaks':>5} {'TP':>4} {'FP':>4} {'FN':>4} "
        f"{'prec':>6} {'recall':>6} {'F1':>6} {'ctx_rm':>6}"
    )
    print(header)
    print("-" * len(header))
    shown: dict[str, list[dict]] = {}
    for name, method in method_table().items():
        for set_name in SETS:
            rows = load_set(set_name)
            s, errors = score(method, rows)
            if set_name == args.show_errors:
                shown[name] = errors
            print(
                f"{name:<22} {set_name:<8} {len(rows):>4} {s.tp + s.fn:>5} {s.tp:>4} {s.fp:>4} "
                f"{s.fn:>4} {s.precision:>6.3f} {s.recall:>6.3f} {s.f1:>6.3f} "
                f"{s.context_removed:>6}"
            )
    for name, errors in shown.items():
        print(f"\n{name}: {len(errors)} errors ({args.show_errors})")
        for row in errors:
            kind = "FN" if row["leak"] else "FP"
            print(f"  {kind} {row['sentence']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
