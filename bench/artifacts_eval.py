"""Sentence-level precision/recall of leaked-prompt detection on the labelled set.

Run by hand: ``python bench/artifacts_eval.py [--show-errors]``.

Each labelled sentence is embedded between two fixed, honest context sentences
and the whole caption is cleaned; the labelled sentence counts as removed when
it no longer appears intact in the cleaned text (so a stripped meta prefix counts
as a detection). Context sentences that get removed are reported separately.
The positive class is "leak". Methods: KALE's keyword rule, ``clean_caption``
without a prompt, and ``clean_caption`` given the fusion and dense prompt
templates of ``kale_spark.prompts``.
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
from kale_spark.prompts import DENSE_V1, FUSE_CAPSFUSION_V1  # noqa: E402

EVAL_PATH = ROOT / "tests" / "data" / "artifact_eval.jsonl"
CONTEXT_BEFORE = "The photo was taken on a clear afternoon."
CONTEXT_AFTER = "Soft shadows fall across the ground."
PROMPT_TEMPLATES = FUSE_CAPSFUSION_V1.template + "\n" + DENSE_V1.template


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


def load_eval(path: Path = EVAL_PATH) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def method_table() -> dict[str, Callable[[str], Cleaned]]:
    return {
        "keyword_baseline": keyword_baseline,
        "clean_caption": clean_caption,
        "clean_caption+prompt": lambda text: clean_caption(text, PROMPT_TEMPLATES),
    }


def detected(method: Callable[[str], Cleaned], sentence: str) -> tuple[bool, int]:
    """(labelled sentence removed?, number of context sentences removed)."""
    caption = f"{CONTEXT_BEFORE} {sentence} {CONTEXT_AFTER}"
    kept = method(caption).text
    context_lost = (CONTEXT_BEFORE not in kept) + (CONTEXT_AFTER not in kept)
    return sentence not in kept, context_lost


def score(method: Callable[[str], Cleaned], rows: list[dict]) -> tuple[Score, list[dict]]:
    tp = fp = fn = tn = ctx = 0
    errors = []
    for row in rows:
        hit, lost = detected(method, row["sentence"])
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
    parser.add_argument("--show-errors", action="store_true", help="list misclassified rows")
    parser.add_argument("--split", choices=("dev", "holdout", "all"), default=None)
    args = parser.parse_args(argv)

    rows = load_eval()
    splits = {
        "dev": [r for r in rows if r.get("split", "dev") == "dev"],
        "holdout": [r for r in rows if r.get("split") == "holdout"],
        "all": rows,
    }
    header = (
        f"{'method':<22} {'split':<8} {'n':>4} {'leaks':>5} {'TP':>4} {'FP':>4} {'FN':>4} "
        f"{'prec':>6} {'recall':>6} {'F1':>6} {'ctx_rm':>6}"
    )
    print(header)
    print("-" * len(header))
    all_errors: dict[str, list[dict]] = {}
    for name, method in method_table().items():
        for split, subset in splits.items():
            s, errors = score(method, subset)
            if split == (args.split or "all"):
                all_errors[name] = errors
            print(
                f"{name:<22} {split:<8} {len(subset):>4} {s.tp + s.fn:>5} {s.tp:>4} {s.fp:>4} "
                f"{s.fn:>4} {s.precision:>6.3f} {s.recall:>6.3f} {s.f1:>6.3f} "
                f"{s.context_removed:>6}"
            )
    if args.show_errors:
        for name, errors in all_errors.items():
            print(f"\n{name}: {len(errors)} errors ({args.split or 'all'})")
            for row in errors:
                kind = "FN" if row["leak"] else "FP"
                print(f"  {kind} [{row.get('split', 'dev')}] {row['sentence']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
