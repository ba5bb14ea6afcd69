"""Train the learned leak-sentence classifier (kale_spark/curation/leaks/learned.py).

Numpy logistic regression with an L2 penalty, full-batch Adam from zero weights (no
sampling, so the same splits give the same weights bit for bit), over the hashed
features of each labelled sentence of the named dev splits. The holdout is refused.

Run by hand::

    python bench/train_leak_model.py                    # all dev splits -> the shipped file
    python bench/train_leak_model.py --splits dev dev_v4 --out /tmp/w.bin --threshold 0.9

The threshold written with the weights is ``--threshold``, or by default the one
``bench/leak_model_cv.py`` chooses by cross-validation over the training splits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from artifacts_eval import DEV_SETS, load_rows  # noqa: E402

from kale_spark.curation.leaks.learned import (  # noqa: E402
    DEFAULT_BITS,
    WEIGHTS_PATH,
    LeakModel,
    feature_ids,
)

L2 = 1e-4
STEPS = 400
# The share of the loss the leaks carry: in real captions leaks are a small share of the
# sentences, while the dev splits are about 60% leaks (see docs/pipeline.md).
LEAK_SHARE = 0.2
LEARNING_RATE = 0.05
SEED = 0


def encode(sentences: list[str], bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(row index, bucket) pairs of every sentence's features, as flat arrays."""
    rows, cols = [], []
    for i, s in enumerate(sentences):
        ids = sorted(set(feature_ids(s, bits)))
        rows.extend([i] * len(ids))
        cols.extend(ids)
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def fit(
    sentences: list[str],
    labels: list[bool],
    bits: int = DEFAULT_BITS,
    l2: float = L2,
    steps: int = STEPS,
    leak_share: float | None = LEAK_SHARE,
) -> tuple[np.ndarray, float]:
    """(weights, bias) minimising the weighted mean log-loss + ``l2``/2 |w|^2, by
    full-batch Adam. Leaks weigh ``leak_share`` of the loss and honest sentences the
    rest (``None``: every sentence weighs the same)."""
    np.random.default_rng(SEED)  # nothing is sampled; kept so a future change stays seeded
    rows, cols = encode(sentences, bits)
    y = np.asarray(labels, dtype=np.float64)
    n, dim = len(y), 1 << bits
    sw = np.ones(n)
    if leak_share is not None:
        leaks = y.sum()
        sw = np.where(y > 0, leak_share * n / leaks, (1 - leak_share) * n / (n - leaks))
    theta = np.zeros(dim + 1)
    m, v = np.zeros_like(theta), np.zeros_like(theta)
    for t in range(1, steps + 1):
        z = theta[dim] + np.bincount(rows, weights=theta[cols], minlength=n)
        resid = (1.0 / (1.0 + np.exp(-z)) - y) * sw
        grad = np.empty_like(theta)
        grad[:dim] = np.bincount(cols, weights=resid[rows], minlength=dim) / n + l2 * theta[:dim]
        grad[dim] = resid.mean()
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        step = LEARNING_RATE * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        theta -= step
    return theta[:dim].astype(np.float32), float(theta[dim])


def probabilities(weights: np.ndarray, bias: float, sentences: list[str], bits: int) -> np.ndarray:
    rows, cols = encode(sentences, bits)
    z = bias + np.bincount(rows, weights=weights[cols].astype(np.float64), minlength=len(sentences))
    return 1.0 / (1.0 + np.exp(-z))


def split_rows(names: list[str]) -> list[dict]:
    for name in names:
        if name not in DEV_SETS:
            raise SystemExit(f"{name}: not a dev split (the holdout is never trained on)")
    return [r for name in names for r in load_rows(DEV_SETS[name])]


def train_model(
    names: list[str],
    threshold: float,
    bits: int = DEFAULT_BITS,
    leak_share: float | None = LEAK_SHARE,
) -> LeakModel:
    rows = split_rows(names)
    labels = [bool(r["leak"]) for r in rows]
    weights, bias = fit([r["sentence"] for r in rows], labels, bits, leak_share=leak_share)
    meta = {
        "trained_on": names,
        "sentences": len(rows),
        "l2": L2,
        "steps": STEPS,
        "leak_share": leak_share,
    }
    from array import array

    return LeakModel(array("f", weights.tolist()), bias, threshold, bits, meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", nargs="+", default=list(DEV_SETS), choices=tuple(DEV_SETS))
    parser.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--threshold", type=float, help="default: chosen by cross-validation")
    parser.add_argument(
        "--leak-share", type=float, default=LEAK_SHARE, help="leaks' share of the loss; 0: none"
    )
    args = parser.parse_args(argv)
    leak_share = args.leak_share or None
    threshold = args.threshold
    if threshold is None:
        from leak_model_cv import VARIANT, choose_threshold

        VARIANT["leak_share"] = leak_share
        threshold = choose_threshold(args.splits)
    model = train_model(args.splits, threshold, leak_share=leak_share)
    model.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, threshold {threshold:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
