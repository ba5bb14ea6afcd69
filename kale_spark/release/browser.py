"""What a release browser shows, selected in Spark; written by kale_spark/release/site.py.

    browse_release(lake, cfg, version, out)     # kale browse --version V --out DIR
    browse_diff(lake, cfg, a, b, out)           # kale browse --from A --to B --out DIR

A browser is bounded by `browse.sample_rows` whatever the table's size. Rows are drawn
by uid hash, with kale_spark/split.py's rule under the salt `kale-browse`: the rows
with the smallest buckets (ties by key). The same uid therefore lands in the sample
of every release and every diff that has it, and a grown release keeps the rows its
sample showed before, bar those pushed out by smaller buckets. Spark keeps a hash
share a little larger than the sample, takes its smallest rows, and only those reach
the driver. The removal reasons and thumbnails are then read for the sample's uids
alone (a filter on a hash set of them); thumbnails are made on the executors, so
only small JPEGs are collected. Reading the image bytes is the one step whose cost
follows the size of the `images` table rather than the sample's: Parquet cannot skip
to a scattered sample of rows, so the image column is scanned once. The card's
figures (caption-length histogram, words by stage) are aggregated over the whole
version by kale_spark/release/charts.py, the same code that draws the dataset card.

The release view shows the version's rows (status `kept`) and, from the
`filtered_captions` version the release was built from, a sample of the captions the
filter rejected (status `rejected`, with their reason), so a reader sees both what
the dataset holds and what the filter kept out.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale_spark import schema, split
from kale_spark.config import Config
from kale_spark.curation.quality import KALE_MEAN_CAPTION_WORDS
from kale_spark.lake.tables import Lake
from kale_spark.release import card, site
from kale_spark.release.export import ReleaseInfo, default_dir, release_info

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

__all__ = [
    "BROWSE_SALT",
    "browse_diff",
    "browse_release",
    "default_diff_dir",
    "hash_sample",
    "publish_browser",
]

BROWSE_SALT = "kale-browse"
BROWSER_DIR = "browser"
# The hash share kept before the top-n: the sample's size times this, plus a floor, so
# a share that falls short of the sample (and needs a second pass) is very unlikely.
SHARE_MARGIN, SHARE_FLOOR = 1.25, 64
KALE_COLUMNS = (
    "uid",
    "url",
    "alt_text",
    "dense_caption",
    "caption",
    "stage",
    "model",
    "model_revision",
    "prompt_id",
    "removed_sentences",
    *site.QUALITY_COLUMNS,
)
# A `kale` row's caption in `filtered_captions` (the gold table has all its columns).
FILTER_KEY = schema.FILTERED_KEY
# Rows per vectorized Parquet batch when the image bytes are read: Spark's default
# (4096) of model-resolution JPEGs is one contiguous buffer per task, more than a local
# driver's default heap holds.
IMAGE_READ_BATCH = 256


def _local(path: str) -> Path:
    if path.startswith("file:"):
        path = path.removeprefix("file:").replace("///", "/", 1)
    if "://" in path or path.startswith("dbfs:"):
        raise ValueError(f"a browser needs a local or mounted path (e.g. /dbfs/...), got {path!r}")
    return Path(path)


def hash_sample(
    df: DataFrame,
    n: int,
    total: int,
    keys: Sequence[str] = ("uid",),
    max_bucket: int | None = None,
) -> list[dict]:
    """The `n` rows of `df` (which has `total` rows) with the smallest uid-hash buckets,
    ties broken by `keys`, as dicts in that order; with `max_bucket`, only rows whose
    bucket is at most that. At most about SHARE_MARGIN * n rows are kept before the
    top-n, so the driver never sees much more than the sample."""
    from pyspark.sql import functions as F

    ranked = df.withColumn("_bucket", split.bucket_col(F.col("uid"), BROWSE_SALT))
    if max_bucket is not None:
        part = ranked.where(F.col("_bucket") <= F.lit(max_bucket).cast("bigint"))
        return _top(part, n, keys)
    share = min(1.0, (SHARE_MARGIN * n + SHARE_FLOOR) / max(total, 1))
    if share < 1.0:
        limit = F.lit(split.threshold(share)).cast("bigint")
        rows = _top(ranked.where(F.col("_bucket") < limit), n, keys)
        if len(rows) >= min(n, total):
            return rows
        log.info("browse: the hash share held %d of %d rows; taking the top of all", len(rows), n)
    return _top(ranked, n, keys)


def _top(ranked: DataFrame, n: int, keys: Sequence[str]) -> list[dict]:
    rows = ranked.orderBy("_bucket", *keys).limit(n).drop("_bucket").collect()
    return [r.asDict(recursive=True) for r in rows]


@contextlib.contextmanager
def _step(name: str) -> Iterator[None]:
    """Log how long a step of the browser took (the steps are a few Spark jobs each)."""
    start = time.perf_counter()
    yield
    log.info("browse: %s in %.1f s", name, time.perf_counter() - start)


def _thumbs_fn(px: int):
    """mapInPandas function: (uid, image) batches → (uid, thumb) small JPEGs."""

    def thumbs(batches):
        import pandas as pd

        for pdf in batches:
            out = [site.make_thumbnail(img, px) for img in pdf["image"]]
            yield pd.DataFrame({"uid": pdf["uid"], "thumb": out})

    return thumbs


def _thumbnails(lake: Lake, cfg: Config, uids: set[str], version: int | None) -> dict[str, bytes]:
    """{thumbnail path: JPEG} of the `uids` with a usable image in `images` at
    `version` (None: the latest); made on the executors."""
    from pyspark.sql import functions as F

    if not uids or not lake.exists(schema.IMAGES):
        return {}
    images = lake.read(schema.IMAGES, version=version)
    ok = (F.col("status") == schema.IMAGE_OK) & F.col("image").isNotNull()
    picked = images.where(ok & F.col("uid").isin(sorted(uids))).select("uid", "image")
    made = picked.mapInPandas(_thumbs_fn(cfg.browse.thumb_px), "uid string, thumb binary")
    with _reader_batch(lake.spark, IMAGE_READ_BATCH):
        rows = made.where(F.col("thumb").isNotNull()).collect()
    return {site.thumb_path(r["uid"]): bytes(r["thumb"]) for r in rows}


@contextlib.contextmanager
def _reader_batch(spark, rows: int) -> Iterator[None]:
    """Read Parquet `rows` rows per vectorized batch inside the block."""
    key = "spark.sql.parquet.columnarReaderBatchSize"
    before = spark.conf.get(key, None)
    spark.conf.set(key, str(rows))
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, before)


def _removal_reasons(lake: Lake, rows: list[dict], version: int | None) -> dict[tuple, list]:
    """{FILTER_KEY of a row: removal reasons} of the sampled `kale` rows,
    from `filtered_captions` at `version` (None: the latest)."""
    from pyspark.sql import functions as F

    if not rows or not lake.exists(schema.FILTERED_CAPTIONS):
        return {}
    filtered = lake.read(schema.FILTERED_CAPTIONS, version=version)
    wanted = {tuple(r[k] for k in FILTER_KEY) for r in rows}
    # A filter on the sample's uids (a hash set in Spark), then the exact keys here: the
    # rows of other models or stages of those uids are few.
    found = filtered.where(F.col("uid").isin(sorted({r["uid"] for r in rows})))
    out = {}
    for r in found.select(*FILTER_KEY, "removal_reasons").collect():
        key = tuple(r[k] for k in FILTER_KEY)
        if key in wanted:
            out[key] = list(r["removal_reasons"])
    return out


def _rejected_sample(
    lake: Lake, n: int, version: int | None, max_bucket: int | None
) -> tuple[int, list[dict]]:
    """(rejected captions in all, those of the sample's uid-hash range, at most `n`):
    beside the kept rows, the rejected ones of a uniform sample of all captions."""
    if not lake.exists(schema.FILTERED_CAPTIONS):
        return 0, []
    rejected = lake.read(schema.FILTERED_CAPTIONS, version=version).where("rejected")
    total = rejected.count()
    if not total:
        return 0, []
    return total, hash_sample(rejected, n, total, FILTER_KEY, max_bucket)


def _figures(df: DataFrame) -> dict[str, Any]:
    """The card's figures of the whole version, as the page draws them."""
    from kale_spark.release.charts import card_figures

    fig = card_figures(df)
    return {
        "histogram": list(fig["histogram"]),
        "bin_words": card.BIN_WORDS,
        "word_stats": [[s.stage, s.field, s.n, s.mean, s.median] for s in fig["word_stats"]],
        "kale_mean_words": KALE_MEAN_CAPTION_WORDS,
        "rows_by_stage": fig["rows_by_stage"],
        "mean_words": fig["mean_words"],
        "median_words": fig["median_words"],
        "sentences_removed": fig["sentences_removed"],
    }


def _check_version(lake: Lake, version: int) -> None:
    latest = lake.version(schema.KALE)
    if latest is None:
        raise LookupError(f"no {schema.KALE} table under {lake.root}; run publish first")
    if not 0 <= version <= latest:
        raise ValueError(f"{schema.KALE} has versions 0..{latest}, asked for {version}")


def _release_meta(version: int, info: ReleaseInfo | None, n: int, counts: dict) -> dict:
    title = f"kale v{version}" + (f" · release {info.release}" if info else "")
    rows, rejected = counts["rows"], counts["rejected"]
    return {
        "view": "release",
        "title": title,
        "subtitle": (
            f"{counts['rows_shown']} of {rows} rows and {counts['rejected_shown']} of "
            f"{rejected} rejected captions, drawn by uid hash (browse.sample_rows = {n})"
        ),
        "table": schema.KALE,
        "version": version,
        "release": info.release if info else None,
        "published_at": info.published_at.isoformat(sep=" ") if info else None,
        "source_versions": dict(info.source_versions) if info else {},
        "rows_total": rows,
        "rejected_total": rejected,
        "sample_rows": n,
        "sample_salt": BROWSE_SALT,
    }


def browse_release(
    lake: Lake, cfg: Config, version: int, out: str, release: ReleaseInfo | None = None
) -> Path:
    """Write the browser of `kale` version `version` into `out`; its folder."""
    _check_version(lake, version)
    info = release or release_info(lake, version)
    filtered_version = (info.source_versions if info else {}).get(schema.FILTERED_CAPTIONS)
    n = cfg.browse.sample_rows
    df = lake.read(schema.KALE, version=version)
    with _step("sample"):
        total = df.count()
        kept = hash_sample(df.select(*KALE_COLUMNS), n, total)
        # A partial sample stops at some bucket: rejected captions past it are left out.
        top = max((split.bucket(r["uid"], BROWSE_SALT) for r in kept), default=None)
        top = top if len(kept) < total else None
    with _step("reasons and rejected captions"):
        reasons = _removal_reasons(lake, kept, filtered_version)
        rejected_total, rejected = _rejected_sample(lake, n, filtered_version, top)
    # The card's figures (whole-table aggregates) run beside the thumbnails' image scan:
    # each leaves one of the two cores idle part of the time (driver work, worker start).
    with _step("thumbnails and the card's figures"), ThreadPoolExecutor(1) as pool:
        figures = pool.submit(_figures, df)
        uids = {r["uid"] for r in kept} | {r["uid"] for r in rejected}
        images_version = (info.source_versions if info else {}).get(schema.IMAGES)
        thumbs = _thumbnails(lake, cfg, uids, images_version)
        meta_figures = figures.result()
    records = [
        site.release_record(r, reasons.get(tuple(r[k] for k in FILTER_KEY)), _thumb(r, thumbs))
        for r in kept
    ]
    records += [site.release_record(r, r["removal_reasons"], _thumb(r, thumbs)) for r in rejected]
    counts = {
        "rows": total,
        "rows_shown": len(kept),
        "rejected": rejected_total,
        "rejected_shown": len(rejected),
    }
    meta = {**_release_meta(version, info, n, counts), "figures": meta_figures}
    with _step("writing the site"):
        path = site.write_site(_local(out), meta, records, thumbs)
    log.info(
        "browser of kale v%d: %d rows, %d rejected captions: %s/index.html",
        version,
        len(kept),
        len(rejected),
        path,
    )
    return path


def _thumb(row: dict, thumbs: dict[str, bytes]) -> str | None:
    path = site.thumb_path(row["uid"])
    return path if path in thumbs else None


def default_diff_dir(lake: Lake, a: int, b: int) -> str:
    return f"{lake.root.rstrip('/')}/exports/{schema.KALE}/diff-v{a}-v{b}"


def _rows_by_uid(lake: Lake, version: int, picked: list[dict]) -> dict[str, dict]:
    from pyspark.sql import functions as F

    if not picked:
        return {}
    uids = sorted({p["uid"] for p in picked})
    rows = lake.read(schema.KALE, version=version).where(F.col("uid").isin(uids)).collect()
    return {r["uid"]: r.asDict(recursive=True) for r in rows}


def _diff_sample(lake: Lake, a: int, b: int, n: int) -> tuple[dict[str, int], str, list[dict]]:
    """(rows added / removed / changed from version a to b, the method, a hash sample of
    at most `n` of those uids with their change)."""
    from pyspark import StorageLevel

    from kale_spark.lake.versioning import ADDED, CHANGED, REMOVED, diff_frame

    frame, method = diff_frame(lake, schema.KALE, a, b)
    frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = {ADDED: 0, REMOVED: 0, CHANGED: 0}
        for r in frame.groupBy("change").count().collect():
            counts[r["change"]] = int(r["count"])
        return counts, method, hash_sample(frame, n, sum(counts.values()))
    finally:
        frame.unpersist()


def browse_diff(lake: Lake, cfg: Config, a: int, b: int, out: str) -> Path:
    """Write the diff view from `kale` version `a` to version `b` into `out`."""
    for v in (a, b):
        _check_version(lake, v)
    n = cfg.browse.sample_rows
    counts, method, picked = _diff_sample(lake, a, b, n)
    old, new = _rows_by_uid(lake, a, picked), _rows_by_uid(lake, b, picked)
    info = release_info(lake, b)
    images_version = info.source_versions.get(schema.IMAGES) if info else None
    thumbs = _thumbnails(lake, cfg, {p["uid"] for p in picked}, images_version)
    records = []
    for p in picked:
        uid, thumb = p["uid"], _thumb(p, thumbs)
        records.append(site.diff_record(uid, p["change"], old.get(uid), new.get(uid), thumb))
    added, removed, changed = (counts[k] for k in ("added", "removed", "changed"))
    meta = {
        "view": "diff",
        "title": f"kale v{a} → v{b}",
        "subtitle": (
            f"{added} added, {removed} removed, {changed} changed ({method}); "
            f"{len(records)} shown, drawn by uid hash (browse.sample_rows = {n})"
        ),
        "table": schema.KALE,
        "from_version": a,
        "to_version": b,
        "counts": counts,
        "method": method,
        "sample_rows": n,
        "sample_salt": BROWSE_SALT,
    }
    path = site.write_site(_local(out), meta, records, thumbs)
    log.info("diff browser kale v%d -> v%d, %d rows: %s/index.html", a, b, len(records), path)
    return path


def publish_browser(lake: Lake, cfg: Config, info: ReleaseInfo, export_path: str | None):
    """The `publish.browser` hook: the release's browser in `<export>/browser` (the
    export folder carries its own viewer); None when the option is off."""
    if not cfg.publish.browser:
        return None
    folder = f"{export_path or default_dir(lake, info.version)}/{BROWSER_DIR}"
    return browse_release(lake, cfg, info.version, folder, release=info)
