"""How long `kale browse` takes to write the browser of a large release.

    .venv/bin/python bench/browse_scale.py                       # 10,000 and 100,000 rows
    .venv/bin/python bench/browse_scale.py --rows 100000 --repeats 1

The release is SYNTHETIC: the tables are built in Spark with the shapes kale writes,
not by the pipeline (whose tiny models would take hours to caption 100k images here):

- `kale`: N rows, half stage 1 and half stage 2 (no dense caption), captions of 40 to
  90 generated words, a fifth of the rows with one removed sentence;
- `filtered_captions`: those N rows as kept, plus N/20 rejected captions, with
  removal and reject reasons;
- `images`: one ok image per uid, a photo-like JPEG at the model resolution (490 px)
  - 64 distinct pictures, each row's bytes made unique (16 bytes after the JPEG's
  end), so no Parquet encoding can share them between rows;
- `releases`: one row recording the version as release 1.

The clock covers the whole command as a user runs it, in a fresh process:
`kale browse --config conf/local.yaml --version V --out DIR` (JVM start, Delta reads,
the card's figures over the whole table, the uid-hash sample, its reasons,
thumbnails made from the images table, writing the site). Each size runs `--repeats`
times; the figure is the median with min and max. The lakes are built once and kept
under --workdir. Writes bench/figures/browse-cpu.json; its last line printed is that
JSON. Run by hand, never by the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench.browse_scale")
FIGURES = ROOT / "bench" / "figures" / "browse-cpu.json"
WORDS = (
    "a the photo of image shows tall red blue green small large wooden stone old new city "
    "street river bridge tower house car tree trees people person dog cat table chair window "
    "light dusk morning evening sky cloud mountain beach sea boat market sign store brand "
    "logo text label bottle cup plate food bread fruit flower garden park field road"
).split()
PICTURES = 64


def _jpegs(n: int) -> list[bytes]:
    from bench.common import photo_like

    out = []
    for i in range(n):
        buf = io.BytesIO()
        photo_like((490, 368) if i % 3 else (368, 490), seed=i).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _words_expr(seed: str, lo: int, hi: int):
    """A Spark column: lo..hi words drawn from WORDS by a hash of (uid, seed, i)."""
    from pyspark.sql import functions as F

    words = F.array(*[F.lit(w) for w in WORDS])
    n = F.lit(lo) + F.abs(F.hash("uid", F.lit(seed))) % (hi - lo + 1)
    picks = F.transform(
        F.sequence(F.lit(1), n),
        lambda i: F.element_at(words, F.abs(F.hash("uid", F.lit(seed), i)) % len(WORDS) + 1),
    )
    return F.concat_ws(" ", picks)


def _base(spark, rows: int):
    from pyspark.sql import functions as F

    df = spark.range(rows).withColumn("uid", F.md5(F.col("id").cast("string")))
    stage = F.when(F.col("id") % 2 == 0, "stage1").otherwise("stage2")
    # split() and filter() keep the array's elements non-null, as the kale schema has them.
    one = F.when(F.col("id") % 5 == 0, "As indicated in Sentence 1, the photo is old.")
    removed = F.filter(F.split(one.otherwise(""), "[|]"), lambda x: x != "")
    return (
        df.withColumn("stage", stage)
        .withColumn("url", F.concat(F.lit("https://example.com/img/"), F.col("uid"), F.lit(".jpg")))
        .withColumn("alt_text", _words_expr("alt", 4, 16))
        .withColumn(
            "dense_caption", F.when(stage == "stage1", _words_expr("dense", 30, 80)).otherwise(None)
        )
        .withColumn("caption", _words_expr("caption", 40, 90))
        .withColumn("removed_sentences", removed)
        .withColumn("word_count", F.size(F.split("caption", " ")).cast("int"))
    )


def _shaped(df, values: dict, struct):
    """`df` as `struct`'s columns: `values[name]` or the column itself, cast to its type
    (arrays are built with non-null elements already and are left as they are)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType

    cols = []
    for f in struct.fields:
        col = values[f.name] if f.name in values else F.col(f.name)
        cols.append(
            (col if isinstance(f.dataType, ArrayType) else col.cast(f.dataType)).alias(f.name)
        )
    return df.select(*cols)


def _kale_frame(base):
    from pyspark.sql import functions as F

    from kale_spark import schema

    values = {
        "model": F.when(F.col("stage") == "stage1", "tiny:lm").otherwise("student"),
        "model_revision": F.lit("rev-1"),
        "prompt_id": F.when(F.col("stage") == "stage1", "fuse_capsfusion_v1").otherwise(
            "student_v1"
        ),
        "gen_params": F.lit('{"max_new_tokens":80}'),
        "dense_model": F.when(F.col("stage") == "stage1", "tiny:vlm"),
        "knowledge_retention": (F.col("id") % 11) / 10.0,
        "novel_share": (F.col("id") % 7) / 20.0,
        "novel_share_basis": F.when(
            F.col("stage") == "stage1", schema.BASIS_ALT_AND_DENSE
        ).otherwise(schema.BASIS_ALT_ONLY),
        "caption_run_id": F.lit("synthetic-caption"),
        "filter_run_id": F.lit("synthetic-filter"),
    }
    return _shaped(base, values, schema.KALE_SCHEMA)


def _filtered_frame(kale, spark, rows: int):
    from pyspark.sql import functions as F

    from kale_spark import schema

    reasons = F.transform("removed_sentences", lambda s: F.lit("text_reference"))
    kept = kale.withColumn("caption_raw", F.col("caption")).withColumn("removal_reasons", reasons)
    kept = kept.withColumn("rejected", F.lit(False)).withColumn("reject_reason", F.lit(None))
    rejected = (
        _kale_frame(_base(spark, rows // 20))
        .withColumn("model", F.lit("tiny:lm-rejected"))
        .withColumn("caption_raw", F.lit("Here is the merged caption: a tower."))
        .withColumn("caption", F.lit("a tower."))
        .withColumn("removed_sentences", F.array(F.lit("Here is the merged caption:")))
        .withColumn("removal_reasons", F.array(F.lit("meta_commentary")))
        .withColumn("word_count", F.lit(2))
        .withColumn("rejected", F.lit(True))
        .withColumn("reject_reason", F.lit(schema.REJECT_TOO_SHORT))
    )
    extra = {
        "source_versions": F.create_map(F.lit(schema.SAMPLES), F.lit(1).cast("long")),
        "run_id": F.lit("synthetic-filter"),
        "created_at": F.lit(dt.datetime(2026, 1, 1)),
    }
    both = kept.unionByName(rejected)
    return _shaped(both, extra, schema.FILTERED_CAPTIONS_SCHEMA)


def _images_frame(spark, kale):
    from pyspark.sql import functions as F

    from kale_spark import schema

    pictures = spark.createDataFrame(
        [(i, b) for i, b in enumerate(_jpegs(PICTURES))], "pic int, base binary"
    )
    # 16 unique bytes after the JPEG's end marker: decoders ignore them, encoders can't share.
    image = F.concat(F.col("base"), F.unhex(F.col("uid")))
    joined = kale.select("uid").withColumn("pic", F.abs(F.hash("uid")) % PICTURES)
    joined = joined.join(F.broadcast(pictures), "pic")
    values = {
        "status": F.lit(schema.IMAGE_OK),
        "attempts": F.lit(1),
        "width": F.lit(490),
        "height": F.lit(368),
        "mime": F.lit("image/jpeg"),
        "image": image,
        "sha256": F.sha2(image, 256),
        "run_id": F.lit("synthetic-fetch"),
    }
    fields = [f.name for f in schema.IMAGES_SCHEMA.fields if f.name not in values]
    missing = {name: F.lit(None) for name in fields if name not in joined.columns}
    return _shaped(joined, {**values, **missing}, schema.IMAGES_SCHEMA)


def build_lake(root: Path, rows: int) -> int:
    """Write the synthetic lake under `root` (once); the `kale` version to browse."""
    from kale_spark import schema
    from kale_spark.config import load_config
    from kale_spark.lake.tables import Lake
    from kale_spark.spark.session import get_session

    marker = root / "BUILT.json"
    if marker.exists():
        return json.loads(marker.read_text())["version"]
    shutil.rmtree(root, ignore_errors=True)
    cfg = load_config(ROOT / "conf" / "local.yaml", [f"lake.root={root}"])
    spark = get_session(cfg.spark)
    lake = Lake(spark, cfg.lake)
    commit = {"run_id": "synthetic", "stage": "bench"}
    kale = _kale_frame(_base(spark, rows))
    for name, table_schema, df in (
        (schema.KALE, schema.KALE_SCHEMA, kale),
        (
            schema.FILTERED_CAPTIONS,
            schema.FILTERED_CAPTIONS_SCHEMA,
            _filtered_frame(kale, spark, rows),
        ),
        (schema.IMAGES, schema.IMAGES_SCHEMA, _images_frame(spark, kale)),
    ):
        lake.ensure_table(name, table_schema)
        lake.append(name, df, commit)
        log.info("built %s: %d rows", name, lake.read(name).count())
    version = lake.version(schema.KALE)
    sources = {t: lake.version(t) for t in (schema.FILTERED_CAPTIONS, schema.IMAGES)}
    release = (
        1,
        version,
        dt.datetime(2026, 1, 1),
        rows,
        rows,
        0,
        0,
        sources,
        "bench",
        "bench",
        None,
    )
    lake.ensure_table(schema.RELEASES, schema.RELEASES_SCHEMA)
    lake.append(schema.RELEASES, spark.createDataFrame([release], schema.RELEASES_SCHEMA), commit)
    spark.stop()
    marker.write_text(json.dumps({"rows": rows, "version": version}))
    return version


def time_browse(root: Path, version: int, out: Path, sample_rows: int) -> tuple[float, list[str]]:
    """Seconds of one `kale browse` in a fresh process, and the command."""
    kale = str(Path(sys.executable).with_name("kale"))
    command = [
        kale,
        "browse",
        "--config",
        "conf/local.yaml",
        "--version",
        str(version),
        "--out",
        str(out),
        "--set",
        f"lake.root={root}",
        "--set",
        f"browse.sample_rows={sample_rows}",
    ]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, command


def _site_figures(out: Path) -> dict:
    meta_js = (out / "data" / "meta.js").read_text().splitlines()[1]
    meta = json.loads(meta_js.split(" = ", 1)[1].rstrip(";"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "rows_shown": meta["rows_shown"],
        "rows_total": meta["rows_total"],
        "rejected_total": meta["rejected_total"],
        "thumbnails": len(list((out / "thumbs").iterdir())),
        "site_mb": round(size / 2**20, 2),
    }


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "os": platform.platform(),
    }


def _commit() -> str:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
    )
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample-rows", type=int, default=2000)
    parser.add_argument("--workdir", default="/tmp/kale-browse-bench")
    parser.add_argument("--out", default=str(FIGURES))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = Path(args.workdir)
    sizes, command = {}, []
    for rows in args.rows:
        version = build_lake(work / f"lake-{rows}", rows)
        runs, loads = [], []
        for r in range(args.repeats):
            seconds, command = time_browse(
                work / f"lake-{rows}", version, work / f"site-{rows}", args.sample_rows
            )
            # The machine is shared: the 1-minute load average after each run says how busy.
            loads.append(round(os.getloadavg()[0], 2))
            log.info("%d rows, run %d: %.1f s (load %.2f)", rows, r + 1, seconds, loads[-1])
            runs.append(round(seconds, 2))
        sizes[str(rows)] = {
            "runs_s": runs,
            "median_s": round(statistics.median(runs), 2),
            "min_s": min(runs),
            "max_s": max(runs),
            "load_avg_1m_after_each_run": loads,
            **_site_figures(work / f"site-{rows}"),
        }
    result = {
        "what": "kale browse --version V --out DIR, whole command, on a SYNTHETIC release",
        "synthetic": True,
        "tables": "kale N rows; filtered_captions N kept + N/20 rejected; images N x 490 px JPEG",
        "command": " ".join(command).replace(str(work), "$WORKDIR").replace(f"{ROOT}/", ""),
        "sample_rows": args.sample_rows,
        "sizes": sizes,
        "machine": _machine(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": _commit(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
