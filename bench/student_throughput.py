"""Student training throughput: the DataLoader with worker processes against inline
feeding, same model, same data, same cores.

    python bench/student_throughput.py [--rows 512] [--steps 60] [--batch-size 8]
                                       [--workers 1] [--repeats 3]

Both contestants run ``training.loop.train`` itself on the tiny student, over one
Parquet snapshot of photo-like JPEGs of the size the `images` table holds (490 px):

- inline: ``student.train.loader_workers=0``. Reading, JPEG decoding, CLIP preprocessing and
  tokenizing run on the training thread between steps, as the loop fed itself before
  the loader (the same reads and the same preprocessing code).
- loader: ``student.train.loader_workers=N`` processes prepare batches ahead
  (``student.train.loader_prefetch`` each) while the training thread runs the steps.

The loader runs with the torch threads train-student gives a rank
(``train_student.rank_threads``: the cores, less one per loader worker). Inline
feeding runs twice, with as many torch threads (``inline``) and with all the cores
(``inline_all_cores``, what rank_threads gives it), and the loader is compared with
the faster of the two in each repeat. The clock covers the whole ``train`` call
(model load, validation at the start and end, the checkpoint and the final save
included); ``steady`` is the clock from the 5th step to the last. The contestants
take turns within each repeat, in a rotating order. The last stdout line is one JSON
object with ``loader_over_inline`` (the median of the paired ratios, with min and
max); the same figures go to ``bench/figures/student-cpu.json`` with the machine,
cores, load average, date, commit and command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import FIGURES_DIR, REPO, photo_like  # noqa: E402

log = logging.getLogger("bench.student")

CAPTIONS = [
    "A red double-decker bus drives down a busy street in London past a row of shops.",
    "A golden retriever puppy lies on a green lawn in the afternoon sun next to a ball.",
    "The Eiffel Tower in Paris at sunset, with people walking along the river Seine.",
    "A white ceramic mug of coffee on a wooden table next to an open notebook and a pen.",
]


def _snapshot(root: Path, rows: int) -> str:
    import io

    from kale_spark.student.data import Example, write_snapshot

    def jpeg(i: int) -> bytes:
        size = (490, 368) if i % 2 else (368, 490)
        buf = io.BytesIO()
        photo_like(size, i).save(buf, format="JPEG", quality=88)
        return buf.getvalue()

    examples = [
        Example(f"{i:032x}", jpeg(i), f"photo {i} alt text", CAPTIONS[i % 4]) for i in range(rows)
    ]
    uri = (root / "snapshot").as_uri()
    write_snapshot(uri, {"train": examples, "val": examples[:8]}, 64, key="bench")
    return uri


def _run(args, base: Path, uri: str, workdir: Path, workers: int, threads: int) -> dict:
    from kale_spark.config import load_config
    from kale_spark.student.loop import TrainJob, train

    scfg = load_config(
        None,
        [
            f"student.train.batch_size={args.batch_size}",
            f"student.train.max_steps={args.steps}",
            f"student.train.eval_interval={args.steps}",
            f"student.train.checkpoint_interval={args.steps}",
            "student.train.max_val_batches=1",
            f"student.train.loader_workers={workers}",
            f"student.train.loader_prefetch={args.prefetch}",
        ],
    ).student
    run_dir = workdir / f"run-{workers}"
    shutil.rmtree(run_dir, ignore_errors=True)
    job = TrainJob(scfg, str(run_dir), str(base), uri, torch_threads=threads)
    stamps: list[float] = []
    start = time.perf_counter()
    train(job, on_step=lambda step, loss: stamps.append(time.perf_counter()))
    total = time.perf_counter() - start
    steady = (stamps[-1] - stamps[4]) / (len(stamps) - 5)
    return {
        "torch_threads": threads,
        "samples_per_s": round(args.steps * args.batch_size / total, 2),
        "steady_samples_per_s": round(args.batch_size / steady, 2),
        "seconds": round(total, 2),
    }


def _contestants(workers: int) -> dict[str, tuple[int, int]]:
    """name → (loader workers, torch threads)."""
    from kale_spark.config import load_config
    from kale_spark.stages.train_student import rank_threads

    cores = os.cpu_count() or 1
    scfg = load_config(None, [f"student.train.loader_workers={workers}"]).student
    threads = rank_threads(scfg.train, cores)
    return {"inline": (0, threads), "inline_all_cores": (0, cores), "loader": (workers, threads)}


def _summary(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="the loader's worker processes")
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(FIGURES_DIR / "student-cpu.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    from kale_spark.config import load_config
    from kale_spark.student.model import build_base

    load_before = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    workdir = Path(tempfile.mkdtemp(prefix="kale-student-bench-"))
    try:
        cache = workdir / "cache"
        base = build_base(load_config(None, []).student, cache / "base", cache_dir=cache)
        uri = _snapshot(workdir, args.rows)
        contestants = _contestants(args.workers)
        runs: dict[str, list[dict]] = {name: [] for name in contestants}
        names = list(contestants)
        for repeat in range(args.repeats):
            for name in names[repeat % 3 :] + names[: repeat % 3]:
                workers, threads = contestants[name]
                runs[name].append(_run(args, base, uri, workdir, workers, threads))
                print(f"repeat {repeat + 1} {name}: {runs[name][-1]}", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {**_result(args, runs), "load_average_1m": round(load_before, 2)}
    print(json.dumps(result, sort_keys=True), flush=True)
    _write(args, result)


def _result(args, runs: dict[str, list[dict]]) -> dict:
    def best_inline(i: int, key: str) -> float:
        return max(runs["inline"][i][key], runs["inline_all_cores"][i][key])

    n = len(runs["loader"])
    ratios = [
        runs["loader"][i]["samples_per_s"] / best_inline(i, "samples_per_s") for i in range(n)
    ]
    steady = [
        runs["loader"][i]["steady_samples_per_s"] / best_inline(i, "steady_samples_per_s")
        for i in range(n)
    ]
    return {
        "bench": "student_throughput",
        "model": "tiny student (CLIP 2 x 32 at 40 px + Qwen2 2 x 64, LLaVA projector)",
        "rows": args.rows,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "image_px": 490,
        "loader_workers": args.workers,
        "loader_prefetch": args.prefetch,
        "torch_threads": {k: v[0]["torch_threads"] for k, v in runs.items()},
        "repeats": args.repeats,
        **{
            f"{k}_samples_per_s": _summary([r["samples_per_s"] for r in v]) for k, v in runs.items()
        },
        "loader_over_inline": round(statistics.median(ratios), 3),
        "loader_over_inline_min": round(min(ratios), 3),
        "loader_over_inline_max": round(max(ratios), 3),
        "loader_over_inline_steady": _summary(steady),
        "runs": runs,
    }


def _write(args, result: dict) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        **result,
        "machine": f"{platform.node()} {platform.machine()} {platform.processor()}".strip(),
        "cores": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": _commit(),
        "command": " ".join(["python", *sys.argv]),
        "python": platform.python_version(),
    }
    out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
