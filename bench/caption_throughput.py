"""Caption throughput: kale's caption stage against the model alone, Ray Data and Daft.

    make bench    (= .venv/bin/python bench/caption_throughput.py)
    .venv/bin/python bench/caption_throughput.py [--images 256] [--workdir DIR]

Inputs, the same for every contestant: ``--images`` JPEGs at DataComp-like sizes
(300 to 2000 px a side, photo-like content) and a bench-sized LLaVA model
(models/tiny.py ``build_bench_vlm``: CLIP 224 px + Llama, random weights, saved
with its processor). Greedy decoding with ``min_new_tokens = max_new_tokens``, so
every contestant generates exactly the same number of tokens per image.

Contestants, each in its own child process, with the same cores (``--cores``):
- ``raw``: a plain PyTorch loop: read, decode, preprocess, batched ``generate``;
  torch threads = cores.
- ``kale``: ``stages.caption.run(spark, cfg)`` end to end on ``local[cores]``:
  Delta ``images`` in, Delta ``dense_captions`` out. The images table (files of ~256
  rows) is written beforehand by another process; the kale child's Spark start-up is
  not timed, the stage is.
- ``ray``: Ray Data ``read_binary_files`` -> ``map_batches`` with a callable-class
  actor pool of one actor (``num_cpus=1``), so a CPU is left for Ray's read tasks.
- ``daft``: a Daft class UDF (``@daft.cls`` + ``@daft.method.batch``) over
  ``from_glob_path`` + ``url.download()``.

Each contestant's time includes its model load. Memory: the kale contestant runs
again on a quarter of the images; ``rss_growth_4x`` = peak RSS at N / peak RSS at
N/4, over the whole process tree (driver, JVM, Python workers).

The last line of output is one JSON object (see ``summary``). Figures also go to
``bench/figures/<device>.json`` for ``kale plan``. Never run by the test suite.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    device_name,
    ensure_images,
    run_child,
    write_figures,
)

log = logging.getLogger("bench.caption")

CONTESTANTS = ("raw", "kale", "ray", "daft")
PROMPT_ID = "dense_v1"
MODEL_DIR_NAME = "bench-vlm-v1"


# ---------------------------------------------------------------- shared by contestants


def load_model(model_dir: str, threads: int):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.set_num_threads(threads)
    processor = AutoProcessor.from_pretrained(model_dir)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    return model, processor


def prompt_text(processor) -> str:
    from kale_spark.prompts import get_prompt

    text = get_prompt(PROMPT_ID).render()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def caption_images(model, processor, prompt: str, blobs: list[bytes], new_tokens: int) -> list[str]:
    """Decode, preprocess and generate one batch: the work every contestant does."""
    import io

    import torch
    from PIL import Image

    if not blobs:  # an engine may hand over an empty batch
        return []
    images = [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs]
    inputs = processor(
        images=images, text=[prompt] * len(images), padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
    new = out[:, inputs["input_ids"].shape[1] :]
    return processor.tokenizer.batch_decode(new, skip_special_tokens=True)


# ---------------------------------------------------------------- the contestants


def child_raw(args: argparse.Namespace, paths: list[Path]) -> int:
    start = time.perf_counter()
    model, processor = load_model(args.model_dir, args.cores)
    prompt = prompt_text(processor)
    texts: list[str] = []
    for i in range(0, len(paths), args.batch_size):
        blobs = [p.read_bytes() for p in paths[i : i + args.batch_size]]
        texts.extend(caption_images(model, processor, prompt, blobs, args.max_new_tokens))
    report(len(texts), time.perf_counter() - start)
    return len(texts)


def kale_config(args: argparse.Namespace, lake_root: Path):
    from kale_spark.config import Config, build

    caption: dict[str, Any] = {
        "id": args.model_dir,
        "prompt_id": PROMPT_ID,
        "device": "cpu",
        "dtype": "float32",
        "batch_size": args.batch_size,
        "generation": {
            "max_new_tokens": args.max_new_tokens,
            "min_new_tokens": args.max_new_tokens,
        },
    }
    if args.rows_per_commit:
        caption["rows_per_commit"] = args.rows_per_commit
    data = {
        "lake": {"root": str(lake_root)},
        "spark": {
            "master": f"local[{args.cores}]",
            "shuffle_partitions": args.cores,
            "arrow_batch_size": args.batch_size,
            "conf": {"spark.driver.memory": "2g", **event_log_conf(args.event_log)},
        },
        "models": {"torch_threads": 0},
        "caption": caption,
    }
    return build(Config, data)


def event_log_conf(directory: str | None) -> dict[str, str]:
    """Spark's event log (plain JSON lines) for a profile of the kale contestant's jobs."""
    if not directory:
        return {}
    Path(directory).mkdir(parents=True, exist_ok=True)
    return {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": Path(directory).resolve().as_uri(),
        "spark.eventLog.compress": "false",
    }


def write_images_table(spark, lake, paths: list[Path], partitions: int) -> None:
    import datetime as dt

    import pandas as pd

    from kale_spark import schema

    now = dt.datetime.now(dt.timezone.utc)
    rows = pd.DataFrame(
        {
            "uid": [f"{i:032x}" for i in range(len(paths))],
            "status": schema.IMAGE_OK,
            "attempts": 1,
            "image": [p.read_bytes() for p in paths],
            "mime": "image/jpeg",
            "source": "bench",
            "fetched_at": now,
            "run_id": "bench",
        }
    )
    for field in schema.IMAGES_SCHEMA.fields:
        if field.name not in rows:
            rows[field.name] = None
    df = spark.createDataFrame(
        rows[[f.name for f in schema.IMAGES_SCHEMA.fields]], schema.IMAGES_SCHEMA
    )
    lake.ensure_table(schema.IMAGES, schema.IMAGES_SCHEMA)
    lake.append(schema.IMAGES, df.repartition(partitions), {"stage": "bench"})


def child_lake(args: argparse.Namespace, paths: list[Path]) -> int:
    """Not a contestant: writes the `images` table the kale contestant reads, in its
    own process, so that the kale child's memory and time are the stage's alone."""
    import shutil

    from kale_spark.lake.tables import Lake
    from kale_spark.spark.session import get_session

    lake_root = Path(args.workdir) / f"lake-{len(paths)}"
    shutil.rmtree(lake_root, ignore_errors=True)
    cfg = kale_config(args, lake_root)
    spark = get_session(cfg.spark)
    # Files of ~256 rows, like a fetch run's output (it writes a few large files).
    write_images_table(spark, Lake(spark, cfg.lake), paths, max(args.cores, len(paths) // 256))
    spark.stop()
    print(json.dumps({"images": len(paths)}))
    return len(paths)


def child_kale(args: argparse.Namespace, paths: list[Path]) -> int:
    from kale_spark import schema
    from kale_spark.lake.tables import Lake
    from kale_spark.spark.session import get_session
    from kale_spark.stages import caption

    cfg = kale_config(args, Path(args.workdir) / f"lake-{len(paths)}")
    spark = get_session(cfg.spark)
    lake = Lake(spark, cfg.lake)
    start = time.perf_counter()
    run = caption.run(spark, cfg)
    seconds = time.perf_counter() - start
    n = lake.read(schema.DENSE_CAPTIONS).count()
    log.info("kale run %s: %s", run.run_id, dict(run.counts))
    spark.stop()
    if n != len(paths):
        raise RuntimeError(f"dense_captions holds {n} rows for {len(paths)} images")
    report(n, seconds)
    return n


def child_ray(args: argparse.Namespace, paths: list[Path]) -> int:
    import ray

    ray.init(num_cpus=args.cores, include_dashboard=False, log_to_driver=False)
    model_dir, new_tokens = args.model_dir, args.max_new_tokens

    class Captioner:
        def __init__(self) -> None:
            # Ray sets OMP_NUM_THREADS to the actor's num_cpus; torch follows it.
            self.model, self.processor = load_model(
                model_dir, int(os.environ.get("OMP_NUM_THREADS", "1"))
            )
            self.prompt = prompt_text(self.processor)

        def __call__(self, batch: dict) -> dict:
            blobs = list(batch["bytes"])
            texts = caption_images(self.model, self.processor, self.prompt, blobs, new_tokens)
            return {"path": batch["path"], "text": texts}

    start = time.perf_counter()
    ds = ray.data.read_binary_files([str(p) for p in paths], include_paths=True)
    ds = ds.map_batches(
        Captioner,
        batch_size=args.batch_size,
        concurrency=1,
        num_cpus=1,
        batch_format="numpy",
    )
    n = sum(len(b["text"]) for b in ds.iter_batches(batch_size=None, batch_format="numpy"))
    seconds = time.perf_counter() - start
    ray.shutdown()
    report(n, seconds)
    return n


def child_daft(args: argparse.Namespace, paths: list[Path]) -> int:
    import daft

    model_dir, new_tokens, cores = args.model_dir, args.max_new_tokens, args.cores

    @daft.cls(max_concurrency=1)
    class Captioner:
        def __init__(self) -> None:
            self.model, self.processor = load_model(model_dir, cores)
            self.prompt = prompt_text(self.processor)

        @daft.method.batch(return_dtype=daft.DataType.string(), batch_size=args.batch_size)
        def caption(self, blobs):
            return caption_images(
                self.model, self.processor, self.prompt, blobs.to_pylist(), new_tokens
            )

    start = time.perf_counter()
    df = daft.from_glob_path(str(Path(paths[0]).parent / "img*.jpg"))
    names = {p.name for p in paths}
    df = df.where(df["path"].str.split("/").list.get(-1).is_in(list(names)))
    df = df.with_column("bytes", df["path"].url.download())
    df = df.with_column("text", Captioner().caption(df["bytes"]))
    n = len(df.select("path", "text").to_pydict()["text"])
    seconds = time.perf_counter() - start
    report(n, seconds)
    return n


CHILDREN = {
    "raw": child_raw,
    "kale": child_kale,
    "ray": child_ray,
    "daft": child_daft,
    "lake": child_lake,
}


def report(n: int, seconds: float) -> None:
    print(json.dumps({"images": n, "seconds": round(seconds, 3), "images_per_s": n / seconds}))


# ---------------------------------------------------------------- the parent


def ensure_model(workdir: Path) -> Path:
    from kale_spark.models.tiny import build_bench_vlm

    model_dir = workdir / MODEL_DIR_NAME
    if not (model_dir / "config.json").is_file():
        log.info("building the bench VLM into %s", model_dir)
        tmp = workdir / f".{MODEL_DIR_NAME}.tmp"
        build_bench_vlm(tmp)
        tmp.rename(model_dir)
    return model_dir


def child_args(args: argparse.Namespace, name: str, images: int) -> list[str]:
    out = [
        "--child", name,
        "--images", str(images),
        "--workdir", str(args.workdir),
        "--model-dir", str(args.model_dir),
        "--max-new-tokens", str(args.max_new_tokens),
        "--batch-size", str(args.batch_size),
        "--cores", str(args.cores),
    ]  # fmt: skip
    if args.rows_per_commit:
        out += ["--rows-per-commit", str(args.rows_per_commit)]
    if args.event_log:
        out += ["--event-log", str(args.event_log)]
    return out


def summary(args: argparse.Namespace, rates: dict[str, float], peak: float, growth: float) -> dict:
    def ratio(a: str, b: str) -> float | None:
        if rates.get(a) and rates.get(b):
            return round(rates[a] / rates[b], 3)
        return None

    return {
        **{name: round(rates[name], 3) if name in rates else None for name in CONTESTANTS},
        "kale_over_raw": ratio("kale", "raw"),
        "kale_over_ray": ratio("kale", "ray"),
        "kale_over_daft": ratio("kale", "daft"),
        "peak_rss_mb": round(peak, 1),
        "rss_growth_4x": round(growth, 3) if growth else None,
        "model_dir": str(args.model_dir),
        "images_dir": str(args.images_dir),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
    }


def parent(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    args.workdir = workdir
    args.model_dir = ensure_model(workdir)
    args.images_dir = workdir / "images"
    ensure_images(args.images_dir, args.images)
    script = Path(__file__).resolve()
    rates: dict[str, float] = {}
    peak = growth = 0.0

    def run_kale(images: int) -> tuple[dict[str, Any], float]:
        run_child(script, child_args(args, "lake", images), args.timeout)
        return run_child(script, child_args(args, "kale", images), args.timeout)

    for name in args.contestants.split(","):
        if name == "kale":
            result, rss = run_kale(args.images)
        else:
            result, rss = run_child(script, child_args(args, name, args.images), args.timeout)
        rates[name] = result["images_per_s"]
        log.info("%-5s %7.2f images/s  (%d in %.1fs, peak RSS %.0f MB)", name,
                 result["images_per_s"], result["images"], result["seconds"], rss)  # fmt: skip
        if name == "kale":
            peak = rss
            if not args.no_rss:
                quarter = max(1, args.images // 4)
                small, small_rss = run_kale(quarter)
                growth = peak / small_rss
                log.info(
                    "kale at %d images: peak RSS %.0f MB; growth 4x %.3f",
                    quarter,
                    small_rss,
                    growth,
                )
    out = summary(args, rates, peak, growth)
    if args.figures and "kale" in rates:
        path = write_figures(
            device_name(),
            "caption",
            {
                "images_per_s": round(rates["kale"], 3),
                "raw_images_per_s": round(rates.get("raw", 0.0), 3),
                "model": "bench-vlm (LLaVA-shaped, 224 px)",
                "max_new_tokens": args.max_new_tokens,
                "batch_size": args.batch_size,
                "cores": args.cores,
                "images": args.images,
            },
        )
        log.info("figures written to %s", path)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--workdir", default=os.environ.get("KALE_BENCH_DIR", "bench/work"))
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--contestants", default=",".join(CONTESTANTS))
    parser.add_argument("--rows-per-commit", type=int, default=0, help="0: the stage's default")
    parser.add_argument("--no-rss", action="store_true", help="skip the N/4 kale run")
    parser.add_argument("--event-log", help="write the kale run's Spark event log here")
    parser.add_argument("--no-figures", dest="figures", action="store_false")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    if args.child:
        paths = ensure_images(Path(args.workdir) / "images", args.images)
        CHILDREN[args.child](args, paths)
        return
    print(json.dumps(parent(args)))


if __name__ == "__main__":
    main()
