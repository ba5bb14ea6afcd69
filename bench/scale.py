"""Scale: each stage's whole-command cost at two sizes ten times apart.

    make bench-scale   (= .venv/bin/python bench/scale.py)
    .venv/bin/python bench/scale.py [--model-rows 10000] [--rows 100000] [--stages ...]

A stage whose cost grows linearly with its rows has ``growth`` = (large_s / small_s)
/ 10 near 1 (fixed start-up cost pulls it below 1; work that grows with the square of
the table pushes it above). Every timed run is the command a user runs (``kale
<stage> --config conf/local.yaml --set ...``), in its own process, JVM start
included; its input lake is written beforehand by another process.

- Model stages (caption, augment, student-caption) at ``--model-rows`` N and 10N:
  64-pixel images and the tiny models at exactly one new token, so Spark's machinery,
  not the model, sets the pace (as on many fast GPUs).
- ingest, filter and publish at ``--rows`` and 10x: synthetic DataComp metadata
  (1% bad rows); filter and publish read synthetic captions (labelled in the output).
- ``caption_over_raw``: kale's caption images/s at 10N over a plain loop of the
  project's own engine (models/inference.py: prefetch, token budgets, the same batch
  size, torch threads = cores) over the same images, a whole process reading the
  images table's Parquet files and writing its captions to Parquet.
- ``ingest_over_plain``: kale ingest over a plain Spark job (read, validity filter,
  dedupe on uid, Delta write), a whole process, at the larger size.
- ``--master standalone`` (the default): every timed kale command, and the plain Spark
  baseline, drives a standalone cluster started on this machine (one worker of
  ``--cores`` cores, one executor of all of them), as a cluster user runs kale: the
  driver JVM plans and commits and runs no task. ``--master local``: ``local[cores]``,
  where the driver JVM is also the executor, so its memory grows with what the tasks
  hold (Spark's buffers, Delta's writers), not with what the driver holds.
- ``driver_peak_rss_mb``: peak RSS of the driver (the `kale` process and its JVM;
  Python workers and the cluster's executor excluded) at both sizes, with its two
  parts (``driver_python_peak_mb``, ``driver_jvm_peak_mb``).
- ``rows_per_file``: rows over data files the run added to its output table;
  ``files_per_commit``: the most files one commit of the run added.

Prints one JSON line and writes it to ``bench/figures/scale-cpu.json`` with the
machine, date, commit and command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

log = logging.getLogger("bench.scale")

MODEL_STAGES = ("caption", "augment", "student_caption")
OTHER_STAGES = ("ingest", "filter", "publish")
EXECUTOR_MEMORY = "4g"
WORKER_MEMORY = "5g"
TARGET = {"growth": 1.15, "caption_over_raw": 0.85, "rss_growth": 1.25, "ingest_over_plain": 0.5}
CAPTION_KEY = ("tiny:vlm", "tiny-v1", "dense_v1")  # what augment pairs with


# ---------------------------------------------------------------- measuring a command


def _is_worker(proc) -> bool:
    cmd = " ".join(proc.cmdline())
    return "pyspark.daemon" in cmd or "pyspark.worker" in cmd


def timed(
    cmd: list[str], env: dict[str, str] | None = None, log_to: Path | None = None
) -> dict[str, float]:
    """Run `cmd` to the end; wall seconds, peak RSS of its tree and of its driver part.
    Its output goes to `log_to` when given."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peaks = {"tree": 0, "driver": 0, "driver_python": 0, "driver_jvm": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                root = psutil.Process(proc.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            tree = python = jvm = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    tree += rss
                    if p.pid == proc.pid:
                        python = rss
                    elif p.name() == "java" and p.parent().name() != "java":
                        jvm += rss  # a "java" child of the JVM is a spawn not yet exec'd
                except psutil.Error:
                    pass
            # The driver is the kale process and its JVM. Other processes in its tree
            # are Python workers (local mode) or short-lived children the JVM spawns
            # (Hadoop's local file system runs `chmod`): until it execs, such a child
            # shares the JVM's pages and would count them twice.
            driver = python + jvm
            for key, value in (("tree", tree), ("driver", driver)):
                peaks[key] = max(peaks[key], value)
            peaks["driver_python"] = max(peaks["driver_python"], python)
            peaks["driver_jvm"] = max(peaks["driver_jvm"], jvm)
            done.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if log_to is not None:
        log_to.write_bytes(out)
    if proc.returncode != 0:
        sys.stderr.write(out.decode(errors="replace")[-6000:])
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited with {proc.returncode}")
    return {
        "seconds": round(seconds, 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "tree_peak_mb": round(peaks["tree"] / 2**20, 1),
        "driver_peak_mb": round(peaks["driver"] / 2**20, 1),
        "driver_python_peak_mb": round(peaks["driver_python"] / 2**20, 1),
        "driver_jvm_peak_mb": round(peaks["driver_jvm"] / 2**20, 1),
    }


def kale(stage: str, root: Path, args: argparse.Namespace, *extra: str) -> dict[str, float]:
    cmd = [str(REPO / ".venv" / "bin" / "kale"), stage.replace("_", "-")]
    cmd += ["--config", str(REPO / "conf" / "local.yaml")]
    for setting in (*settings(root, args), *extra):
        cmd += ["--set", setting]
    # On the standalone cluster the executors' Python workers run the interpreter the
    # driver names (spark.pyspark.python is local-only in kale's session).
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    return timed(cmd, env=env, log_to=root / f"{stage}.log")


def master(args: argparse.Namespace) -> str:
    return args.master_url or f"local[{args.cores}]"


def settings(root: Path, args: argparse.Namespace) -> list[str]:
    """The overrides every timed kale command gets: its lake, the cores, fast models."""
    return [
        f"lake.root={root / 'lake'}",
        f"spark.master={master(args)}",
        f"spark.shuffle_partitions={args.cores}",
        # One executor of every core and the worker's memory (standalone; ignored locally).
        f"spark.conf={{spark.executor.memory: {EXECUTOR_MEMORY}, "
        f"spark.executor.cores: '{args.cores}'}}",
        f"models.cache_dir={args.workdir / 'models'}",
        *[
            f"{section}.{key}={value}"
            for section in ("caption", "augment")
            for key, value in (
                ("batch_size", args.batch_size),
                ("generation.max_new_tokens", 1),
                ("generation.min_new_tokens", 1),
            )
        ],
        f"student.caption.batch_size={args.batch_size}",
        "student.caption.generation.max_new_tokens=1",
        "student.caption.generation.min_new_tokens=1",
        # Exports as a release would be cut (the local profile's 50-row shards and its
        # release browser are for the demo's 120 rows).
        "publish.webdataset=false",
        "publish.rows_per_shard=10000",
        "publish.browser=false",
    ]


def helper(name: str, root: Path, rows: int, args: argparse.Namespace) -> None:
    """Run one of this file's setup functions in a child process (local Spark)."""
    cmd = child_cmd(name, root, rows, args)
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def child_cmd(name: str, root: Path, rows: int, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, __file__, "--child", name, "--root", str(root), "--n", str(rows)]
    cmd += ["--cores", str(args.cores), "--batch-size", str(args.batch_size)]
    cmd += ["--workdir", str(args.workdir)]
    return cmd + (["--master-url", args.master_url] if args.master_url else [])


def table_files(table_dir: Path, run_id: str | None = None) -> dict[str, int]:
    """Data files, rows and commits that added files (of `run_id` only when given),
    from the Delta log; the most files one commit added."""
    files = rows = commits = most = 0
    for f in sorted((table_dir / "_delta_log").glob("*.json")):
        adds, info = [], {}
        for line in f.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                adds.append(action["add"])
            info = action.get("commitInfo", info)
        meta = json.loads(info.get("userMetadata") or "{}")
        if not adds or (run_id is not None and meta.get("run_id") != run_id):
            continue
        commits += 1
        files += len(adds)
        most = max(most, len(adds))
        rows += sum(json.loads(a.get("stats") or "{}").get("numRecords", 0) for a in adds)
    return {"files": files, "rows": rows, "commits": commits, "files_per_commit": most}


def last_run(lake_dir: Path, stage: str) -> dict[str, Any]:
    """The `runs` row of the stage's latest run, read from the runs table's Parquet."""
    import pyarrow.parquet as pq

    rows = []
    for f in (lake_dir / "runs").glob("*.parquet"):
        rows += pq.read_table(f).to_pylist()
    rows = [r for r in rows if r["stage"] == stage]
    if not rows:
        raise RuntimeError(f"no runs row for {stage} under {lake_dir}")
    row = max(rows, key=lambda r: r["started_at"])
    row["counts"] = dict(row["counts"] or [])
    row["metrics"] = dict(row["metrics"] or [])
    return row


# ---------------------------------------------------------------- the stages


TABLE_OF = {
    "caption": "dense_captions",
    "augment": "stage1_captions",
    "student_caption": "stage2_captions",
    "ingest": "samples",
    "filter": "filtered_captions",
    "publish": "kale",
}
SETUP_OF = {
    "caption": "images",
    "augment": "dense",
    "student_caption": "student",
    "ingest": "metadata",
    "filter": "captions",
    "publish": "captions",
}


def stage_at(stage: str, rows: int, args: argparse.Namespace) -> dict[str, Any]:
    """Set up the stage's input at `rows`, time the stage's command, read what it wrote."""
    root = args.workdir / f"{stage}-{rows}"
    shutil.rmtree(root, ignore_errors=True)
    filtered = args.workdir / f"filter-{rows}" / "lake"
    if stage == "publish" and (filtered / "filtered_captions").is_dir():
        # The filter stage measured at this size left publish's input: a copy of its
        # lake saves a second filter run (Delta's log holds relative paths).
        shutil.copytree(filtered, root / "lake")
    else:
        root.mkdir(parents=True)
        helper(SETUP_OF[stage], root, rows, args)
        if stage == "publish":
            kale("filter", root, args)
    extra: list[str] = []
    if stage == "ingest":
        extra = [f"ingest.input={root / 'metadata'}"]
    if stage == "student_caption":
        extra = [f"student.caption.id={args.workdir / 'student'}", "split.teacher_fraction=0.0"]
    if stage in ("caption", "augment"):
        extra = ["split.teacher_fraction=1.0"]
    timing = kale(stage, root, args, *extra)
    run = last_run(root / "lake", stage.replace("_", "-"))
    written = table_files(root / "lake" / TABLE_OF[stage], run["run_id"])
    out = {
        **timing,
        "rows": rows,
        "files": written["files"],
        "commits": written["commits"],
        "files_per_commit": written["files_per_commit"],
        "rows_per_file": round(written["rows"] / written["files"], 1) if written["files"] else None,
        "counts": {k: v for k, v in run["counts"].items() if not k.startswith("progress.")},
        "metrics": run["metrics"],
    }
    log.info("%s at %d rows: %s", stage, rows, json.dumps(out))
    return out


def measure(stage: str, small: int, args: argparse.Namespace) -> dict[str, Any]:
    a, b = stage_at(stage, small, args), stage_at(stage, small * 10, args)
    return {
        "small_rows": small,
        "large_rows": small * 10,
        "small_s": a["seconds"],
        "large_s": b["seconds"],
        "growth": round(b["seconds"] / a["seconds"] / 10, 3),
        "rows_per_file": b["rows_per_file"],
        "files_per_commit": b["files_per_commit"],
        "commits": b["commits"],
        "driver_peak_rss_mb": [a["driver_peak_mb"], b["driver_peak_mb"]],
        "rss_growth": round(b["driver_peak_mb"] / a["driver_peak_mb"], 3),
        "driver_jvm_peak_mb": [a["driver_jvm_peak_mb"], b["driver_jvm_peak_mb"]],
        "driver_python_peak_mb": [a["driver_python_peak_mb"], b["driver_python_peak_mb"]],
        "large": b,
    }


def caption_over_raw(args: argparse.Namespace) -> dict[str, Any]:
    """The raw engine loop over the 10N images the kale caption run read."""
    root = args.workdir / f"caption-{args.model_rows * 10}"
    cmd = child_cmd("raw", root, args.model_rows * 10, args)
    return timed(cmd, env={**os.environ, "PYTHONPATH": str(REPO)})


def ingest_over_plain(args: argparse.Namespace) -> dict[str, Any]:
    root = args.workdir / f"ingest-{args.rows * 10}"
    cmd = child_cmd("plain", root, args.rows * 10, args)
    return timed(cmd, env={**os.environ, "PYTHONPATH": str(REPO), "PYSPARK_PYTHON": sys.executable})


# ---------------------------------------------------------------- children: inputs


def _session(root: Path, args: argparse.Namespace):
    from kale_spark.config import Config, build
    from kale_spark.lake.tables import Lake
    from kale_spark.spark.session import get_session

    cfg = build(
        Config,
        {
            "lake": {"root": str(root / "lake")},
            "spark": {"master": f"local[{args.cores}]", "shuffle_partitions": args.cores},
        },
    )
    spark = get_session(cfg.spark)
    return spark, Lake(spark, cfg.lake)


def _uids(n: int) -> list[str]:
    import hashlib

    return [hashlib.md5(str(i).encode()).hexdigest() for i in range(n)]


def _jpegs(n: int) -> list[bytes]:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        tile = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(tile).resize((64, 64), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


ALT_WORDS = "red bus London street photo dog park Paris tower river sunset shoe Nike".split()


def _texts(n: int, seed: int, words: int) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ALT_WORDS), (n, words))
    return [" ".join(ALT_WORDS[j] for j in row) for row in picks]


def _write(spark, lake, table: str, frame, table_schema, rows_per_file: int) -> None:
    df = spark.createDataFrame(frame[[f.name for f in table_schema.fields]], table_schema)
    lake.ensure_table(table, table_schema, change_feed=True)
    parts = max(1, len(frame) // rows_per_file)
    lake.append(table, df.repartition(parts), {"stage": "bench-setup"})


def setup_images(root: Path, n: int, args: argparse.Namespace) -> None:
    """`images`: n ok rows of 64 px JPEGs with alt-texts, in files of 2000 rows (fetch's
    task size)."""
    import datetime as dt

    import pandas as pd

    from kale_spark import schema

    spark, lake = _session(root, args)
    frame = pd.DataFrame({"uid": _uids(n), "image": _jpegs(n), "alt_text": _texts(n, 1, 8)})
    frame = frame.assign(
        status="ok", attempts=1, width=64, height=64, mime="image/jpeg", source="bench",
        fetched_at=dt.datetime.now(dt.timezone.utc), run_id="bench",
    )  # fmt: skip
    for f in schema.IMAGES_SCHEMA.fields:
        if f.name not in frame:
            frame[f.name] = None
    _write(spark, lake, schema.IMAGES, frame, schema.IMAGES_SCHEMA, 2000)
    spark.stop()


def setup_student(root: Path, n: int, args: argparse.Namespace) -> None:
    """The images table, and (once per workdir) the untrained tiny student."""
    from kale_spark.config import load_config
    from kale_spark.student.model import build_base

    setup_images(root, n, args)
    spark, lake = _session(root, args)
    from kale_spark import schema

    lake.ensure_table(schema.SAMPLES, schema.SAMPLES_SCHEMA)  # its version is lineage
    spark.stop()
    target = args.workdir / "student"
    if not (target / "config.json").is_file():
        cfg = load_config(str(REPO / "conf" / "local.yaml"), [])
        build_base(cfg.student, target, cache_dir=args.workdir / "models")


def setup_dense(root: Path, n: int, args: argparse.Namespace) -> None:
    """`dense_captions`: n synthetic dense captions of the local profile's caption key."""
    import datetime as dt

    import pandas as pd

    from kale_spark import schema

    spark, lake = _session(root, args)
    model, revision, prompt = CAPTION_KEY
    frame = pd.DataFrame(
        {"uid": _uids(n), "dense_caption": _texts(n, 2, 24), "alt_text": _texts(n, 3, 8)}
    ).assign(
        prompt_tokens=40, new_tokens=24, model=model, model_revision=revision, prompt_id=prompt,
        gen_params="{}", source_versions=[{"images": 0}] * n, run_id="bench",
        created_at=dt.datetime.now(dt.timezone.utc),
    )  # fmt: skip
    _write(spark, lake, schema.DENSE_CAPTIONS, frame, schema.DENSE_CAPTIONS_SCHEMA, 20000)
    lake.ensure_table(schema.SAMPLES, schema.SAMPLES_SCHEMA)  # augment records its version
    spark.stop()


def setup_metadata(root: Path, n: int, args: argparse.Namespace) -> None:
    """DataComp-format metadata parquet: n rows in files of 100k, 1% bad (no url, a bad
    uid, empty text, a duplicate uid)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(4)
    uids = np.array(_uids(n), dtype=object)
    urls = np.array([f"https://img.example.com/{u[:12]}.jpg" for u in uids], dtype=object)
    texts = np.array(_texts(n, 5, 10), dtype=object)
    bad = rng.random(n) < 0.01
    kind = rng.integers(0, 4, n)
    urls[bad & (kind == 0)] = None
    uids[bad & (kind == 1)] = "not-a-uid"
    texts[bad & (kind == 2)] = "  "
    dup = np.flatnonzero(bad & (kind == 3))
    uids[dup] = uids[(dup + 1) % n]
    out = root / "metadata"
    out.mkdir(parents=True)
    for i, start in enumerate(range(0, n, 100_000)):
        sl = slice(start, min(n, start + 100_000))
        m = sl.stop - sl.start
        table = pa.table(
            {
                "uid": pa.array(uids[sl].tolist(), pa.string()),
                "url": pa.array(urls[sl].tolist(), pa.string()),
                "text": pa.array(texts[sl].tolist(), pa.string()),
                "original_width": rng.integers(200, 2000, m),
                "original_height": rng.integers(200, 2000, m),
                "sha256": [None] * m,
                "clip_b32_similarity_score": rng.random(m),
                "clip_l14_similarity_score": rng.random(m),
            }
        )
        pq.write_table(table, out / f"{i:05d}.parquet")


def setup_captions(root: Path, n: int, args: argparse.Namespace) -> None:
    """`samples` and `stage1_captions`: n synthetic rows (1 in 20 with a leaked sentence)."""
    import datetime as dt

    import pandas as pd

    from kale_spark import schema

    spark, lake = _session(root, args)
    now = dt.datetime.now(dt.timezone.utc)
    uids, alts = _uids(n), _texts(n, 6, 8)
    samples = pd.DataFrame({"uid": uids, "text": alts}).assign(
        url=[f"https://img.example.com/{u[:12]}.jpg" for u in uids],
        source_file="bench", ingested_at=now, run_id="bench",
    )  # fmt: skip
    for f in schema.SAMPLES_SCHEMA.fields:
        if f.name not in samples:
            samples[f.name] = None
    _write(spark, lake, schema.SAMPLES, samples, schema.SAMPLES_SCHEMA, 100_000)
    dense = _texts(n, 7, 30)
    leak = " As indicated in Sentence 1, the photo was taken in Paris."
    raw = [
        f"{alt.capitalize()} shown in a photo. {d.capitalize()}." + (leak if i % 20 == 0 else "")
        for i, (alt, d) in enumerate(zip(alts, dense, strict=True))
    ]
    model, revision, prompt = CAPTION_KEY
    stage1 = pd.DataFrame(
        {"uid": uids, "alt_text": alts, "dense_caption": dense, "caption_raw": raw}
    ).assign(
        dense_model=model, dense_prompt_id=prompt, prompt_tokens=80, new_tokens=60,
        model="tiny:lm", model_revision=revision, prompt_id="fuse_capsfusion_v1",
        gen_params="{}", source_versions=[{"samples": 0}] * n, run_id="bench", created_at=now,
    )  # fmt: skip
    _write(spark, lake, schema.STAGE1_CAPTIONS, stage1, schema.STAGE1_CAPTIONS_SCHEMA, 100_000)
    spark.stop()


# ---------------------------------------------------------------- children: baselines


def raw_loop(root: Path, n: int, args: argparse.Namespace) -> None:
    """The project's own engine in a plain loop: the images table's Parquet files in,
    captions to a Parquet file out; torch threads = cores."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kale_spark.config import load_config
    from kale_spark.models.device import set_torch_threads
    from kale_spark.models.inference import engine_for, run_partition

    cfg = load_config(str(REPO / "conf" / "local.yaml"), settings(root, args))
    set_torch_threads(args.cores)
    spec = cfg.caption
    engine = engine_for("caption", spec, str(args.workdir / "models"))
    files = sorted((root / "lake" / "images").glob("*.parquet"))

    def frames():
        for f in files:
            for batch in pq.ParquetFile(f).iter_batches(256, columns=["uid", "image"]):
                yield batch.to_pandas()

    out = [
        frame[["uid", "text"]]
        for frame in run_partition(
            engine,
            frames(),
            batch_size=spec.batch_size,
            max_batch_tokens=spec.max_batch_tokens,
            new_tokens=1,
        )
    ]
    import pandas as pd

    result = pd.concat(out, ignore_index=True)
    pq.write_table(pa.Table.from_pandas(result), root / "raw-captions.parquet")
    if len(result) != n:
        raise RuntimeError(f"raw loop captioned {len(result)} of {n}")


def plain_ingest(root: Path, n: int, args: argparse.Namespace) -> None:
    """What a user writes without kale: read, filter the valid rows, one row per uid,
    a Delta write; the same validity rules as kale's on uid, url and text."""
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from kale_spark.spark.jars import SPARK_PROVIDED_EXCLUDES, delta_packages

    catalog = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    spark = (
        SparkSession.builder.master(master(args))
        .config("spark.sql.shuffle.partitions", str(args.cores))
        .config("spark.executor.memory", EXECUTOR_MEMORY)
        .config("spark.ui.enabled", "false")
        # Delta's jars as kale resolves them (offline: from the local Maven cache).
        .config("spark.jars.packages", delta_packages())
        .config("spark.jars.excludes", ",".join(SPARK_PROVIDED_EXCLUDES))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", catalog)
        .getOrCreate()
    )
    df = spark.read.parquet(str(root / "metadata"))
    valid = df.where(
        F.lower(F.trim("uid")).rlike("^[0-9a-f]{32}$")
        & F.trim("url").rlike("^https?://[^\\s/?#@]+")
        & (F.length(F.trim("text")) > 0)
    )
    out = valid.dropDuplicates(["uid"]).withColumn("ingested_at", F.current_timestamp())
    out.write.format("delta").mode("overwrite").save(str(root / "plain-samples"))
    spark.stop()


CHILDREN = {
    "images": setup_images,
    "student": setup_student,
    "dense": setup_dense,
    "metadata": setup_metadata,
    "captions": setup_captions,
    "raw": raw_loop,
    "plain": plain_ingest,
}


# ---------------------------------------------------------------- the parent


def provenance(argv: list[str]) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return {
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cpus)",
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit,
        "command": " ".join(["python", "bench/scale.py", *argv]),
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-rows", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--stages", default=",".join(MODEL_STAGES + OTHER_STAGES))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/kale-scale-bench"))
    parser.add_argument("--no-figures", dest="figures", action="store_false")
    parser.add_argument(
        "--master",
        choices=("standalone", "local"),
        default="standalone",
        help="standalone (default): the timed commands drive a standalone cluster of one "
        "worker with --cores cores started on this machine, so the driver JVM runs no "
        "tasks and its memory is the driver's alone; local: local[cores], where the "
        "driver JVM is also the executor",
    )
    parser.add_argument("--master-url", help=argparse.SUPPRESS)
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other stages of bench/figures/scale-cpu.json (each stage: its own date)",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.workdir = args.workdir.resolve()
    if args.child:
        CHILDREN[args.child](args.root, args.n, args)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    figures = REPO / "bench" / "figures" / "scale-cpu.json"
    result: dict[str, Any] = {"stages": {}}
    if args.merge and figures.exists():  # stages measured again replace their entries
        result = json.loads(figures.read_text())
    result.update(provenance(argv))
    with contextlib.ExitStack() as stack:
        if args.master == "standalone":
            from tests.support.standalone import standalone

            cluster = stack.enter_context(
                standalone(args.workdir / "cluster", cores=args.cores, memory=WORKER_MEMORY)
            )
            args.master_url = cluster.url
        measure_all(args, result, argv)
    result["master"] = args.master
    result["summary"] = summary(result)
    result["synthetic"] = (
        "filter and publish read synthetic captions; augment synthetic dense captions"
    )
    result["targets"] = TARGET
    print(json.dumps(result))
    if args.figures:
        figures.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The keys the targets judge, per stage, and whether each target is met: what the
    README quotes from the file."""
    stages = {
        name: {
            "growth": st["growth"],
            "rss_growth": st["rss_growth"],
            "driver_peak_rss_mb": st["driver_peak_rss_mb"],
            "rows_per_file": st["rows_per_file"],
            "files_per_commit": st["files_per_commit"],
            "rows": [st["small_rows"], st["large_rows"]],
            "seconds": [st["small_s"], st["large_s"]],
            "master": st.get("master", "local"),
        }
        for name, st in sorted(result["stages"].items())
    }
    met = {
        "growth": all(s["growth"] <= TARGET["growth"] for s in stages.values()),
        "rss_growth": all(s["rss_growth"] <= TARGET["rss_growth"] for s in stages.values()),
        "caption_over_raw": result.get("caption_over_raw", 0) >= TARGET["caption_over_raw"],
        "ingest_over_plain": result.get("ingest_over_plain", 0) >= TARGET["ingest_over_plain"],
        "model_commit_one_file": all(
            stages[s]["files_per_commit"] == 1 for s in MODEL_STAGES if s in stages
        ),
    }
    ratios = {k: result.get(k) for k in ("caption_over_raw", "ingest_over_plain")}
    return {"stages": stages, **ratios, "met": met}


def measure_all(args: argparse.Namespace, result: dict[str, Any], argv: list[str]) -> None:
    for stage in args.stages.split(","):
        small = args.model_rows if stage in MODEL_STAGES else args.rows
        entry = {**measure(stage, small, args), **provenance(argv), "master": args.master}
        result["stages"][stage] = entry
        if stage == "caption":
            raw = caption_over_raw(args)
            kale_s = result["stages"]["caption"]["large_s"]
            result["caption_raw_s"] = raw["seconds"]
            result["caption_over_raw"] = round(raw["seconds"] / kale_s, 3)
        if stage == "ingest":
            plain = ingest_over_plain(args)
            result["ingest_plain_s"] = plain["seconds"]
            result["ingest_over_plain"] = round(
                plain["seconds"] / result["stages"]["ingest"]["large_s"], 3
            )


if __name__ == "__main__":
    main()
