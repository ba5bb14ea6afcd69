"""Fetch: `samples` → `images` (silver), one row per uid: the image or a status + reason.

Each Spark task takes `fetch.rows_per_task` rows and fetches them with a bounded
thread pool (`fetch.fetch.concurrency`); decoding, resizing and hashing are the pure
functions of images.py, run by fetch_batch.process_batch. With `fetch.webdataset`
set, images are read from img2dataset shards instead of the network.

Idempotent: a rerun fetches only uids with no row yet, or with a retryable status
(timeout, connection error, 5xx/429) and fewer than `fetch.max_attempts_total`
attempts so far; a retried row replaces its old one and its attempts add up.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import TYPE_CHECKING

from kale_spark import schema
from kale_spark.config import Config, FetchConfig
from kale_spark.fetch_batch import FetchStageOptions
from kale_spark.lake import Lake
from kale_spark.progress import Progress, counter_accumulator
from kale_spark.runs import StageRun, stage_run

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

STAGE = "fetch"
RETRYABLE_STATUSES = ("timeout", "connection_error")


def stage_options(cfg: FetchConfig) -> FetchStageOptions:
    return FetchStageOptions(fetch=cfg.fetch, image=cfg.image, hash_policy=cfg.hash_policy)


def candidates(lake: Lake, cfg: FetchConfig) -> DataFrame:
    """Samples still to fetch, with the attempts their earlier rows already spent."""
    from pyspark.sql import functions as F

    samples = lake.read(schema.SAMPLES).select("uid", "url", "sha256")
    images = lake.read(schema.IMAGES).select("uid", "status", "http_status", "attempts")
    retryable = F.col("status").isin(*RETRYABLE_STATUSES) | (
        (F.col("status") == "http_error")
        & ((F.col("http_status") >= 500) | (F.col("http_status") == 429))
    )
    todo = samples.join(images, "uid", "left").where(
        F.col("status").isNull() | (retryable & (F.col("attempts") < cfg.max_attempts_total))
    )
    return todo.select(
        "uid", "url", "sha256", F.coalesce("attempts", F.lit(0)).alias("prev_attempts")
    )


def _shard_entries(spark: SparkSession, paths: tuple[str, ...]) -> DataFrame:
    """uid → location of its image in img2dataset shards, indexed in parallel per shard."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

    from kale_spark.sources.webdataset import find_shards, iter_shard_entries

    shards = find_shards(list(paths))
    entry_schema = StructType(
        [
            StructField("uid", StringType()),
            StructField("tar_path", StringType()),
            StructField("key", StringType()),
            StructField("offset", LongType()),
            StructField("size", LongType()),
            StructField("wds_sha256", StringType()),
            StructField("wds_original_width", IntegerType()),
            StructField("wds_original_height", IntegerType()),
            StructField("wds_url", StringType()),
        ]
    )
    rdd = spark.sparkContext.parallelize(shards, max(1, len(shards))).flatMap(
        lambda shard: [tuple(e) for e in iter_shard_entries(shard)]
    )
    entries = spark.createDataFrame(rdd, entry_schema)
    first = Window.partitionBy("uid").orderBy("tar_path", "key")
    return entries.withColumn("_n", F.row_number().over(first)).where("_n = 1").drop("_n")


def _fetch_fn(opts: FetchStageOptions, run_id: str, webdataset: bool):
    """The mapInPandas function; captures only small picklable options."""

    def fetch_partition(batches):
        import pandas as pd

        from kale_spark.fetch_batch import process_batch
        from kale_spark.sources.webdataset import ShardEntry

        for pdf in batches:
            shard_index = None
            if webdataset:
                shard_index = {
                    r.uid: ShardEntry(
                        r.uid,
                        r.tar_path,
                        r.key,
                        int(r.offset),
                        int(r.size),
                        r.wds_sha256,
                        None if pd.isna(r.wds_original_width) else int(r.wds_original_width),
                        None if pd.isna(r.wds_original_height) else int(r.wds_original_height),
                        r.wds_url,
                    )
                    for r in pdf.itertuples()
                    if isinstance(r.tar_path, str)
                }
            out = process_batch(pdf, opts, run_id, shard_index)
            prev = pdf.set_index("uid")["prev_attempts"]
            out["attempts"] = (out["attempts"] + out["uid"].map(prev).fillna(0)).astype("int32")
            yield out

    return fetch_partition


def run(spark: SparkSession, cfg: Config) -> StageRun:
    from pyspark import StorageLevel

    lake = Lake(spark, cfg.lake)
    opts = stage_options(cfg.fetch)
    with stage_run(lake, cfg, STAGE) as run:
        if not lake.exists(schema.SAMPLES):
            raise LookupError("no `samples` table yet: run `kale ingest` first")
        lake.ensure_table(schema.IMAGES, schema.IMAGES_SCHEMA)
        run.input_versions = {
            schema.SAMPLES: lake.version(schema.SAMPLES),
            schema.IMAGES: lake.version(schema.IMAGES),
        }
        todo = candidates(lake, cfg.fetch)
        webdataset = bool(cfg.fetch.webdataset)
        if webdataset:
            todo = todo.join(_shard_entries(spark, cfg.fetch.webdataset), "uid", "left")
        todo = todo.persist(StorageLevel.MEMORY_AND_DISK)
        n_todo = todo.count()
        n_samples = lake.count(schema.SAMPLES)
        run.counts.update(samples=n_samples, candidates=n_todo)
        if n_todo == 0:
            todo.unpersist()
            run.counts["fetched"] = 0
            run.output_versions[schema.IMAGES] = lake.version(schema.IMAGES)
            run.notes.append("nothing to fetch: every sample has a final images row")
            return run

        parts = max(1, math.ceil(n_todo / cfg.fetch.rows_per_task))
        # Executors add each batch's statuses; the reporter polls the accumulator.
        acc = counter_accumulator(spark)
        progress = Progress(
            STAGE, n_todo, interval_s=cfg.progress.interval_s, poll=lambda: acc.value
        )
        fetch_partition = _fetch_fn(opts, run.run_id, webdataset)

        def counted(batches):
            for out in fetch_partition(batches):
                acc.add(Counter(out["status"].tolist()))
                yield out

        fetched = (
            todo.repartition(parts, "uid")
            .mapInPandas(counted, schema=schema.IMAGES_SCHEMA)
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        try:
            with progress:
                by_status = {
                    r["status"]: r["count"] for r in fetched.groupBy("status").count().collect()
                }
            written = lake.merge_new(
                schema.IMAGES,
                fetched,
                ["uid"],
                run.commit(),
                update_condition=f"t.status <> '{schema.IMAGE_OK}'",
            )
        finally:
            fetched.unpersist()
            todo.unpersist()

        run.counts.update(progress.counts())
        run.metrics.update(progress.metrics())
        run.counts["fetched"] = sum(by_status.values())
        run.counts["retried"] = written.rows_updated
        for status, n in sorted(by_status.items()):
            run.counts[f"status.{status}"] = n
        run.output_versions[schema.IMAGES] = written.version
        ok = by_status.get(schema.IMAGE_OK, 0)
        run.notes.append(f"{ok}/{n_todo} fetched rows ok; {n_samples} samples in all")
    return run
