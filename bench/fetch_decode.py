"""Benchmark the fetch stage's pure parts: decode+resize and local HTTP fetching.

    .venv/bin/python bench/fetch_decode.py [--jpegs 40] [--rows 400] [--concurrency 16]

1. decode+resize+encode, one core: ``decode_and_resize`` (JPEG draft mode, reducing
   resize, EXIF, RGB, re-encode, sha256) against a plain
   ``Image.open(...).convert("RGB").resize(...)`` + JPEG encode on the same in-memory
   files (large photo-like JPEGs, 3000x2000, and mixed PNG / WebP). Like with like:
   both sides resize with the same filter to the same size and encode at the same
   JPEG quality; the pair is run once with the "area" filter (the fetch stage's
   default, Pillow's BOX) and once with "lanczos". What differs is only how the
   image is decoded (reduced DCT scale, then a box reduce) and the sha256.
   ``--repeats`` rounds, the order alternated; median and min-max per row.
2. fetch: ``process_batch`` rows/s against ``python -m http.server`` on
   127.0.0.1 (loopback allowed), fetch only and fetch+decode (no comparison).

Run by hand, never by the test suite. Prints a short table and writes
``bench/figures/decode-cpu.json`` (with its provenance).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import FIGURES_DIR, load_average, spread, stamp  # noqa: E402
from kale_spark.fetch.client import fetch_url, map_bounded  # noqa: E402
from kale_spark.fetch.decode import (  # noqa: E402
    RESAMPLE_FILTERS,
    decode_and_resize,
    target_size,
)
from kale_spark.fetch.options import (  # noqa: E402
    FetchOptions,
    FetchStageOptions,
    ImageOptions,
)
from kale_spark.fetch.rows import process_batch  # noqa: E402


def photo_like(size: tuple[int, int], seed: int) -> Image.Image:
    """Smooth low-frequency colour fields plus fine grain: compresses like a photo."""
    rng = np.random.default_rng(seed)
    w, h = size
    coarse = rng.integers(0, 256, size=(h // 100 + 2, w // 100 + 2, 3), dtype=np.uint8)
    base = Image.fromarray(coarse, "RGB").resize(size, Image.Resampling.BICUBIC)
    grain = rng.normal(0, 6, size=(h, w, 1))
    arr = np.clip(np.asarray(base, dtype=np.int16) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def make_files(directory: Path, jpegs: int) -> dict[str, list[Path]]:
    sets: dict[str, list[Path]] = {"jpeg 3000x2000": [], "png/webp mixed": []}
    for i in range(jpegs):
        path = directory / f"photo{i:03d}.jpg"
        photo_like((3000, 2000), i).save(path, format="JPEG", quality=90)
        sets["jpeg 3000x2000"].append(path)
    for i in range(jpegs // 2):
        img = photo_like((1600, 1200) if i % 2 else (2000, 1500), 1000 + i)
        path = directory / (f"mixed{i:03d}.png" if i % 2 else f"mixed{i:03d}.webp")
        img.save(path, format="PNG" if i % 2 else "WEBP", quality=90)
        sets["png/webp mixed"].append(path)
    return sets


def plain(data: bytes, opts: ImageOptions) -> bytes:
    """What a user writes: full decode, RGB, resize with the same filter, same quality."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    img = img.resize(target_size(*img.size, opts), RESAMPLE_FILTERS[opts.resample])
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=opts.quality)
    return buf.getvalue()


def ours(data: bytes, opts: ImageOptions) -> bytes | None:
    result = decode_and_resize(data, opts)
    assert result.status == "ok", result.error
    return result.image


def per_second(
    fn: Callable[[bytes, ImageOptions], object], blobs: list[bytes], opts: ImageOptions
) -> float:
    fn(blobs[0], opts)  # warm up
    started = time.perf_counter()
    for blob in blobs:
        fn(blob, opts)
    return len(blobs) / (time.perf_counter() - started)


# A static file server in its own process (so it does not share our GIL), with a
# listen backlog large enough for concurrent clients (http.server's 5 drops SYNs).
SERVER = """
import functools, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
handler = functools.partial(Quiet, directory=sys.argv[2])
Server(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_fetch(
    directory: Path, files: list[Path], rows: int, concurrency: int
) -> list[tuple[str, str]]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        urls = [f"http://127.0.0.1:{port}/{files[i % len(files)].name}?r={i}" for i in range(rows)]
        stage = FetchStageOptions(allow_networks=("127.0.0.0/8",), concurrency=concurrency)
        fetch: FetchOptions = stage
        size = sum(f.stat().st_size for f in files) / len(files)

        started = time.perf_counter()
        results = list(map_bounded(lambda u: fetch_url(u, fetch), urls, concurrency))
        fetch_only = time.perf_counter() - started
        assert all(r.status == "ok" for r in results), {r.status for r in results}

        pdf = pd.DataFrame({"uid": [f"u{i}" for i in range(rows)], "url": urls, "sha256": None})
        started = time.perf_counter()
        out = process_batch(pdf, stage, run_id="bench")
        full = time.perf_counter() - started
        assert (out["status"] == "ok").all(), out["status"].value_counts().to_dict()
    finally:
        server.terminate()
        server.wait()
    return [
        (
            f"fetch only, {rows} rows x {size / 1e6:.1f} MB, {concurrency} threads",
            f"{rows / fetch_only:8.1f} rows/s  ({rows * size / fetch_only / 1e6:.0f} MB/s)",
        ),
        (
            f"fetch+decode+resize (process_batch), {concurrency} threads",
            f"{rows / full:8.1f} rows/s",
        ),
    ]


def compare(blobs: list[bytes], resample: str, repeats: int) -> dict:
    """Plain vs ``decode_and_resize`` with the same filter, size and quality: images/s
    per core for each (median, min-max over the rounds) and ours over plain."""
    from dataclasses import replace

    opts = replace(ImageOptions(), resample=resample)
    rates: dict[str, list[float]] = {"plain": [], "decode_and_resize": []}
    ratios = []
    for r in range(repeats):
        names = ["plain", "decode_and_resize"]
        for name in names if r % 2 == 0 else names[::-1]:
            rates[name].append(per_second(plain if name == "plain" else ours, blobs, opts))
        ratios.append(rates["decode_and_resize"][-1] / rates["plain"][-1])
    out = {name: spread(v, 1) for name, v in rates.items()}
    s = spread(ratios, 2)
    out.update({"ours_over_plain": s["median"], "ours_over_plain_min": s["min"]})
    out["ours_over_plain_max"] = s["max"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jpegs", type=int, default=40)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-figures", dest="figures", action="store_false")
    args = parser.parse_args()
    opts = ImageOptions()
    result: dict = {**stamp(), "bench": "fetch_decode", "resolution": opts.resolution}
    result.update({"resize_mode": opts.resize_mode, "jpeg_quality": opts.quality})
    with tempfile.TemporaryDirectory(prefix="kale-bench-") as tmp:
        directory = Path(tmp)
        sets = make_files(directory, args.jpegs)
        for name, paths in sets.items():
            blobs = [p.read_bytes() for p in paths]
            for resample in ("area", "lanczos"):
                result[f"{name}, {resample}"] = compare(blobs, resample, args.repeats)
                print(f"{name}, {resample}: {result[f'{name}, {resample}']}")
        for key, value in bench_fetch(
            directory, sets["jpeg 3000x2000"] + sets["png/webp mixed"], args.rows, args.concurrency
        ):
            result[key] = value.strip()
            print(f"{key}: {value.strip()}")
    result["load_average_1m_at_end"] = load_average()
    print(f"{os.cpu_count()} cpus; per-core figures are single-threaded")
    if args.figures:
        (FIGURES_DIR / "decode-cpu.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
