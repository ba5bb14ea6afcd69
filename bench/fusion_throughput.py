"""Fusion throughput: generated tokens/s of kale's augment stage against the raw loop.

Old method (its figures are marked ``old_method`` and bench/RESULTS.md does not show
them): the stage is timed inside its session, one run, against a naive loop. Moving it
to bench/caption_throughput.py's method (whole commands, the engine as raw, repeats)
is still to do.

    .venv/bin/python bench/fusion_throughput.py [--rows 256] [--workdir DIR]

Inputs, the same for both: ``--rows`` (alt-text, dense caption) pairs of varied
length (seeded; alt-texts 2-40 words, dense captions 15-120 words) and a
bench-sized Mistral-architecture LM (models/tiny.py ``build_bench_lm``, random
weights). The CapsFusion prompt, built by ``FusionRewriter.build_prompt`` for both,
greedy decoding with ``min_new_tokens = max_new_tokens``: every row generates
exactly ``max_new_tokens`` tokens, so tokens/s = rows x max_new_tokens / seconds.

- ``raw``: a plain PyTorch loop over the prompts in input order, batches of
  ``--batch-size``, torch threads = cores.
- ``kale``: ``stages.augment.run(spark, cfg)`` end to end on ``local[cores]``:
  Delta ``samples`` + ``dense_captions`` in (written before the clock starts),
  Delta ``stage1_captions`` out; prompts sorted by length and batched by token
  budget (``--max-batch-tokens``).

The last line is one JSON object: ``raw`` and ``kale`` (generated tokens/s),
``kale_over_raw``, ``peak_rss_mb``, ``model_dir``, ``rows``, ``max_new_tokens``,
``batch_size``. Figures go to ``bench/figures/<device>.json`` (stage ``augment``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import device_name, run_child, write_figures  # noqa: E402

log = logging.getLogger("bench.fusion")

CONTESTANTS = ("raw", "kale")
# Not yet the method of bench/RESULTS.md (caption_throughput.py is): the stage is timed
# inside a warm session, one run, against a naive loop.
OLD_METHOD = "augment stage time without JVM start, one run, against a naive transformers loop"
PROMPT_ID = "fuse_capsfusion_v1"
MODEL_DIR_NAME = "bench-lm-v1"
WORDS = (
    "photo red bus street London golden retriever puppy lawn Eiffel Tower Paris sunset "
    "river coffee mug table notebook woman dress umbrella village mountains spaghetti "
    "vintage Ford Mustang children soccer beach logo Nike shoe fruit cabin lake bridge "
    "books library cat window kitchen poster jazz concert taxi lavender cake candles"
).split()


def pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    import numpy as np

    rng = np.random.default_rng(seed)

    def text(lo: int, hi: int) -> str:
        return " ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi + 1))))

    return [(text(2, 40), "The image shows " + text(15, 120) + ".") for _ in range(n)]


def rewriter_for(model_dir: str, args: argparse.Namespace, threads: int):
    import torch

    from kale_spark.models.fusion import FusionRewriter
    from kale_spark.models.loading import load_lm

    torch.set_num_threads(threads)
    spec = spec_for(model_dir, args)
    return FusionRewriter(*load_lm(spec, "cpu"), spec)


def spec_for(model_dir: str, args: argparse.Namespace):
    from kale_spark.models.spec import GenerationParams, ModelSpec

    return ModelSpec(
        id=model_dir,
        prompt_id=PROMPT_ID,
        device="cpu",
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens or None,
        generation=GenerationParams(
            max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens
        ),
    )


def child_raw(args: argparse.Namespace) -> None:
    import torch

    data = pairs(args.rows)
    start = time.perf_counter()
    rw = rewriter_for(args.model_dir, args, args.cores)
    tok, model = rw.tokenizer, rw.model
    new = 0
    for i in range(0, len(data), args.batch_size):
        prompts = [rw.build_prompt(a, d) for a, d in data[i : i + args.batch_size]]
        inputs = tok(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=args.max_new_tokens,
                min_new_tokens=args.max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        generated = out[:, inputs["input_ids"].shape[1] :]
        tok.batch_decode(generated, skip_special_tokens=True)
        new += generated.numel()
    report(len(data), new, time.perf_counter() - start)


def write_inputs(spark, lake, args: argparse.Namespace, caption_id: str) -> None:
    import datetime as dt

    import pandas as pd

    from kale_spark import schema

    now = dt.datetime.now(dt.timezone.utc)
    data = pairs(args.rows)
    uids = [f"{i:032x}" for i in range(len(data))]
    samples = pd.DataFrame({"uid": uids, "url": "http://bench/", "text": [a for a, _ in data]})
    samples = samples.assign(source_file="bench", ingested_at=now, run_id="bench")
    dense = pd.DataFrame({"uid": uids, "dense_caption": [d for _, d in data]})
    dense = dense.assign(
        prompt_tokens=1, new_tokens=1, model=caption_id, model_revision="bench",
        prompt_id="dense_v1", gen_params="{}", run_id="bench", created_at=now,
    )  # fmt: skip
    dense["source_versions"] = [{} for _ in uids]
    for name, frame, table_schema in (
        (schema.SAMPLES, samples, schema.SAMPLES_SCHEMA),
        (schema.DENSE_CAPTIONS, dense, schema.DENSE_CAPTIONS_SCHEMA),
    ):
        for field in table_schema.fields:
            if field.name not in frame:
                frame[field.name] = None
        df = spark.createDataFrame(frame[[f.name for f in table_schema.fields]], table_schema)
        lake.ensure_table(name, table_schema)
        lake.append(name, df.repartition(args.cores), {"stage": "bench"})


def child_kale(args: argparse.Namespace) -> None:
    import shutil

    from kale_spark import schema
    from kale_spark.config import Config, build
    from kale_spark.lake.tables import Lake
    from kale_spark.spark.session import get_session
    from kale_spark.stages import augment

    lake_root = Path(args.workdir) / f"lake-fusion-{args.rows}"
    shutil.rmtree(lake_root, ignore_errors=True)
    spec = spec_for(args.model_dir, args)
    augment_cfg = {
        "id": spec.id,
        "prompt_id": PROMPT_ID,
        "device": "cpu",
        "batch_size": args.batch_size,
        "max_batch_tokens": spec.max_batch_tokens,
        "generation": {
            "max_new_tokens": args.max_new_tokens,
            "min_new_tokens": args.max_new_tokens,
        },
    }
    cfg = build(
        Config,
        {
            "lake": {"root": str(lake_root)},
            "spark": {"master": f"local[{args.cores}]", "shuffle_partitions": args.cores,
                      "arrow_batch_size": args.batch_size},
            "models": {"torch_threads": 0},
            "caption": {"id": "tiny:vlm", "prompt_id": "dense_v1"},
            "augment": augment_cfg,
        },
    )  # fmt: skip
    spark = get_session(cfg.spark)
    lake = Lake(spark, cfg.lake)
    write_inputs(spark, lake, args, cfg.caption.id)
    start = time.perf_counter()
    augment.run(spark, cfg)
    seconds = time.perf_counter() - start
    out = lake.read(schema.STAGE1_CAPTIONS)
    n = out.count()
    new = out.agg({"new_tokens": "sum"}).first()[0]
    spark.stop()
    if n != args.rows:
        raise RuntimeError(f"stage1_captions holds {n} rows for {args.rows} pairs")
    report(n, int(new), seconds)


def report(rows: int, new_tokens: int, seconds: float) -> None:
    result = {"rows": rows, "new_tokens": new_tokens, "seconds": round(seconds, 3)}
    result.update(tokens_per_s=new_tokens / seconds, rows_per_s=rows / seconds)
    print(json.dumps(result))


CHILDREN = {"raw": child_raw, "kale": child_kale}


def ensure_model(workdir: Path) -> Path:
    from kale_spark.models.tiny import build_bench_lm

    model_dir = workdir / MODEL_DIR_NAME
    if not (model_dir / "config.json").is_file():
        tmp = workdir / f".{MODEL_DIR_NAME}.tmp"
        build_bench_lm(tmp)
        tmp.rename(model_dir)
    return model_dir


def parent(args: argparse.Namespace) -> dict:
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir = ensure_model(workdir)
    script = Path(__file__).resolve()
    common = [
        "--rows", str(args.rows), "--workdir", str(workdir), "--model-dir", str(model_dir),
        "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size),
        "--max-batch-tokens", str(args.max_batch_tokens), "--cores", str(args.cores),
    ]  # fmt: skip
    results, peak = {}, 0.0
    for name in args.contestants.split(","):
        result, rss = run_child(script, ["--child", name, *common], args.timeout)
        results[name] = result
        log.info("%-4s %8.1f tokens/s  %6.2f rows/s  (%d rows in %.1fs, peak RSS %.0f MB)",
                 name, result["tokens_per_s"], result["rows_per_s"], result["rows"],
                 result["seconds"], rss)  # fmt: skip
        if name == "kale":
            peak = rss
    rate = {k: v["tokens_per_s"] for k, v in results.items()}
    out = {
        "raw": round(rate["raw"], 1) if "raw" in rate else None,
        "kale": round(rate["kale"], 1) if "kale" in rate else None,
        "kale_over_raw": round(rate["kale"] / rate["raw"], 3) if len(rate) == 2 else None,
        "peak_rss_mb": round(peak, 1),
        "model_dir": str(model_dir),
        "rows": args.rows,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
    }
    if args.figures and "kale" in results:
        write_figures(device_name(), "augment", {
            "rows_per_s": round(results["kale"]["rows_per_s"], 3),
            "tokens_per_s": round(rate["kale"], 1),
            "raw_tokens_per_s": round(rate.get("raw", 0.0), 1),
            "model": "bench-lm (Mistral-shaped, 6 x 512)",
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
            "cores": args.cores,
            # bench/RESULTS.md shows this as one line, not its figures (report.py)
            "old_method": OLD_METHOD,
            "label": "old method: augment stage time without JVM start, tiny model",
        })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--workdir", default=os.environ.get("KALE_BENCH_DIR", "bench/work"))
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-batch-tokens", type=int, default=4096)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--contestants", default=",".join(CONTESTANTS))
    parser.add_argument("--no-figures", dest="figures", action="store_false")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--child", choices=CONTESTANTS, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    if args.child:
        CHILDREN[args.child](args)
        return
    print(json.dumps(parent(args)))


if __name__ == "__main__":
    main()
