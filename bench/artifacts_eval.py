"""Sentence-level precision/recall of leaked-prompt detection, and its speed.

Run by hand::

    python bench/artifacts_eval.py                     # dev splits only
    python bench/artifacts_eval.py --show-errors dev   # dev misses (dev splits only)
    python bench/artifacts_eval.py --holdout           # + holdout v5, aggregates only
    python bench/artifacts_eval.py --speed             # sentences/s and ms per caption
    python bench/artifacts_eval.py --holdout --speed --record   # bench/figures/artifacts.json

Labelled sets (``tests/data``):

- ``dev`` (``artifact_eval.jsonl``): written with the first rules; rules are tuned on it.
- ``dev_history`` (``artifact_holdout.jsonl``): the first holdout. Its misses were
  printed while rules changed, so it is dev history now, tuned on like dev.
- ``dev_kinds`` (``artifact_dev_kinds.jsonl``): written from the kinds' definitions,
  tuned on.
- ``dev_v2`` (``artifact_holdout_v2.jsonl``): the second holdout, scored 12 times as
  the headline while rules changed (its misses never printed); dev history since
  holdout v3 replaced it.
- ``dev_v4`` (``artifact_dev_v4.jsonl``): written by an author who never saw the
  rules, after holdout v3 had been scored; a dev split from the start (tuned on,
  misses printed), so rules fitted to holdout v3's kinds are checked on unseen text.
- ``dev_v5`` (``artifact_dev_v5.jsonl``): written by another author who never saw the
  rules, with kinds the earlier sets lack (fusion justifications, omission notes,
  sign-offs, self-assessments, numbered steps, source notes in brackets, markdown
  notes, reasoning about which input to trust). Scored once with the rules as they
  were (``clean_caption+prompt`` precision 0.993, recall 0.928), then tuned on.
- ``dev_v3`` (``artifact_holdout_v3.jsonl``): the third holdout, scored 7 times as the
  headline (its misses never printed) until holdout v4 replaced it; dev history since.
- ``dev_v6`` (``artifact_dev_v6.jsonl``): written by a third author who never saw the
  rules, for the long tail (oblique names for the inputs, leaks mid-sentence, in the
  passive, as questions). Scored once with the rules as they were, then tuned on.
- ``dev_holdout_v4`` (``artifact_holdout_v4.jsonl``): the fourth holdout, by a fourth
  author who never saw the rules, scored 3 times as the headline (its misses never
  printed) until holdout v5 replaced it; dev history since.
- ``dev_v7`` (``artifact_dev_v7.jsonl``): written by a sixth author who never saw the
  rules, for the long tail (hearsay, summaries, reported speech, questions, leaks with
  no keyword, drift from the image into the texts); scored with the rules as they were,
  a dev split from then on.
- ``holdout_v5`` (``artifact_holdout_v5.jsonl``): written by a fifth author who never saw
  the rules, the dev sets or the earlier holdouts, and committed before any rule change;
  the headline. This script prints its aggregates only (counts, precision, recall),
  never a sentence, and appends one line per scoring to
  ``bench/figures/artifacts_holdout_log.jsonl`` so the number of looks is on record.

Each labelled sentence is embedded between two fixed, honest context sentences and
the whole caption is cleaned; the labelled sentence counts as removed when it no
longer appears intact in the cleaned text (so a stripped header counts as a
detection). Context sentences that get removed are counted separately. The positive
class is "leak". Methods: KALE's keyword rule, ``clean_caption`` without a prompt, and
``clean_caption`` given the instruction sent for the row (the template of its
``prompt_id``, default ``fuse_capsfusion_v1``), as the filter stage runs it. With the learned step
(``filter.learned_leaks``, ``leaks.CHECKS``) too: in-sample on the dev splits, whose every
sentence trained it; ``bench/leak_model_cv.py`` holds each author out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kale_spark.curation import (  # noqa: E402
    Cleaned,
    clean_caption,
    keyword_baseline,
    split_sentences,
)
from kale_spark.curation.leaks import CHECKS  # noqa: E402
from kale_spark.prompts import FUSE_CAPSFUSION_V1, get_prompt  # noqa: E402

DATA = ROOT / "tests" / "data"
FIGURES = ROOT / "bench" / "figures" / "artifacts.json"
HOLDOUT_LOG = ROOT / "bench" / "figures" / "artifacts_holdout_log.jsonl"
RULES_DIR = ROOT / "kale_spark" / "curation"
DEV_SETS = {
    "dev": DATA / "artifact_eval.jsonl",
    "dev_history": DATA / "artifact_holdout.jsonl",
    "dev_kinds": DATA / "artifact_dev_kinds.jsonl",
    "dev_v2": DATA / "artifact_holdout_v2.jsonl",
    "dev_v4": DATA / "artifact_dev_v4.jsonl",
    "dev_v5": DATA / "artifact_dev_v5.jsonl",
    "dev_v3": DATA / "artifact_holdout_v3.jsonl",
    "dev_v6": DATA / "artifact_dev_v6.jsonl",
    "dev_holdout_v4": DATA / "artifact_holdout_v4.jsonl",
    "dev_v7": DATA / "artifact_dev_v7.jsonl",
}
HOLDOUT = "holdout_v5"
HOLDOUT_PATH = DATA / "artifact_holdout_v5.jsonl"
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

    def figures(self) -> dict:
        out = asdict(self)
        out.update(precision=round(self.precision, 4), recall=round(self.recall, 4))
        return out


def load_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def row_prompt(row: dict) -> str | None:
    """The instruction sent for the row: the template of its prompt id (None if unknown)."""
    try:
        return get_prompt(row.get("prompt_id") or FUSE_CAPSFUSION_V1.id).template
    except KeyError:
        return None


def method_table() -> dict[str, Method]:
    return {
        "keyword_baseline": lambda text, row: keyword_baseline(text),
        "clean_caption": lambda text, row: clean_caption(text),
        "clean_caption+prompt": lambda text, row: clean_caption(text, row_prompt(row)),
        # With the learned step (filter.learned_leaks). Its classifier was trained on every
        # dev split, so its dev figures are in-sample; bench/leak_model_cv.py holds one out.
        "clean_caption+prompt+learned": lambda text, row: clean_caption(
            text, row_prompt(row), CHECKS
        ),
    }


def detected(method: Method, row: dict) -> tuple[bool, int]:
    """(labelled sentence removed?, number of context sentences removed)."""
    sentence = row["sentence"]
    kept = method(f"{CONTEXT_BEFORE} {sentence} {CONTEXT_AFTER}", row).text
    context_lost = (CONTEXT_BEFORE not in kept) + (CONTEXT_AFTER not in kept)
    return sentence not in kept, context_lost


def score(method: Method, rows: list[dict], keep_errors: bool) -> tuple[Score, list[dict]]:
    """Counts of ``method`` on ``rows``; the misclassified rows only when ``keep_errors``."""
    tp = fp = fn = tn = ctx = 0
    errors = []
    for row in rows:
        hit, lost = detected(method, row)
        ctx += lost
        tp += hit and row["leak"]
        fp += hit and not row["leak"]
        fn += (not hit) and row["leak"]
        tn += (not hit) and not row["leak"]
        if keep_errors and hit != bool(row["leak"]):
            errors.append(row)
    return Score(tp, fp, fn, tn, ctx), errors


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "kale_spark", "bench/artifacts_eval.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def rules_digest() -> str:
    """A hash of the rule code, so a holdout scoring names the rules it scored."""
    h = hashlib.sha256()
    # The learned classifier's weights are rules too.
    for path in sorted(p for p in RULES_DIR.rglob("*") if p.suffix in (".py", ".bin")):
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def evaluate(holdout: bool, show_errors: str | None) -> dict[str, dict[str, Score]]:
    header = (
        f"{'method':<22} {'set':<12} {'n':>4} {'leaks':>5} {'TP':>4} {'FP':>4} {'FN':>4} "
        f"{'prec':>6} {'recall':>6} {'F1':>6} {'ctx_rm':>6}"
    )
    print(header)
    print("-" * len(header))
    sets = {name: load_rows(path) for name, path in DEV_SETS.items()}
    if holdout:
        sets[HOLDOUT] = load_rows(HOLDOUT_PATH)
    results: dict[str, dict[str, Score]] = {}
    shown: dict[str, list[dict]] = {}
    for name, method in method_table().items():
        for set_name, rows in sets.items():
            # Misses are kept for a dev split that was asked for, never for the holdout.
            keep = set_name == show_errors and set_name in DEV_SETS
            s, errors = score(method, rows, keep_errors=keep)
            results.setdefault(set_name, {})[name] = s
            if keep:
                shown[name] = errors
            print(
                f"{name:<22} {set_name:<12} {len(rows):>4} {s.tp + s.fn:>5} {s.tp:>4} {s.fp:>4} "
                f"{s.fn:>4} {s.precision:>6.3f} {s.recall:>6.3f} {s.f1:>6.3f} "
                f"{s.context_removed:>6}"
            )
    for name, errors in shown.items():
        print(f"\n{name}: {len(errors)} errors ({show_errors})")
        for row in errors:
            print(f"  {'FN' if row['leak'] else 'FP'} {row['sentence']}")
    return results


def speed_captions(honest_only: bool, n_sentences: int = 6) -> list[str]:
    """Caption-sized texts of six dev sentences each (about KALE's 67 words): leaks and
    honest mixed, or honest only (every rule runs on every sentence: the slow case)."""
    rows = [r for path in DEV_SETS.values() for r in load_rows(path)]
    if honest_only:
        rows = [r for r in rows if not r["leak"]]
    sentences = [r["sentence"] for r in rows]
    return [" ".join(sentences[i : i + n_sentences]) for i in range(0, len(rows), n_sentences)]


def _cpu_ms_per_caption(work: Callable[[], object], n: int, repeats: int) -> dict:
    """CPU time of this process (one thread, so one core) per caption: median, min, max of
    ``repeats`` runs. CPU time, not wall time: the machine is shared."""
    per = []
    for _ in range(repeats):
        t0 = time.process_time()
        work()
        per.append((time.process_time() - t0) / n * 1000)
    return {
        "ms_per_caption_median": round(statistics.median(per), 4),
        "ms_per_caption_min": round(min(per), 4),
        "ms_per_caption_max": round(max(per), 4),
    }


def measure_speed(repeats: int = 7) -> dict:
    """clean_caption alone, and the filter's whole pure batch function (clean, score,
    decide) without and with the learned leak step, per caption, in this one Python
    thread."""
    import os

    import pandas as pd

    from kale_spark.stages.filter import filter_batch

    prompt = FUSE_CAPSFUSION_V1.template
    out: dict = {"repeats": repeats, "threads": 1, "clock": "process_time (CPU)"}
    for name, honest_only in (("mixed", False), ("honest_only", True)):
        captions = speed_captions(honest_only)
        n_sent = sum(len(split_sentences(t)) for t in captions)
        frame = pd.DataFrame(
            {
                "uid": [str(i) for i in range(len(captions))],
                "stage": "stage1",
                "model": "m",
                "prompt_id": FUSE_CAPSFUSION_V1.id,
                "alt_text": "Vintage Leica M3 camera on a walnut desk, Berlin 1962",
                "dense_caption": "a camera on a wooden desk next to a window with soft light",
                "caption_raw": captions,
            }
        )
        clean = _cpu_ms_per_caption(
            lambda cs=captions: [clean_caption(t, prompt) for t in cs], len(captions), repeats
        )
        batch = _cpu_ms_per_caption(
            lambda f=frame: filter_batch(f, min_words=5), len(captions), repeats
        )
        # The same with the learned leak step on (filter.learned_leaks); the weights are
        # read before the clock.
        clean_caption(captions[0], prompt, CHECKS)
        learned = _cpu_ms_per_caption(
            lambda f=frame: filter_batch(f, min_words=5, learned=True), len(captions), repeats
        )
        out[name] = {
            "captions": len(captions),
            "sentences": n_sent,
            "words_per_caption": round(sum(len(t.split()) for t in captions) / len(captions), 1),
            "sentences_per_s_median": round(
                n_sent / len(captions) / clean["ms_per_caption_median"] * 1000
            ),
            "clean_caption": clean,
            "filter_batch": batch,
            "filter_batch_learned": learned,
        }
    out["load_average_1m"] = round(os.getloadavg()[0], 2)
    out["cpus"] = os.cpu_count()
    return out


def log_holdout_scoring(results: dict[str, dict[str, Score]], command: str) -> None:
    entry = {
        "at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git_commit(),
        "rules_digest": rules_digest(),
        "command": command,
        "holdout": HOLDOUT,
        "figures": {m: s.figures() for m, s in results[HOLDOUT].items()},
    }
    with HOLDOUT_LOG.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def record(results: dict[str, dict[str, Score]], speed: dict | None, command: str) -> None:
    log = HOLDOUT_LOG.read_text(encoding="utf-8").splitlines() if HOLDOUT_LOG.exists() else []
    looks = sum(1 for line in log if json.loads(line).get("holdout") == HOLDOUT)
    out = {
        "measured_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git_commit(),
        "rules_digest": rules_digest(),
        "command": command,
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "cores": os.cpu_count(),
        "holdout_scorings_logged": {HOLDOUT: looks},
        "splits": {
            name: {m: s.figures() for m, s in by_method.items()}
            for name, by_method in results.items()
        },
    }
    if speed is not None:
        out["speed"] = speed
    _keep_holdout_figures(out)
    FIGURES.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {FIGURES.relative_to(ROOT)}")


def _keep_holdout_figures(out: dict) -> None:
    """A record without ``--holdout`` (a speed run) keeps the recorded holdout figures
    when they are of the same rules (same digest), and the command that scored them:
    the figures are the rules', and no one looks at the holdout again for them."""
    if HOLDOUT in out["splits"] or not FIGURES.exists():
        return
    before = json.loads(FIGURES.read_text(encoding="utf-8"))
    if before.get("rules_digest") != out["rules_digest"] or HOLDOUT not in before["splits"]:
        return
    out["splits"][HOLDOUT] = before["splits"][HOLDOUT]
    out["holdout_scored_by"] = before.get("holdout_scored_by") or {
        key: before[key] for key in ("command", "commit", "measured_at")
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-errors", choices=tuple(DEV_SETS), help="list a dev split's misses")
    parser.add_argument("--holdout", action="store_true", help="also score holdout v5 (aggregates)")
    parser.add_argument("--speed", action="store_true", help="sentences/s and ms per caption")
    parser.add_argument("--record", action="store_true", help="write bench/figures/artifacts.json")
    args = parser.parse_args(argv)
    command = "python bench/artifacts_eval.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    results = evaluate(args.holdout, args.show_errors)
    if args.holdout:
        log_holdout_scoring(results, command.strip())
    speed = None
    if args.speed:
        speed = measure_speed()
        print(json.dumps(speed, sort_keys=True))
    if args.record:
        record(results, speed, command.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
