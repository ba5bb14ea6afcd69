"""Fetch: `samples` → `images` (silver), one row per uid: the image or a status + reason.

Each Spark task takes about `fetch.rows_per_task` rows and streams them through one
bounded thread pool (`fetch.concurrency`); decoding, resizing and hashing are the pure
functions of fetch/decode.py, run by fetch/rows.process_partition. Rows are placed by
host (fetch/hosts.py): one task owns a host's rows, or `fetch.host_salt` tasks a big
host's, and bounds its connections to it; the plan's counting job finds the big hosts.
With `fetch.webdataset` set, images are read from img2dataset shards instead of the network.

Idempotent: a rerun fetches only uids with no row yet, or with a retryable status
(fetch/status.is_retryable: timeout, connection error, 5xx/429 — the same rule a run uses
between its own attempts) and fewer than `fetch.max_attempts_total` attempts so far;
a retried row replaces its old one and its attempts add up.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from kale_spark import schema
from kale_spark.config import Config, FetchConfig
from kale_spark.faults import byte_corrupter
from kale_spark.fetch.options import FetchStageOptions
from kale_spark.fetch.status import Status, retryable_condition
from kale_spark.lake.frames import local_frame
from kale_spark.lake.progress import Progress, counter_accumulator
from kale_spark.lake.runs import StageRun, stage_run
from kale_spark.lake.tables import Lake
from kale_spark.spark.warmup import warm_python_workers

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

STAGE = "fetch"
OUT_ROWS = 64  # images rows per frame handed back to Spark (bounds a task's memory)


def stage_options(cfg: FetchConfig) -> FetchStageOptions:
    """The options a task needs: the `fetch` section itself (a FetchStageOptions,
    validated once when the config was built; never rebuilt)."""
    return cfg


def _samples_to_fetch(samples: DataFrame, images: DataFrame, cfg: FetchConfig) -> DataFrame:
    """Every sample with `_todo` (fetch it now) and the attempts its images row spent."""
    from pyspark.sql import functions as F

    samples = samples.select("uid", "url", "sha256", "text")
    images = images.select("uid", "status", "http_status", "attempts")
    retryable = retryable_condition()
    todo = F.col("status").isNull() | (retryable & (F.col("attempts") < cfg.max_attempts_total))
    return samples.join(images, "uid", "left").select(
        "uid",
        "url",
        "sha256",
        "text",
        F.coalesce("attempts", F.lit(0)).alias("prev_attempts"),
        F.coalesce(todo, F.lit(False)).alias("_todo"),
    )


@dataclass(frozen=True)
class Plan:
    """What one counting job tells the driver: the rows to fetch (read again by the
    write job, cheaper than caching every candidate), how many, and the few hosts
    with more than `fetch.host_rows_per_task` of them (only those come back)."""

    todo: DataFrame
    samples: int
    to_fetch: int
    retries: int
    big_hosts: tuple[str, ...]


def _plan(samples: DataFrame, images: DataFrame | None, cfg: FetchConfig) -> Plan:
    """The plan in one job: counts per host, then their sums and the big hosts.

    ``images`` None: the images table was created by this run, so it is empty: every
    sample is fetched, none a retry, and no join with it is planned or run."""
    from pyspark.sql import functions as F

    from kale_spark.fetch.hosts import with_registered_domain

    # The host as SQL expressions, and a first fetch's rows in as few projections as
    # the rule allows: each DataFrame call is an analysis in the JVM, slow on a fresh
    # driver.
    if images is None:
        rows = samples
        keep = ["uid", "url", "sha256", "text", "0 AS prev_attempts", "true AS _todo"]
    else:
        rows = _samples_to_fetch(samples, images, cfg)
        keep = rows.columns
    if cfg.webdataset:  # shards: no connections, no hosts
        every = rows.selectExpr(*keep, "'' AS _host")
    else:
        every = with_registered_domain(rows, "url", "_host", keep)
    todo_flag = F.col("_todo").cast("long")
    per_host = every.groupBy("_host").agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(todo_flag).alias("todo"),
        F.sum(todo_flag * (F.col("prev_attempts") > 0).cast("long")).alias("retry"),
    )
    big = (F.col("todo") > cfg.host_rows_per_task) & (F.col("_host") != "")
    n_samples, n_todo, n_retry, big_hosts = per_host.agg(
        F.coalesce(F.sum("n"), F.lit(0)),
        F.coalesce(F.sum("todo"), F.lit(0)),
        F.coalesce(F.sum("retry"), F.lit(0)),
        F.collect_list(F.when(big, F.col("_host"))),
    ).first()
    todo = every.where("_todo").drop("_todo")
    return Plan(todo, n_samples, n_todo, n_retry, tuple(sorted(big_hosts)))


def _shard_entries(spark: SparkSession, paths: tuple[str, ...]) -> DataFrame:
    """uid → location of its image in img2dataset shards, indexed in parallel per shard."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from kale_spark.sources.webdataset import SHARD_DDL, find_shards, iter_shard_entries

    shards = find_shards(list(paths))
    rdd = spark.sparkContext.parallelize(shards, max(1, len(shards))).flatMap(
        lambda shard: [tuple(e) for e in iter_shard_entries(shard)]
    )
    entries = spark.createDataFrame(rdd, SHARD_DDL)
    first = Window.partitionBy("uid").orderBy("tar_path", "key")
    return entries.withColumn("_n", F.row_number().over(first)).where("_n = 1").drop("_n")


def _fetch_fn(opts: FetchStageOptions, run_id: str, webdataset: bool, hosts_acc, tamper=None):
    """The mapInPandas function; captures only small picklable options (and `tamper`,
    the injected byte corruption of faults.corrupt_image_uids, or None). Each task adds
    its bounded per-host summary (fetch/hosts.task_summary) to ``hosts_acc`` at its end."""

    def fetch_partition(batches):
        from kale_spark.fetch.hosts import HostGates, task_summary
        from kale_spark.fetch.rows import process_partition

        prev: dict[str, int] = {}
        salted: set[str] = set()
        gates = HostGates.for_options(opts)

        def inputs():
            for pdf in batches:
                prev.update(
                    zip(pdf["uid"].astype(str), pdf["prev_attempts"].astype(int), strict=True)
                )
                if "_salted" in pdf.columns:
                    salted.update(pdf.loc[pdf["_salted"].astype(bool), "_host"].astype(str))
                yield pdf, _shard_index(pdf) if webdataset else None

        parts = process_partition(inputs(), opts, run_id, webdataset, OUT_ROWS, gates, tamper)
        for out in parts:
            out["attempts"] = (out["attempts"] + out["uid"].map(prev).fillna(0)).astype("int32")
            yield out
        hosts_acc.add(task_summary(gates, salted))

    return fetch_partition


def by_host(spark: SparkSession, plan: Plan, cfg: FetchConfig, parts: int) -> DataFrame:
    """The rows to fetch in ``parts`` tasks: each host's rows (`_host`, the registered
    domain) in one task, or, for a host with more than `fetch.host_rows_per_task` rows
    to fetch (`_salted`), spread over `fetch.host_salt` tasks. Rows without a host
    (file://, shards) go by uid."""
    from pyspark.sql import functions as F

    rows = plan.todo
    if plan.big_hosts:
        rows = rows.join(F.broadcast(big_hosts_frame(spark, plan.big_hosts)), "_host", "left")
        rows = rows.withColumn("_salted", F.coalesce("_salted", F.lit(False)))
    else:
        rows = rows.withColumn("_salted", F.lit(False))
    n = F.lit(parts)
    salt = F.when(F.col("_salted"), F.pmod(F.hash("uid"), F.lit(cfg.host_salt))).otherwise(0)
    # A big host's buckets land on consecutive tasks: distinct ones while host_salt <= parts.
    task = F.when(F.col("_host") == "", F.pmod(F.hash("uid"), n)).otherwise(
        F.pmod(F.pmod(F.hash("_host"), n) + salt, n)
    )
    return rows.repartitionById(parts, task)


def big_hosts_frame(spark: SparkSession, hosts: tuple[str, ...]) -> DataFrame:
    """(_host, _salted=true) per big host, as a local relation broadcast from the driver
    (lake/frames.py: a Python list would cost a Spark job before the fetch job starts)."""
    from pyspark.sql.types import BooleanType, StringType, StructField, StructType

    fields = [StructField("_host", StringType(), False), StructField("_salted", BooleanType())]
    return local_frame(spark, [(h, True) for h in hosts], StructType(fields))


def _shard_index(pdf) -> dict:
    """uid -> ShardEntry for the rows of ``pdf`` found in the shards."""
    from kale_spark.sources.webdataset import ShardEntry

    return {r.uid: ShardEntry.from_row(r) for r in pdf.itertuples() if isinstance(r.tar_path, str)}


def run(spark: SparkSession, cfg: Config) -> StageRun:
    # The tasks' Python workers start (imports: ~1 s each) while the driver opens the
    # lake and plans: on a fresh JVM, opening the lake (its database, the first Delta
    # log read) is slow too, and the workers' imports overlap it.
    warm_python_workers(spark, ("kale_spark.fetch.rows",))
    lake = Lake(spark, cfg.lake)
    with stage_run(lake, cfg, STAGE) as run:
        if not lake.exists(schema.SAMPLES):
            raise LookupError("no `samples` table yet: run `kale ingest` first")
        plan = _candidates(spark, lake, cfg, run)
        n_samples, n_todo = plan.samples, plan.to_fetch
        run.counts.update(samples=n_samples, candidates=n_todo)
        if n_todo == 0:
            plan.todo.unpersist()
            run.counts["fetched"] = 0
            run.output_versions[schema.IMAGES] = lake.version(schema.IMAGES)
            run.notes.append("nothing to fetch: every sample has a final images row")
            return run
        by_status = _fetch(spark, lake, cfg, run, plan)
        ok = by_status.get(schema.IMAGE_OK, 0)
        run.notes.append(f"{ok}/{n_todo} fetched rows ok; {n_samples} samples in all")
        _warn_if_file_root_blocks_all(lake, cfg.fetch, run, by_status)
    return run


def _candidates(spark: SparkSession, lake: Lake, cfg: Config, run: StageRun) -> Plan:
    """The plan of this run; `images` exists after."""
    from pyspark import StorageLevel

    fresh = not lake.exists(schema.IMAGES)  # first fetch: every sample is new
    # The tables as the plan reads them, with their versions (lake.read_latest: a small
    # table without Delta's log replay, the largest fixed cost of a small fetch).
    samples, run.input_versions[schema.SAMPLES] = lake.read_latest(schema.SAMPLES)
    # A first fetch plans from `samples` alone: `images` is created meanwhile (two
    # driver threads; each is a second or more of planning on a fresh JVM).
    with ThreadPoolExecutor(1) as pool:
        # The change data feed on: the model stages stream its changes (a retry
        # turning a row ok is an update, not an append).
        created = pool.submit(
            lake.ensure_table, schema.IMAGES, schema.IMAGES_SCHEMA, change_feed=True
        )
        images = None
        if not fresh:
            created.result()  # the plan joins with `images`
            images, run.input_versions[schema.IMAGES] = lake.read_latest(schema.IMAGES)
        plan = _plan(samples, images, cfg.fetch)
        created.result()
    if fresh:
        run.input_versions[schema.IMAGES] = lake.version(schema.IMAGES)
    if cfg.fetch.webdataset:  # indexing the tars is costly: do it once
        todo = plan.todo.join(_shard_entries(spark, cfg.fetch.webdataset), "uid", "left")
        plan = replace(plan, todo=todo.persist(StorageLevel.DISK_ONLY))
    return plan


def _fetch(
    spark: SparkSession, lake: Lake, cfg: Config, run: StageRun, plan: Plan
) -> dict[str, int]:
    """Fetch the plan's rows in tasks, write `images`, fill the run's counts; the rows by status."""
    n_todo = plan.to_fetch
    parts = task_count(n_todo, cfg.fetch.rows_per_task, spark.sparkContext.defaultParallelism)
    # Executors add each batch's statuses; the reporter polls the accumulator.
    acc = counter_accumulator(spark)
    hosts_acc = counter_accumulator(spark)
    progress = Progress(STAGE, n_todo, interval_s=cfg.progress.interval_s, poll=lambda: acc.value)
    fetch_partition = _fetch_fn(
        stage_options(cfg.fetch),
        run.run_id,
        bool(cfg.fetch.webdataset),
        hosts_acc,
        byte_corrupter(cfg.faults),
    )

    def counted(batches):
        for out in fetch_partition(batches):
            acc.add(Counter(out["status"].tolist()))
            yield out

    tasks = by_host(spark, plan, cfg.fetch, parts)
    fetched = tasks.mapInPandas(counted, schema=schema.IMAGES_SCHEMA)
    try:
        with progress:
            written = _write(lake, fetched, plan.retries, run.commit())
    finally:
        plan.todo.unpersist()
    by_status = _written_statuses(acc.value, written) or _status_counts(lake, run.run_id)
    run.counts.update(progress.counts())
    run.metrics.update(progress.metrics())
    run.counts["fetched"] = sum(by_status.values())
    run.counts["retried"] = written.rows_updated
    for status, n in sorted(by_status.items()):
        run.counts[f"status.{status}"] = n
    run.output_versions[schema.IMAGES] = written.version
    _record_hosts(run, hosts_acc.value, sum(acc.value.values()), n_todo)
    return by_status


def _record_hosts(run: StageRun, merged: Counter, counted: int, n_todo: int) -> None:
    """The per-host figures in the run's counts and metrics (fetch/hosts.run_figures),
    when every task counted its rows exactly once (a task run twice adds twice)."""
    from kale_spark.fetch.hosts import run_figures

    if counted != n_todo:
        run.notes.append(f"per-host figures not recorded: tasks counted {counted}/{n_todo} rows")
        return
    counts, metrics = run_figures(merged)
    run.counts.update(counts)
    run.metrics.update(metrics)


def _warn_if_file_root_blocks_all(
    lake: Lake, cfg: FetchConfig, run: StageRun, by_status: dict[str, int]
) -> None:
    """One line naming the key to set when every row this run fetched is a file:// URL
    that fetch.file_root refuses (a new user's sample outside ./data/sample)."""
    from pyspark.sql import functions as F

    if set(by_status) != {Status.BLOCKED}:
        return
    mine = lake.read(schema.IMAGES).where(F.col("run_id") == run.run_id)
    refused = mine.where(F.col("error").contains("fetch.file_root")).count()
    if refused != sum(by_status.values()):
        return
    line = (
        f"every fetched row is blocked by fetch.file_root ({cfg.file_root or 'empty: off'!r}): "
        "set it to the folder that holds the file:// images, e.g. --set fetch.file_root=DIR"
    )
    log.warning("%s", line)
    run.notes.append(line)


def task_count(rows: int, rows_per_task: int, cores: int) -> int:
    """Tasks for ``rows`` rows: a multiple of ``cores`` (no core idles while the last
    few tasks run alone), each of at most about ``rows_per_task`` rows."""
    cores = max(1, cores)
    return cores * max(1, math.ceil(rows / (rows_per_task * cores)))


def _written_statuses(counted: Counter, written) -> dict[str, int] | None:
    """The statuses the tasks counted, when they account for exactly the rows an append
    committed (no task's rows counted twice or lost); else None."""
    total = sum(counted.values())
    if not written.committed or written.rows_updated or total != written.rows_inserted:
        return None
    return {status: n for status, n in counted.items() if n}


def _status_counts(lake: Lake, run_id: str) -> dict[str, int]:
    """Rows this run wrote, by status (the status column only: no image bytes read)."""
    from pyspark.sql import functions as F

    rows = lake.read(schema.IMAGES).where(F.col("run_id") == run_id).groupBy("status").count()
    return {r["status"]: r["count"] for r in rows.collect()}


def _write(lake: Lake, fetched: DataFrame, n_retry: int, commit: dict[str, str]):
    """Write the fetched rows: a plain append when every uid is new (one pass, the image
    bytes never cached or joined), else a MERGE that replaces retried rows."""
    from pyspark import StorageLevel

    if n_retry == 0:
        return lake.append(schema.IMAGES, fetched, commit)
    # MERGE reads its source twice: cache it so that no URL is fetched twice.
    fetched = fetched.persist(StorageLevel.DISK_ONLY)  # image bytes: never in the heap
    try:
        fetched.count()
        return lake.upsert(
            schema.IMAGES,
            fetched,
            ["uid"],
            commit,
            update_when=f"t.status <> '{schema.IMAGE_OK}'",
        )
    finally:
        fetched.unpersist()
