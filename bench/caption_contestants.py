"""The contestants of bench/caption_throughput.py, one entry point each.

    python bench/caption_contestants.py {raw,naive,ray,daft,lake} --images N --model-dir D \
        --out DIR --batch-size B --new-tokens T --cores C [--workers W]

Each is what a user of that tool would run as a script: it loads the saved model, reads
the JPEGs of ``--images-dir``, captions every image with exactly ``--new-tokens`` new
tokens and commits its output (a Parquet file or folder under ``--out``). The parent
times the whole process, interpreter start to exit. ``kale`` is not here: its
contestant is the ``kale caption`` command itself; ``lake`` writes the images table it
reads, beforehand and off the clock.

Per batch, ``raw``, ``ray`` and ``daft`` run the project's own ``Captioner``
(reduced-scale JPEG decode, the same processor call and ``generate``), as kale's UDF
does, so kale over each of them is the cost of the framework around the same model
work. ``raw`` adds the engine's prefetch thread (models/inference.py ``run_partition``,
what kale's UDF runs). ``naive`` is a plain transformers loop: full-size decode, no
prefetch; it is labelled as such wherever it is shown.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT_ID = "dense_v1"
FRAME_ROWS = 256  # rows per input frame of the raw engine loop (a Parquet row group's worth)


def spec_for(args: argparse.Namespace):
    from kale_spark.models.spec import GenerationParams, ModelSpec

    gen = GenerationParams(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
    return ModelSpec(
        id=str(args.model_dir),
        prompt_id=PROMPT_ID,
        device="cpu",
        dtype="float32",
        batch_size=args.batch_size,
        generation=gen,
    )


def image_paths(args: argparse.Namespace) -> list[Path]:
    return [Path(args.images_dir) / f"img{i:05d}.jpg" for i in range(args.images)]


def write_output(out: Path, names: list[str], texts: list[str]) -> None:
    """The contestant's output, committed: one Parquet file, renamed into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".captions.parquet.tmp"
    pq.write_table(pa.table({"path": names, "text": texts}), tmp)
    tmp.rename(out / "captions.parquet")


# ---------------------------------------------------------------- raw: the engine, plain loop


def child_raw(args: argparse.Namespace) -> int:
    """The project's engine (prefetch, reduced-scale decode) in a plain loop; torch
    threads = cores."""
    import pandas as pd

    from kale_spark.models.device import set_torch_threads
    from kale_spark.models.inference import engine_for, run_partition

    set_torch_threads(args.cores)
    spec = spec_for(args)
    engine = engine_for("caption", spec)
    paths = image_paths(args)

    def frames():
        for i in range(0, len(paths), FRAME_ROWS):
            chunk = paths[i : i + FRAME_ROWS]
            yield pd.DataFrame(
                {"uid": [p.name for p in chunk], "image": [p.read_bytes() for p in chunk]}
            )

    names: list[str] = []
    texts: list[str] = []
    for frame in run_partition(
        engine,
        frames(),
        batch_size=spec.batch_size,
        max_batch_tokens=spec.max_batch_tokens,
        new_tokens=args.new_tokens,
    ):
        names += frame["uid"].tolist()
        texts += frame["text"].tolist()
    write_output(Path(args.out), names, texts)
    return len(texts)


# ---------------------------------------------------------------- naive: transformers loop


def child_naive(args: argparse.Namespace) -> int:
    """Read, full-size decode, preprocess, batched ``generate``; no prefetch; torch
    threads = cores. The loop a user writes first."""
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from kale_spark.prompts import get_prompt

    torch.set_num_threads(args.cores)
    processor = AutoProcessor.from_pretrained(args.model_dir)
    processor.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(args.model_dir).eval()
    content = [{"type": "image"}, {"type": "text", "text": get_prompt(PROMPT_ID).render()}]
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    paths = image_paths(args)
    texts: list[str] = []
    for i in range(0, len(paths), args.batch_size):
        batch = paths[i : i + args.batch_size]
        images = [Image.open(io.BytesIO(p.read_bytes())).convert("RGB") for p in batch]
        inputs = processor(
            images=images, text=[prompt] * len(images), padding=True, return_tensors="pt"
        )
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=processor.tokenizer.pad_token_id,
            )
        new = out[:, inputs["input_ids"].shape[1] :]
        texts += processor.tokenizer.batch_decode(new, skip_special_tokens=True)
    write_output(Path(args.out), [p.name for p in paths], texts)
    return len(texts)


# ---------------------------------------------------------------- the UDF Ray and Daft run


class BatchCaptioner:
    """The project's Captioner over a batch of image bytes (what kale's UDF runs per
    batch, without its prefetch: the framework schedules around it)."""

    def __init__(self, args: argparse.Namespace, threads: int) -> None:
        from kale_spark.models.captioner import Captioner
        from kale_spark.models.device import set_torch_threads

        set_torch_threads(threads)
        self.captioner = Captioner.from_spec(spec_for(args))
        self.prompt = self.captioner.prompt_text()

    def __call__(self, blobs: list[bytes]) -> list[str | None]:
        if not blobs:
            return []
        prepared = self.captioner.prepare(blobs, [self.prompt] * len(blobs))
        return [getattr(r, "text", None) for r in self.captioner.run(prepared)]


def layout(args: argparse.Namespace) -> tuple[int, int]:
    """(model instances, torch threads each): instances x threads = cores."""
    workers = max(1, min(args.workers, args.cores))
    return workers, max(1, args.cores // workers)


# ---------------------------------------------------------------- ray


def child_ray(args: argparse.Namespace) -> int:
    """Ray Data as its batch-inference guide says: a callable class in an actor pool of
    ``--workers`` actors, ``num_cpus`` = their share of the cores (torch threads the
    same), file reads as zero-CPU tasks so they never wait for an actor's core."""
    import ray

    workers, threads = layout(args)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster, loopback only
    ray.init(num_cpus=args.cores, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    bench_args = args

    class Actor:
        def __init__(self) -> None:
            self.captioner = BatchCaptioner(bench_args, threads)

        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            texts = self.captioner(list(batch["bytes"]))
            return {"path": batch["path"], "text": texts}

    ds = ray.data.read_binary_files(
        [str(p) for p in image_paths(args)], include_paths=True, num_cpus=0
    )
    ds = ds.map_batches(
        Actor,
        batch_size=args.batch_size,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=threads,
        batch_format="numpy",
    )
    ds.write_parquet(str(args.out))
    ray.shutdown()
    return len(image_paths(args))


# ---------------------------------------------------------------- daft


def child_daft(args: argparse.Namespace) -> int:
    """A Daft class UDF: ``--workers`` instances (``max_concurrency``), each in its own
    process with its share of the cores, over a column of paths and ``download()``."""
    import daft

    workers, threads = layout(args)
    bench_args = args

    @daft.cls(cpus=threads, max_concurrency=workers, use_process=workers > 1)
    class Udf:
        def __init__(self) -> None:
            self.captioner = BatchCaptioner(bench_args, threads)

        @daft.method.batch(return_dtype=daft.DataType.string(), batch_size=args.batch_size)
        def caption(self, blobs):
            return self.captioner(blobs.to_pylist())

    paths = [str(p) for p in image_paths(args)]
    df = daft.from_pydict({"path": paths})
    df = df.with_column("bytes", df["path"].download())
    df = df.select("path", Udf().caption(df["bytes"]).alias("text"))
    df.write_parquet(str(args.out))
    return len(paths)


# ---------------------------------------------------------------- the lake kale reads


LAKE_SLICE = 256


def child_lake(args: argparse.Namespace) -> int:
    """Not a contestant: the `images` table ``kale caption`` reads, written with Spark
    beforehand (files of ~256 rows, like a fetch run's output)."""
    import datetime as dt

    import pandas as pd

    from kale_spark import schema
    from kale_spark.config import Config, build
    from kale_spark.lake.tables import Lake
    from kale_spark.spark.session import get_session

    spark_cfg = {"master": f"local[{args.cores}]", "conf": {"spark.driver.memory": "3g"}}
    cfg = build(Config, {"lake": {"root": str(args.out)}, "spark": spark_cfg})
    spark = get_session(cfg.spark)
    paths = image_paths(args)
    lake = Lake(spark, cfg.lake)
    # as the fetch stage creates it: the change data feed on (the model stages stream it)
    lake.ensure_table(schema.IMAGES, schema.IMAGES_SCHEMA, change_feed=True)
    # Slices of 256 images, one commit each: the full-size JPEGs of a large run would
    # not fit the driver's heap at once.
    for lo in range(0, len(paths), LAKE_SLICE):
        part = paths[lo : lo + LAKE_SLICE]
        rows = pd.DataFrame(
            {
                "uid": [f"{i:032x}" for i in range(lo, lo + len(part))],
                "status": schema.IMAGE_OK,
                "attempts": 1,
                "image": [p.read_bytes() for p in part],
                "mime": "image/jpeg",
                "source": "bench",
                "fetched_at": dt.datetime.now(dt.timezone.utc),
                "run_id": "bench",
            }
        )
        for f in schema.IMAGES_SCHEMA.fields:
            if f.name not in rows:
                rows[f.name] = None
        df = spark.createDataFrame(
            rows[[f.name for f in schema.IMAGES_SCHEMA.fields]], schema.IMAGES_SCHEMA
        )
        lake.append(schema.IMAGES, df.repartition(args.cores), {"stage": "bench"})
    spark.stop()
    return len(paths)


CHILDREN = {
    "raw": child_raw,
    "naive": child_naive,
    "ray": child_ray,
    "daft": child_daft,
    "lake": child_lake,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=sorted(CHILDREN))
    parser.add_argument("--images", type=int, required=True)
    parser.add_argument("--images-dir", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workers", type=int, default=1, help="ray/daft: model instances")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    n = CHILDREN[args.name](args)
    print(json.dumps({"images": n, "inner_s": round(time.perf_counter() - start, 3)}))


if __name__ == "__main__":
    main()
