"""Throughput of `kale fetch` against img2dataset on the same URLs from a local server.

    .venv/bin/python bench/fetch_throughput.py --images 3000 --workdir /tmp/kale-bench

1. Writes a DataComp-format sample of N drawn images (JPEG/PNG/WebP, up to
   --max-side px) whose URLs point at a static server on 127.0.0.1.
2. Serves it with a threaded static server (127.0.0.1 only, stopped at the end).
3. img2dataset (the `bench` extra) downloads the metadata parquet with DataComp's
   download settings at KALE's resolution: keep_ratio_largest to 490, only if
   bigger, jpg, webdataset shards, uid kept, 2 retries; 2 processes x 32 threads
   on this 2-core machine. Face blurring (DataComp's bbox column) is left off:
   kale does not blur, and blurring only slows img2dataset down.
4. `kale ingest` then `kale fetch` (the CLI, local[2], the stage end to end: Spark
   jobs, decode/resize, the Delta MERGE of the image bytes). kale's figure is its
   fetch stage time from the `runs` table; the CLI wall time (JVM start included)
   is printed alongside.

img2dataset's figure is its `download()` call, imports excluded (as kale's stage
time excludes the JVM start); both tools' whole-command wall times are printed too.

Both rates are images written ok per second. The last line printed is one JSON
object: {"kale": ..., "img2dataset": ..., "kale_over_img2dataset": ...}.
Run by hand (`make bench-fetch`), never by the test suite.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench.fetch_throughput")
STEP_TIMEOUT_S = 1800


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(directory: Path, port: int) -> subprocess.Popen:
    """A static server in its own process (its threads do not share kale's GIL)."""
    code = (
        "import functools, http.server, sys\n"
        "class S(http.server.ThreadingHTTPServer):\n"
        "    daemon_threads = True\n"
        "    request_queue_size = 256\n"
        "class H(http.server.SimpleHTTPRequestHandler):\n"
        "    def log_message(self, *a): pass\n"
        "h = functools.partial(H, directory=sys.argv[1])\n"
        "S(('127.0.0.1', int(sys.argv[2])), h).serve_forever()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(directory), str(port)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("static server did not start")


def _run(cmd: list[str], env: dict | None = None) -> float:
    """Run a command (output discarded) and return its wall time."""
    log.info("running: %s", " ".join(cmd))
    started = time.monotonic()
    subprocess.run(cmd, check=True, timeout=STEP_TIMEOUT_S, env=env, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


_I2D_SCRIPT = """
import json, sys, time
import img2dataset
kwargs = json.loads(sys.argv[1])
started = time.monotonic()
img2dataset.download(**kwargs)
print(json.dumps({"download_s": time.monotonic() - started}))
"""


def run_img2dataset(meta: Path, out: Path, images: int) -> dict:
    """img2dataset.download in a child process; its rate is over the download call
    (imports excluded, as kale's stage time excludes the JVM start)."""
    shutil.rmtree(out, ignore_errors=True)
    kwargs = {
        "url_list": str(meta),
        "input_format": "parquet",
        "url_col": "url",
        "caption_col": "text",
        "output_format": "webdataset",
        "output_folder": str(out),
        "processes_count": 2,
        "thread_count": 32,
        "image_size": 490,
        "resize_mode": "keep_ratio_largest",
        "resize_only_if_bigger": True,
        "encode_format": "jpg",
        "save_additional_columns": ["uid"],
        # DataComp writes 10000 per shard; at bench size that is one shard and one
        # process, so shards are sized to give both processes work.
        "number_sample_per_shard": max(1, -(-images // 8)),
        "retries": 2,
        "timeout": 10,
        "enable_wandb": False,
        "distributor": "multiprocessing",
    }
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    log.info("running img2dataset.download(%s)", kwargs)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _I2D_SCRIPT, json.dumps(kwargs)],
        check=True,
        timeout=STEP_TIMEOUT_S,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    download_s = json.loads(done.stdout.strip().splitlines()[-1])["download_s"]
    ok = sum(json.loads(Path(f).read_text())["successes"] for f in glob.glob(f"{out}/*_stats.json"))
    return {"download_s": download_s, "wall_s": wall, "ok": ok, "rate": ok / download_s}


def run_kale(sample: Path, lake: Path, extra: list[str]) -> dict:
    shutil.rmtree(lake, ignore_errors=True)
    sets = [
        f"lake.root={lake}",
        f"ingest.input={sample / 'metadata'}",
        "spark.master=local[2]",
        "fetch.allow_networks=[127.0.0.0/8]",
        *extra,
    ]
    base = [sys.executable, "-m", "kale_spark.cli.commands"]
    args = [a for s in sets for a in ("--set", s)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    _run([*base, "ingest", "--config", str(ROOT / "conf" / "local.yaml"), *args], env)
    wall = _run([*base, "fetch", "--config", str(ROOT / "conf" / "local.yaml"), *args], env)
    from deltalake import DeltaTable

    runs = DeltaTable(str(lake / "runs")).to_pandas()
    run = runs[runs["stage"] == "fetch"].sort_values("started_at").iloc[-1]
    counts = dict(run["counts"])
    ok = int(counts.get("status.ok", 0))
    return {
        "stage_s": float(run["duration_s"]),
        "cli_wall_s": wall,
        "ok": ok,
        "rate": ok / float(run["duration_s"]),
        "rate_cli_wall": ok / wall,
    }


def event_log_sets(directory: str | None) -> list[str]:
    """kale --set values that write Spark's event log (plain JSON lines) to ``directory``."""
    if not directory:
        return []
    Path(directory).mkdir(parents=True, exist_ok=True)
    conf = {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": Path(directory).resolve().as_uri(),
        "spark.eventLog.compress": "false",
    }
    return [f"spark.conf={json.dumps(conf)}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--workdir", default="/tmp/kale-fetch-bench")
    parser.add_argument("--max-side", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kale-set", action="append", default=[], help="extra kale --set")
    parser.add_argument("--event-log", help="write Spark's JSON event log of `kale fetch` here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from kale_spark.sources.sample import generate_sample

    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    sample = work / "sample"
    shutil.rmtree(sample, ignore_errors=True)
    log.info("writing %d images under %s", args.images, sample)
    generate_sample(
        sample,
        args.images,
        seed=args.seed,
        base_url=f"http://127.0.0.1:{port}",
        max_side=args.max_side,
        shard_rows=args.images,
    )
    server = _server(sample, port)
    try:
        meta = sample / "metadata" / "part-00000.parquet"
        i2d = run_img2dataset(meta, work / "img2dataset", args.images)
        kale = run_kale(sample, work / "lake", [*args.kale_set, *event_log_sets(args.event_log)])
    finally:
        server.terminate()
        server.wait(timeout=10)
    log.info("img2dataset: %s", i2d)
    log.info("kale: %s", kale)
    print(
        json.dumps(
            {
                "images": args.images,
                "kale": round(kale["rate"], 1),
                "img2dataset": round(i2d["rate"], 1),
                "kale_over_img2dataset": round(kale["rate"] / i2d["rate"], 2),
                "kale_stage_s": round(kale["stage_s"], 1),
                "kale_cli_wall_s": round(kale["cli_wall_s"], 1),
                "kale_over_img2dataset_cli_wall": round(kale["rate_cli_wall"] / i2d["rate"], 2),
                "img2dataset_download_s": round(i2d["download_s"], 1),
                "img2dataset_wall_s": round(i2d["wall_s"], 1),
                "kale_over_img2dataset_cli_wall_both": round(
                    (kale["ok"] / kale["cli_wall_s"]) / (i2d["ok"] / i2d["wall_s"]), 2
                ),
                "ok": {"kale": kale["ok"], "img2dataset": i2d["ok"]},
            }
        ),
        flush=True,  # before any native library's exit-time abort can lose it
    )


if __name__ == "__main__":
    main()
