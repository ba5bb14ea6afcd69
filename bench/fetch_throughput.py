"""`kale fetch` against img2dataset's `download()`, whole command against whole command.

    .venv/bin/python bench/fetch_throughput.py --urls 1000,3000,10000 --repeats 3

For each size N (``--urls``, default 3000):

1. Writes a DataComp-format sample of N drawn images (JPEG/PNG/WebP, up to
   --max-side px) whose URLs point at one static server on 127.0.0.1 (``--server``:
   nginx by default, with one worker and no access log, as the independent check; or
   Python's http.server), and ingests it once into a template lake with
   `kale ingest` (untimed: the lake is "already ingested", as after a user's ingest).
2. Repeats (``--repeats``, default 3), alternating which tool goes first:
   - kale: a fresh copy of the template lake, then `kale fetch` exactly as a user
     types it (the `kale` console script, local[2]): JVM start, session, planning,
     fetch, decode/resize, the Delta commit. The clock is the process's wall time.
   - img2dataset: `download()` in its own Python process from the same metadata
     parquet (its input, as `samples` is kale's): the clock is that process's wall
     time, imports included; output webdataset shards.
3. The ratio of a repeat is (kale ok rows / kale wall) / (img2dataset ok / its wall);
   `kale_over_img2dataset` is the median over repeats, with `_min` and `_max`.

Same work for both: 490 px on the longer side, never enlarged (img2dataset
``keep_ratio_largest`` + ``resize_only_if_bigger``; kale ``fetch.image.resize_mode=
longer``, ``upscale=false``), area downscaling (img2dataset's default
``downscale_interpolation="area"``; kale ``fetch.image.resample=area``), JPEG at
quality 90 (img2dataset ``encode_quality=90``; kale ``fetch.image.quality=90``), sha256
of the bytes, 2 retries, 32 threads per process or task and two of those on this
2-core machine. kale's per-host politeness is off (``fetch.per_host_concurrency=32``,
every host salted over all tasks): img2dataset has none, and the one local server is
a single host. Face blurring (DataComp's bbox column) is off: kale does not blur.

Figures go to bench/figures/fetch-cpu.json with machine, cores, date, commit, command
and the load average (the machine may be shared: noisy). The last line printed is one
JSON object with the figures. Run by hand (`make bench-fetch`), never by the tests.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench.fetch_throughput")
STEP_TIMEOUT_S = 1800
FIGURES = ROOT / "bench" / "figures" / "fetch-cpu.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serving(proc: subprocess.Popen, port: int, failure: str) -> subprocess.Popen:
    """``proc`` once it accepts connections on ``port`` (10 s at most; killed if not)."""
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(failure)


def _server(directory: Path, port: int) -> subprocess.Popen:
    """Python's static server in its own process (its threads do not share kale's GIL);
    it takes a good share of the 2 cores from both clients."""
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
    return _serving(proc, port, "static server did not start")


NGINX_CONF = """
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 100000;
    client_body_temp_path {work}/nginx-tmp;
    proxy_temp_path {work}/nginx-tmp;
    fastcgi_temp_path {work}/nginx-tmp;
    uwsgi_temp_path {work}/nginx-tmp;
    scgi_temp_path {work}/nginx-tmp;
    types {{ image/jpeg jpg; image/png png; image/webp webp; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def _nginx(directory: Path, port: int) -> subprocess.Popen:
    """nginx on loopback (one worker, no access log): the server the independent check
    uses, and one that leaves the clients nearly all the CPU."""
    conf = directory / "nginx.conf"
    (directory / "nginx-tmp").mkdir(exist_ok=True)
    conf.write_text(NGINX_CONF.format(work=directory, port=port, root=directory))
    proc = subprocess.Popen([_nginx_binary(), "-c", str(conf), "-p", str(directory)])
    return _serving(proc, port, f"nginx did not start (see {directory}/nginx-error.log)")


def _nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if not found:
        raise SystemExit("--server nginx: no nginx binary (apt-get install nginx-light)")
    return found


def _run(cmd: list[str], env: dict | None = None) -> float:
    """Run a command (output discarded) and return its wall time."""
    log.info("running: %s", " ".join(cmd))
    started = time.monotonic()
    subprocess.run(cmd, check=True, timeout=STEP_TIMEOUT_S, env=env, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


_I2D_SCRIPT = """
import json, sys
import img2dataset
img2dataset.download(**json.loads(sys.argv[1]))
"""

QUALITY = 90
RESOLUTION = 490


def i2d_kwargs(meta: Path, out: Path, images: int) -> dict:
    """DataComp's download settings at kale's resolution, resize and quality."""
    return {
        "url_list": str(meta),
        "input_format": "parquet",
        "url_col": "url",
        "caption_col": "text",
        "output_format": "webdataset",
        "output_folder": str(out),
        "processes_count": 2,
        "thread_count": 32,
        "image_size": RESOLUTION,
        "resize_mode": "keep_ratio_largest",
        "resize_only_if_bigger": True,
        "downscale_interpolation": "area",
        "encode_format": "jpg",
        "encode_quality": QUALITY,
        "compute_hash": "sha256",
        "save_additional_columns": ["uid"],
        # DataComp writes 10000 per shard; at bench size that is one shard and one
        # process, so shards are sized to give both processes work.
        "number_sample_per_shard": max(1, -(-images // 8)),
        "retries": 2,
        "timeout": 10,
        "enable_wandb": False,
        "distributor": "multiprocessing",
    }


def run_img2dataset(meta: Path, out: Path, images: int) -> dict:
    """img2dataset.download in its own process; the clock is the process's wall time."""
    shutil.rmtree(out, ignore_errors=True)
    kwargs = i2d_kwargs(meta, out, images)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    wall = _run([sys.executable, "-c", _I2D_SCRIPT, json.dumps(kwargs)], env)
    ok = sum(json.loads(Path(f).read_text())["successes"] for f in glob.glob(f"{out}/*_stats.json"))
    return {"wall_s": wall, "ok": ok}


KALE_SETS = (
    "spark.master=local[2]",
    "fetch.allow_networks=[127.0.0.0/8]",
    "fetch.concurrency=32",
    "fetch.retries=2",
    f"fetch.image.resolution={RESOLUTION}",
    "fetch.image.resize_mode=longer",
    "fetch.image.upscale=false",
    "fetch.image.resample=area",
    f"fetch.image.quality={QUALITY}",
    # Politeness off, as img2dataset: the local server is one host.
    "fetch.per_host_concurrency=32",
    "fetch.host_rows_per_task=1",
    "fetch.host_salt=64",
)


def kale_command(lake: Path, metadata: Path, extra: list[str]) -> list[str]:
    """`kale fetch` as a user runs it (the console script beside this interpreter)."""
    sets = [f"lake.root={lake}", f"ingest.input={metadata}", *KALE_SETS, *extra]
    kale = str(Path(sys.executable).with_name("kale"))
    return [
        kale,
        "--config",
        str(ROOT / "conf" / "local.yaml"),
        *(a for s in sets for a in ("--set", s)),
    ]


def ingest_template(sample: Path, lake: Path) -> None:
    """The already-ingested lake every kale repeat starts from (untimed)."""
    shutil.rmtree(lake, ignore_errors=True)
    cmd = kale_command(lake, sample / "metadata", [])
    cmd.insert(1, "ingest")
    _run(cmd)


def run_kale(template: Path, lake: Path, sample: Path, extra: list[str]) -> dict:
    """A fresh copy of the ingested lake, then `kale fetch`, timed as a process."""
    shutil.rmtree(lake, ignore_errors=True)
    shutil.copytree(template, lake)
    cmd = kale_command(lake, sample / "metadata", extra)
    cmd.insert(1, "fetch")
    wall = _run(cmd)
    from deltalake import DeltaTable

    runs = DeltaTable(str(lake / "runs")).to_pandas()
    run = runs[runs["stage"] == "fetch"].sort_values("started_at").iloc[-1]
    ok = int(dict(run["counts"]).get("status.ok", 0))
    return {"wall_s": wall, "ok": ok, "stage_s": float(run["duration_s"])}


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


def one_size(work: Path, port: int, n: int, args: argparse.Namespace) -> dict:
    """Both tools on N URLs, ``args.repeats`` times, alternating which goes first."""
    from kale_spark.sources.sample import generate_sample

    sample = work / f"urls-{n}"
    shutil.rmtree(sample, ignore_errors=True)
    log.info("writing %d images under %s", n, sample)
    generate_sample(
        sample,
        n,
        seed=args.seed,
        base_url=f"http://127.0.0.1:{port}/{sample.name}",
        max_side=args.max_side,
        shard_rows=n,
    )
    template = work / f"lake-{n}-ingested"
    ingest_template(sample, template)
    meta = sample / "metadata" / "part-00000.parquet"
    extra = [*args.kale_set, *event_log_sets(args.event_log)]
    kale, i2d = [], []
    for r in range(args.repeats):
        order = ("kale", "img2dataset") if r % 2 == 0 else ("img2dataset", "kale")
        for tool in order:
            if tool == "kale":
                kale.append(run_kale(template, work / "lake", sample, extra))
            else:
                i2d.append(run_img2dataset(meta, work / "img2dataset", n))
            log.info(
                "%s at %d URLs, repeat %d: %s", tool, n, r, (kale if tool == "kale" else i2d)[-1]
            )
    ratios = [
        (k["ok"] / k["wall_s"]) / (i["ok"] / i["wall_s"]) for k, i in zip(kale, i2d, strict=True)
    ]
    return {
        "kale_over_img2dataset": round(statistics.median(ratios), 3),
        "kale_over_img2dataset_min": round(min(ratios), 3),
        "kale_over_img2dataset_max": round(max(ratios), 3),
        "ratios": [round(x, 3) for x in ratios],
        "kale_wall_s": [round(k["wall_s"], 2) for k in kale],
        "kale_stage_s": [round(k["stage_s"], 2) for k in kale],
        "img2dataset_wall_s": [round(i["wall_s"], 2) for i in i2d],
        "ok": {"kale": [k["ok"] for k in kale], "img2dataset": [i["ok"] for i in i2d]},
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def provenance() -> dict:
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "machine": f"{platform.node()} ({model})",
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--urls", default="3000", help="sizes, comma separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/kale-fetch-bench")
    parser.add_argument("--max-side", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kale-set", action="append", default=[], help="extra kale --set")
    parser.add_argument("--event-log", help="write Spark's JSON event log of `kale fetch` here")
    parser.add_argument("--out", default=str(FIGURES), help="figures JSON ('' = none)")
    parser.add_argument(
        "--server",
        choices=("nginx", "python"),
        default="nginx",
        help="the local image server: nginx (as the independent check) or Python's http.server",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    same = i2d_kwargs(Path("-"), Path("-"), 0)
    for per_run in ("url_list", "output_folder", "number_sample_per_shard"):
        same.pop(per_run)
    figures = {**provenance(), "settings": {"img2dataset": same, "kale": list(KALE_SETS)}}
    port = _free_port()
    figures["server"] = args.server
    server = (_nginx if args.server == "nginx" else _server)(work, port)
    try:
        sizes = [int(x) for x in args.urls.split(",") if x.strip()]
        figures["urls"] = {str(n): one_size(work, port, n, args) for n in sizes}
    finally:
        server.terminate()
        server.wait(timeout=10)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
        log.info("wrote %s", args.out)
    # before any native library's exit-time abort can lose it
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
