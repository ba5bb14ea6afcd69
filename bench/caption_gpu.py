"""The caption model path on one GPU: what bf16, SDPA, a static KV cache, torch.compile
and parallel decode buy, and kale's pipeline against the raw loop. No Spark here.

    python bench/caption_gpu.py --images 512 --out DIR

Same inputs as bench/caption_throughput.py (the bench VLM, DataComp-like JPEGs,
``min_new_tokens = max_new_tokens``). Variants of the raw loop (decode, preprocess,
``generate``, one after the other):

- ``fp32-eager``: float32, eager attention, dynamic KV cache (the CPU defaults);
- ``bf16-sdpa``: bfloat16 weights, PyTorch SDPA attention;
- ``bf16-sdpa-static``: plus ``cache_implementation="static"``;
- ``bf16-sdpa-static-compile``: plus ``torch.compile`` of the forward (skipped with
  ``--no-compile``).

Then ``kale``: models/inference.py's ``run_partition`` (what ``model_partition_fn``
runs in a Spark task) with the best settings, with 1 and with ``--prepare-threads``
decode threads. Results go to ``DIR/caption_gpu.json`` and a figures file
``DIR/<device>.json`` for ``kale plan`` (copy it to bench/figures/), labelled "engine
without Spark, tiny model": ``kale plan`` prints that label beside its estimate.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import device_name, ensure_images, stamp  # noqa: E402

log = logging.getLogger("bench.gpu")
DEVICE = "cuda:0"  # --device cpu: a dry run of the script where there is no GPU


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def raw_loop(model, processor, prompt, blobs, batch_size, new_tokens, cache) -> tuple[float, float]:
    """(images/s end to end, share of the time inside generate)."""
    import io

    import torch
    from PIL import Image

    in_model = 0.0
    _sync()
    start = time.perf_counter()
    for i in range(0, len(blobs), batch_size):
        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs[i : i + batch_size]]
        inputs = processor(images=images, text=[prompt] * len(images), return_tensors="pt")
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        t = time.perf_counter()
        kwargs = {"cache_implementation": cache} if cache else {}
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 do_sample=False, **kwargs)  # fmt: skip
        processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :])
        in_model += time.perf_counter() - t
    seconds = time.perf_counter() - start
    return len(blobs) / seconds, in_model / seconds


def load(model_dir: str, dtype: str, attn: str, compile_: bool, cache: str | None):
    from kale_spark.models.device import compiled
    from kale_spark.models.loading import load_vlm
    from kale_spark.models.spec import ModelSpec

    spec = ModelSpec(id=model_dir, prompt_id="dense_v1", dtype=dtype, device=DEVICE,
                     attn_implementation=attn, compile=compile_,
                     cache_implementation=cache)  # fmt: skip
    return compiled(load_vlm(spec, DEVICE), spec), spec


def variants(args, model_dir, blobs) -> dict:
    from kale_spark.models.captioner import Captioner

    out = {}
    plans = [("fp32-eager", "float32", "eager", False, None),
             ("bf16-sdpa", "bfloat16", "sdpa", False, None),
             ("bf16-sdpa-static", "bfloat16", "sdpa", False, "static")]  # fmt: skip
    if args.compile_only:
        plans = [("bf16-sdpa-static-compile", "bfloat16", "sdpa", True, "static")]
    for name, dtype, attn, compile_, cache in plans:
        try:
            (model, processor), spec = load(model_dir, dtype, attn, compile_, cache)
            prompt = Captioner(model, processor, spec).prompt_text()
            warm = blobs[: args.batch_size]
            raw_loop(model, processor, prompt, warm, args.batch_size, args.max_new_tokens, cache)
            rate, share = raw_loop(model, processor, prompt, blobs, args.batch_size,
                                   args.max_new_tokens, cache)  # fmt: skip
            out[name] = {"images_per_s": round(rate, 2), "generate_share": round(share, 3)}
        except Exception as exc:  # a variant that does not run is reported, not fatal
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        log.info("%-26s %s", name, out[name])
    return out


def kale_pipeline(args, model_dir, blobs, dtype, attn, cache, threads) -> float:
    import pandas as pd

    from kale_spark.models.inference import engine_for, run_partition
    from kale_spark.models.spec import GenerationParams, ModelSpec

    gen = GenerationParams(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens)
    spec = ModelSpec(id=model_dir, prompt_id="dense_v1", dtype=dtype, device=DEVICE,
                     attn_implementation=attn, cache_implementation=cache,
                     batch_size=args.batch_size, generation=gen)  # fmt: skip
    engine = engine_for("caption", spec)
    frame = pd.DataFrame({"uid": [str(i) for i in range(len(blobs))], "image": blobs})

    def frames(df):
        for i in range(0, len(df), 64):  # Arrow batches of 64 rows
            yield df.iloc[i : i + 64]

    warm = frame.iloc[: args.batch_size]
    list(run_partition(engine, frames(warm), batch_size=args.batch_size))
    _sync()
    start = time.perf_counter()
    n = sum(
        len(f)
        for f in run_partition(
            engine,
            frames(frame),
            batch_size=args.batch_size,
            new_tokens=args.max_new_tokens,
            prepare_threads=threads,
        )  # fmt: skip
    )
    return n / (time.perf_counter() - start)


def make_images(directory: Path, n: int, workers: int) -> list[Path]:
    chunks = [range(i, min(n, i + 16)) for i in range(0, n, 16)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_make_chunk, [(str(directory), c.start, c.stop) for c in chunks]))
    return ensure_images(directory, n)


def _make_chunk(task: tuple[str, int, int]) -> None:
    import numpy as np

    from bench.common import datacomp_like_size, photo_like

    directory, lo, hi = task
    Path(directory).mkdir(parents=True, exist_ok=True)
    for i in range(lo, hi):
        path = Path(directory) / f"img{i:05d}.jpg"
        if not path.exists():
            rng = np.random.default_rng(i)
            photo_like(datacomp_like_size(rng), i).save(path, format="JPEG", quality=88)


def write(args: argparse.Namespace, result: dict) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "caption_gpu.json").write_text(json.dumps(result, indent=2))
    figures = {"device": result["device"], **stamp(), "stages": {"caption": {
        "images_per_s": result[f"kale_prepare_threads_{args.prepare_threads}"],
        "model": "bench-vlm (LLaVA-shaped, 224 px), bf16",
        "label": "engine without Spark, tiny model",
        "label_detail": f"models/inference.py run_partition in one process, no Spark, "
                        f"{args.prepare_threads} decode threads; not a `kale caption` run",
        "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "raw_variants": result["raw"]}}}  # fmt: skip
    (out / f"{result['device']}.json").write_text(json.dumps(figures, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--workdir", default="/tmp/kale-gpu-bench")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--prepare-threads", type=int, default=8)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--device", default=DEVICE)
    args = parser.parse_args()
    globals()["DEVICE"] = args.device
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    import torch
    import transformers

    from kale_spark.models.tiny import build_bench_vlm

    log.info("torch %s transformers %s %s", torch.__version__, transformers.__version__,
             device_name())  # fmt: skip
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    model_dir = work / "bench-vlm-v1"
    if not (model_dir / "config.json").exists():
        build_bench_vlm(model_dir)
    t = time.perf_counter()
    paths = make_images(work / "images", args.images, max(1, (os.cpu_count() or 2) - 2))
    log.info("%d images in %.1fs", len(paths), time.perf_counter() - t)
    blobs = [p.read_bytes() for p in paths]
    result = {"device": device_name(), "images": len(blobs), "batch_size": args.batch_size,
              "max_new_tokens": args.max_new_tokens}  # fmt: skip
    args.compile_only = False
    result["raw"] = variants(args, str(model_dir), blobs)
    best = ("bfloat16", "sdpa", "static")
    if "error" in result["raw"].get("bf16-sdpa-static", {"error": 1}):
        best = ("bfloat16", "sdpa", None)
    result["kale_settings"] = dict(zip(("dtype", "attn", "cache"), best, strict=True))
    for threads in (1, args.prepare_threads):
        rate = kale_pipeline(args, str(model_dir), blobs, *best, threads)
        result[f"kale_prepare_threads_{threads}"] = round(rate, 2)
        log.info("kale pipeline, %d prepare threads: %.1f images/s", threads, rate)
    write(args, result)
    if args.compile:  # last: a compile can take minutes; the figures are written already
        args.compile_only = True
        result["raw"].update(variants(args, str(model_dir), blobs))
        write(args, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
