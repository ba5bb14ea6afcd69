"""Caption throughput: `kale caption` against the engine alone, Ray Data and Daft.

    make bench    (the full sweep, for a quiet machine)
    .venv/bin/python bench/caption_throughput.py --images 1024 --repeats 3
    .venv/bin/python bench/caption_throughput.py --sizes 256,1024,4096 --repeats 3

The method (bench/RESULTS.md says it once for every bench):

- Inputs, the same for every contestant: N JPEGs at DataComp-like sizes (300 to 2000 px
  a side, photo-like content) and one saved model, built once into the workdir
  (models/tiny.py ``build_bench_vlm``: CLIP 224 px + Llama, random weights); greedy
  decoding with ``min_new_tokens = max_new_tokens``, so every contestant generates the
  same number of tokens per image.
- Every contestant gets every core (``--cores``): kale ``local[cores]`` (tasks x torch
  threads = cores), raw and naive torch threads = cores, Ray and Daft model instances x
  threads = cores.
- Whole commands on the clock, cold: each run is a fresh process, timed from its start
  to its exit with the output committed. kale: the ``kale caption`` command a user runs
  (JVM start included) on a lake whose ``images`` table was written beforehand; the
  others: their entry point script (bench/caption_contestants.py, interpreter start and
  imports included). The stage time kale prints is shown beside, labelled ``stage_s``.
- Contestants (bench/caption_contestants.py says what each runs): ``raw`` is this
  project's engine (prefetch, reduced-scale decode) in a plain Python loop, the best a
  user writes without Spark, so ``kale_over_raw`` is the cost of Spark; ``naive`` is a
  plain transformers loop, shown as a second row; ``ray`` and ``daft`` run the same
  Captioner per batch, as their docs say for CPU inference (an actor pool / class UDF).
- Tuning: each contestant's batch size (and Ray's and Daft's instances x threads) is
  swept first on ``--sweep-images`` images, one cold run per setting; every contestant
  is then measured at its best setting.
- ``--repeats`` rounds per size, the order of the contestants reversed every other
  round. A ratio is taken within each round (same machine state) and reported as the
  median with its min and max over the rounds; "kale >= X" holds only if the min does.
- ``--budget-min``: on a busy machine, a round (or a size) that would end past the
  budget is not started; the JSON says how many rounds each size got
  (``repeats_done``), which sizes were not run, and the load average of every run.

Prints one JSON object (the last line): per size, images/s per contestant and
``kale_over_raw``, ``kale_over_ray``, ``kale_over_daft`` (``kale_over_naive``) with
``_min`` and ``_max``; the top level repeats the largest size's. The same goes to
``bench/figures/caption-<device>.json`` with its provenance, and kale's images/s to
``bench/figures/<device>.json`` for ``kale plan``. Never run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    FIGURES_DIR,
    device_name,
    ensure_images,
    load_average,
    run_timed,
    spread,
    stamp,
    write_figures,
)

log = logging.getLogger("bench.caption")

CONTESTANTS = ("kale", "raw", "naive", "ray", "daft")
PEERS = ("raw", "ray", "daft", "naive")
# --model: the saved model every contestant loads (models/tiny.py builds both).
MODELS = {
    "bench": (
        "bench-vlm-v1",
        "build_bench_vlm",
        "bench-vlm (LLaVA-shaped, CLIP 224 px + Llama, random weights, float32)",
    ),
    "fast": (
        "bench-vlm-fast-v1",
        "build_bench_fast_vlm",
        "bench-vlm-fast (LLaVA-shaped, CLIP 224 px + Llama, 2+2 layers of 128, random "
        "weights, float32)",
    ),
}
PLAN_MIN_IMAGES = 1024  # the smallest run whose kale rate goes to <device>.json
CHILD = Path(__file__).resolve().parent / "caption_contestants.py"
STAGE_LINE = re.compile(r"\[caption\] (\w+) in ([\d.]+)s")
GENERATED = re.compile(r"\bgenerated=(\d+)")


@dataclass(frozen=True)
class Setting:
    name: str
    batch_size: int
    workers: int = 1  # ray/daft: model instances (threads each = cores / workers)


def settings_for(name: str, args: argparse.Namespace) -> list[Setting]:
    workers = args.workers if name in ("ray", "daft") else [1]
    batches = args.batch_sizes[:1] if name == "naive" else args.batch_sizes
    return [Setting(name, b, w) for b in batches for w in workers]


# ---------------------------------------------------------------- one cold run


def kale_yaml(args: argparse.Namespace, setting: Setting, lake: Path) -> Path:
    """The profile a user would write for this run (YAML is a superset of JSON)."""
    tokens = args.max_new_tokens
    profile = {
        "lake": {"root": str(lake)},
        "spark": {"master": f"local[{args.cores}]", "shuffle_partitions": args.cores},
        "models": {"torch_threads": 0},  # tasks x threads = cores
        "caption": {
            "id": str(args.model_dir),
            "prompt_id": "dense_v1",
            "device": "cpu",
            "dtype": "float32",
            "batch_size": setting.batch_size,
            "generation": {"max_new_tokens": tokens, "min_new_tokens": tokens},
        },
    }
    path = args.workdir / f"kale-b{setting.batch_size}.yaml"
    path.write_text(json.dumps(profile, indent=2) + "\n")
    return path


def command(args: argparse.Namespace, setting: Setting, images: int, out: Path) -> list[str]:
    if setting.name == "kale":
        kale = str(Path(sys.executable).parent / "kale")
        return [kale, "caption", "--config", str(kale_yaml(args, setting, out))]
    return [
        sys.executable, str(CHILD), setting.name,
        "--images", str(images),
        "--images-dir", str(args.images_dir),
        "--model-dir", str(args.model_dir),
        "--out", str(out),
        "--batch-size", str(setting.batch_size),
        "--new-tokens", str(args.max_new_tokens),
        "--cores", str(args.cores),
        "--workers", str(setting.workers),
    ]  # fmt: skip


def base_lake(args: argparse.Namespace, images: int) -> Path:
    """The lake holding only the `images` table, written once per size by Spark."""
    lake = args.workdir / f"lake-{images}"
    if not (lake / "images" / "_delta_log").is_dir():
        shutil.rmtree(lake, ignore_errors=True)
        cmd = command(args, Setting("lake", 8), images, lake)
        run_timed(cmd, args.timeout, cwd=args.workdir)
    return lake


def run_once(args: argparse.Namespace, setting: Setting, images: int) -> dict[str, Any]:
    """One cold run of ``setting`` on ``images`` images, whole command on the clock."""
    out = args.workdir / "out" / setting.name
    shutil.rmtree(out, ignore_errors=True)
    if setting.name == "kale":  # a fresh copy of the prepared lake: nothing captioned yet
        shutil.copytree(base_lake(args, images), out)
    cwd = args.workdir / "cwd"
    cwd.mkdir(exist_ok=True)
    wall, rss, stdout = run_timed(command(args, setting, images, out), args.timeout, cwd=cwd)
    result = {"seconds": round(wall, 3), "images_per_s": round(images / wall, 3)}
    result["peak_rss_mb"] = round(rss, 1)
    result["load_average_1m"] = load_average()
    result.update(check_output(setting.name, out, images, stdout))
    log.info("%-5s b=%-3d w=%d %4d images: %7.2f images/s (%.1f s, %.0f MB)", setting.name,
             setting.batch_size, setting.workers, images, images / wall, wall, rss)  # fmt: skip
    return result


def check_output(name: str, out: Path, images: int, stdout: str) -> dict[str, Any]:
    """Off the clock: every image has a caption in the committed output."""
    if name == "kale":
        match = STAGE_LINE.search(stdout)
        generated = GENERATED.search(stdout)
        if not match or match.group(1) != "ok" or not generated:
            raise RuntimeError(f"kale caption did not succeed:\n{stdout}")
        captions = int(generated.group(1))  # rows committed to dense_captions, per `runs`
        extra = {"stage_s": float(match.group(2))}
    else:
        captions = _rows(sorted(out.rglob("*.parquet")), "text")
        extra = {"inner_s": json.loads(stdout.strip().splitlines()[-1])["inner_s"]}
    if captions != images:
        raise RuntimeError(f"{name}: {captions} captions for {images} images in {out}")
    return extra


def _rows(files: list[Path], column: str) -> int:
    """Non-null values of ``column`` over Parquet files."""
    import pyarrow.parquet as pq

    total = 0
    for f in files:
        table = pq.read_table(f, columns=[column])
        total += table.num_rows - table.column(column).null_count
    return total


# ---------------------------------------------------------------- sweep, rounds, ratios


def sweep(args: argparse.Namespace, names: list[str]) -> tuple[dict[str, Setting], list[dict]]:
    """Each contestant's best setting, one cold run per setting on ``--sweep-images``:
    the layouts (instances x threads) at the first batch size, then the other batch
    sizes at the best layout. ``naive`` keeps the first batch size (it is the untuned
    loop, by definition)."""
    best: dict[str, Setting] = {}
    table: list[dict] = []
    rates: dict[Setting, float] = {}

    def run(settings: list[Setting]) -> None:
        for setting in settings:
            result = run_once(args, setting, args.sweep_images)
            rates[setting] = result["images_per_s"]
            table.append({**asdict(setting), "images": args.sweep_images, **result})

    def fastest(name: str) -> Setting:
        return max((s for s in rates if s.name == name), key=rates.__getitem__)

    first = args.batch_sizes[0]
    for name in names:
        settings = settings_for(name, args)
        if len(settings) == 1:
            best[name] = settings[0]
            continue
        run([s for s in settings if s.batch_size == first])
        workers = fastest(name).workers
        run([s for s in settings if s.workers == workers and s.batch_size != first])
        best[name] = fastest(name)
    return best, table


def fits(args: argparse.Namespace, images: int) -> bool:
    """Whether a round on ``images`` images ends before ``--budget-min`` runs out, judged
    from the last round (scaled by images: an overestimate, fixed costs do not grow)."""
    if args.last_round is None:
        return True
    seconds, last_images = args.last_round
    return time.monotonic() + seconds * max(1.0, images / last_images) <= args.deadline


def rounds(args: argparse.Namespace, best: dict[str, Setting], images: int) -> dict[str, list]:
    """``--repeats`` rounds on ``images`` images; the order reversed every other round.
    With ``--budget-min``, a round that would not end in the time left is not started
    (the first round of a size is the caller's call)."""
    names = list(best)
    runs: dict[str, list] = {name: [] for name in names}
    for r in range(args.repeats):
        if r and not fits(args, images):
            log.warning("%d images: round %d not started, past --budget-min", images, r + 1)
            break
        started = time.monotonic()
        for name in names if r % 2 == 0 else names[::-1]:
            runs[name].append(run_once(args, best[name], images))
        args.last_round = (time.monotonic() - started, images)
    return runs


def size_summary(runs: dict[str, list]) -> dict[str, Any]:
    """Images/s per contestant and kale over each peer, paired within a round."""
    out: dict[str, Any] = {}
    for name, results in runs.items():
        out[name] = spread([r["images_per_s"] for r in results])
        out[f"{name}_seconds"] = spread([r["seconds"] for r in results])
        out[f"{name}_peak_rss_mb"] = spread([r["peak_rss_mb"] for r in results], 1)
    if "kale" in runs:
        out["kale_stage_s"] = spread([r["stage_s"] for r in runs["kale"]])
        for peer in PEERS:
            if peer in runs:
                pairs = zip(runs["kale"], runs[peer], strict=True)
                s = spread([k["images_per_s"] / p["images_per_s"] for k, p in pairs])
                key = f"kale_over_{peer}"
                out.update({key: s["median"], f"{key}_min": s["min"], f"{key}_max": s["max"]})
    loads = [r["load_average_1m"] for rs in runs.values() for r in rs if r["load_average_1m"]]
    out["load_average_1m"] = spread(loads, 2) if loads else None
    out["runs"] = runs
    return out


# ---------------------------------------------------------------- the parent


def ensure_model(workdir: Path, model: str = "bench") -> Path:
    from kale_spark.models import tiny

    name, builder, _ = MODELS[model]
    model_dir = workdir / name
    if not (model_dir / "config.json").is_file():
        log.info("building the %s VLM into %s", model, model_dir)
        tmp = workdir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        getattr(tiny, builder)(tmp)
        tmp.rename(model_dir)
    return model_dir


def tuned_from(path: str) -> dict[str, Setting]:
    data = json.loads(Path(path).read_text())
    return {name: Setting(**s) for name, s in data["tuned"].items()}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    args.workdir = Path(args.workdir).resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.model_dir = ensure_model(args.workdir, args.model)
    args.images_dir = args.workdir / "images"
    ensure_images(args.images_dir, max(args.sizes + [args.sweep_images]))
    names = [n for n in CONTESTANTS if n in args.contestants]
    result: dict[str, Any] = {**stamp(), "bench": "caption_throughput"}
    if args.tuned:
        best, table = tuned_from(args.tuned), []
        result["tuned_from"] = args.tuned
    else:
        best, table = sweep(args, names)
    best = {n: best[n] for n in names}
    result["tuned"] = {n: asdict(s) for n, s in best.items()}
    result["sweep"] = table
    if args.sweep_only:
        result["sizes"] = {}
        write(args, result, FIGURES_DIR / f"caption-sweep-{device_name()}.json")
        return result
    result["sizes"] = {}
    args.deadline = time.monotonic() + (args.budget_min * 60 if args.budget_min else 1e9)
    args.last_round = None
    result["sizes_not_run"] = []
    for images in args.sizes:
        if not fits(args, images):
            log.warning("%d images: not run, a round would end past --budget-min", images)
            result["sizes_not_run"].append(images)
            continue
        summary = size_summary(rounds(args, best, images))
        summary["repeats_done"] = len(next(iter(summary["runs"].values())))
        result["sizes"][str(images)] = summary
        write(args, result)  # a size at a time: a run cut short keeps what it measured
    headline = result["sizes"][max(result["sizes"], key=int)]
    result.update({k: v for k, v in headline.items() if k.startswith("kale_over_")})
    result["load_average_1m_at_end"] = load_average()
    write(args, result)
    return result


def write(args: argparse.Namespace, result: dict[str, Any], path: Path | None = None) -> None:
    settings = {
        "max_new_tokens": args.max_new_tokens,
        "cores": args.cores,
        "repeats": args.repeats,
        "model": MODELS[args.model][2],
    }
    result.update(settings)
    if not args.figures:
        return
    path = path or (Path(args.out) if args.out else FIGURES_DIR / f"caption-{device_name()}.json")
    path.write_text(json.dumps(result, indent=2) + "\n")
    sizes = result["sizes"]
    largest = max(sizes, key=int) if sizes else "0"
    # kale plan scales this rate to millions of images: only a run long enough for the
    # start-up not to dominate it replaces the figure there.
    # Only the bench model's rate: `kale plan` labels its figure with that model.
    if int(largest) >= PLAN_MIN_IMAGES and "kale" in best_names(result) and args.model == "bench":
        write_figures(device_name(), "caption", {
            "images_per_s": sizes[largest]["kale"]["median"],
            "model": "bench-vlm (LLaVA-shaped, 224 px), float32",
            "label": "`kale caption` whole command with JVM start, tiny model",
            "images": int(largest),
            "batch_size": result["tuned"]["kale"]["batch_size"],
            **settings,
        })  # fmt: skip


def best_names(result: dict[str, Any]) -> list[str]:
    return list(result.get("tuned", {}))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, help="one size (default 1024)")
    parser.add_argument("--sizes", type=ints, help="sizes, e.g. 256,1024,4096")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=os.environ.get("KALE_BENCH_DIR", "bench/work"))
    parser.add_argument("--model", choices=sorted(MODELS), default="bench")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-sizes", type=ints, default=[4, 8, 16])
    parser.add_argument("--workers", type=ints, default=[1, 2], help="ray/daft layouts")
    parser.add_argument("--sweep-images", type=int, default=256)
    parser.add_argument("--sweep-only", action="store_true", help="write the sweep, stop")
    parser.add_argument("--tuned", help="take the best settings from this earlier JSON")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--contestants", default=",".join(CONTESTANTS))
    parser.add_argument("--no-figures", dest="figures", action="store_false")
    parser.add_argument("--out", help="figures JSON (default bench/figures/caption-<device>.json)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument(
        "--budget-min", type=float, help="start no round that would end past this many minutes"
    )
    args = parser.parse_args(argv)
    if args.images and args.sizes:
        parser.error("give --images or --sizes, not both")
    args.sizes = args.sizes or [args.images or 1024]
    args.contestants = args.contestants.split(",")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the running contestant's tree is killed too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    result = measure(args)
    printed = {k: v for k, v in result.items() if k not in ("sizes", "sweep")}
    printed["sizes"] = {
        size: {k: v for k, v in s.items() if k != "runs"} for size, s in result["sizes"].items()
    }
    print(json.dumps(printed))


if __name__ == "__main__":
    main()
