"""What the model stages (caption, augment, student-caption) share: generation that
commits as it goes, exactly once per (uid, model, revision, prompt), at a cost linear in
the rows it generates.

    source table ─ its change feed streamed, trigger(availableNow), a checkpoint per
    │              (stage, source, model, revision, prompt, generation parameters);
    │              micro-batches of about CHUNKS_PER_BATCH chunks (maxFilesPerTrigger)
    └ foreachBatch(micro-batch):
        candidates (prepare), persisted once, counted; cut into even chunks by uid hash,
        the cut recorded in the checkpoint (a replay cuts the same chunks)
        LANES threads, chunk k in lane k % LANES, each lane in order:
          model (mapInPandas over every model slot, several batches per task, one
          model per Python worker) ─ results persisted
          ─▶ failures (if any) appended to quarantine  ┐ both with txnAppId = query id +
          ─▶ good rows appended to the target         ┘ lane, txnVersion = batch, chunk

Linear cost. Nothing scans the target per chunk: the stream delivers each source row
once per checkpoint, and Delta's txn makes a replayed chunk a no-op (its model does
not run: the target's txn is read before). "Already done" is checked only where a
new checkpoint meets an old target (one persisted key set per run, and rows already
quarantined for the key are left to `retry_failed`). The driver holds counts, never
keys. Update commits of the source (a fetch retry turning a row ok) arrive through
its change data feed (`delta.enableChangeDataFeed`), so no full catch-up pass is
needed; `<stage>.retry_failed` runs one, once per run, for the rows that failed.

Every slot busy. A chunk is what the model slots produce in `commit_interval_s`
(chunks.ChunkSizer: the rate measured in this run, or the last run's, from the
checkpoint); the lanes overlap one chunk's commit with the next chunk's model, and
the scheduler hands a lane's tasks to slots as the other lane's tasks finish.
A first run without a rate restarts its query once, after the first micro-batch,
with micro-batches sized from the rate it measured.

Files. A chunk's good rows are one file (more only past FILE_BYTES of text).

    candidates = already_done + generated + failed    (without concurrent writers)
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kale_spark import schema
from kale_spark.hashing import sha256_hex
from kale_spark.lake.progress import Progress, counter_accumulator
from kale_spark.lake.runs import StageRun
from kale_spark.lake.tables import Lake, WriteResult
from kale_spark.models.spec import ModelSpec
from kale_spark.stages.chunks import (
    HASH_SPACE,
    LANES,
    ChunkPlans,
    ChunkSizer,
    chunk_txn,
    files_for,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import StructType

    from kale_spark.spark.udf import UdfContext

log = logging.getLogger(__name__)

RAW_ERROR_CHARS = 500
FILE_BYTES = 128 * 2**20  # a chunk's output is one file up to about this much text
CDF_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")
# Version of the stream layout; part of the checkpoint name (v2: the change feed).
STREAM_LAYOUT = "cdf1"
RESIZE = "kale: micro-batches resized"  # the message of the one planned restart


@dataclass(frozen=True)
class Target:
    """Where a model stage writes: its table, the column the model's text goes to,
    and the name its failed rows are filed under in quarantine (`source_file`)."""

    stage: str
    table: str
    table_schema: StructType
    text_column: str
    source_table: str


@dataclass(frozen=True)
class ModelStage:
    """One model stage's wiring.

    `source` is the Delta table streamed in; `prepare` turns a batch of its rows into
    candidates (uid, the model's inputs, the pass-through columns); `kind` names the
    model function (udf.MODEL_INPUTS); `passthrough` columns are copied to the output.
    """

    target: Target
    spec: ModelSpec
    kind: str
    source: str
    prepare: Callable[[DataFrame], DataFrame]
    source_versions: Mapping[str, int]
    passthrough: Sequence[str] = (schema.UID,)
    progress_interval_s: float = 10.0
    resource_profile: Any = None  # a pyspark ResourceProfile for the model tasks, or None
    slots: int = 1  # model tasks the cluster runs at once


@dataclass
class Tally:
    """What a run committed, summed over its chunks (lanes add under the lock)."""

    generated: int = 0
    duplicates: int = 0
    quarantined: int = 0
    commits: int = 0
    replayed: int = 0  # chunks a replayed micro-batch found committed: no model run
    files: int = 0
    failed: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


# ------------------------------------------------------------------ keys and rows


def key_condition(spec: ModelSpec) -> Column:
    """Rows of a generated table made by this model, revision and prompt."""
    from pyspark.sql import functions as F

    return (
        (F.col("model") == spec.id)
        & (F.col("model_revision") == spec.model_revision)
        & (F.col("prompt_id") == spec.prompt_id)
    )


def already_done(lake: Lake, table: str, spec: ModelSpec) -> DataFrame:
    """uids that `table` already holds for this model, revision and prompt."""
    return lake.read(table).where(key_condition(spec)).select(schema.UID)


def quarantined(lake: Lake, stage: ModelStage) -> DataFrame:
    """uids this stage quarantined for this model, revision and prompt."""
    from pyspark.sql import functions as F

    spec = stage.spec
    return (
        lake.read(schema.QUARANTINE)
        .where(
            (F.col("stage") == stage.target.stage)
            & (F.col("raw")["model"] == spec.id)
            & (F.col("raw")["model_revision"] == spec.model_revision)
            & (F.col("raw")["prompt_id"] == spec.prompt_id)
        )
        .select(schema.UID)
    )


def lineage_columns(
    spec: ModelSpec, source_versions: Mapping[str, int], run_id: str
) -> list[Column]:
    """model, model_revision, prompt_id, gen_params, source_versions, run_id, created_at."""
    from pyspark.sql import functions as F

    versions = F.create_map(
        *[part for k, v in sorted(source_versions.items()) for part in (F.lit(k), F.lit(int(v)))]
    )
    return [
        *[F.lit(value).alias(name) for name, value in spec.lineage().items()],
        versions.cast("map<string,bigint>").alias("source_versions"),
        F.lit(run_id).alias("run_id"),
        F.current_timestamp().alias("created_at"),
    ]


def quarantine_rows(failed: DataFrame, stage: ModelStage, run_id: str) -> DataFrame:
    """Failed results as quarantine rows. `source_row` is a stable hash of (uid, model,
    revision, prompt_id): one failure per key, whichever run met it."""
    from pyspark.sql import functions as F

    spec = stage.spec
    versions = ",".join(f"{k}@{v}" for k, v in sorted(stage.source_versions.items()))
    raw = F.create_map(
        *[
            part
            for k, v in (
                ("model", F.lit(spec.id)),
                ("model_revision", F.lit(spec.model_revision)),
                ("prompt_id", F.lit(spec.prompt_id)),
                ("source_versions", F.lit(versions)),
                ("error", F.substring(F.col("error"), 1, RAW_ERROR_CHARS)),
            )
            for part in (F.lit(k), v)
        ]
    )
    return failed.select(
        F.lit(stage.target.stage).alias("stage"),
        F.lit(stage.target.source_table).alias("source_file"),
        F.xxhash64(
            schema.UID, F.lit(spec.id), F.lit(spec.model_revision), F.lit(spec.prompt_id)
        ).alias("source_row"),
        F.col(schema.UID),
        F.col("reason"),
        raw.alias("raw"),
        F.current_timestamp().alias("quarantined_at"),
        F.lit(run_id).alias("run_id"),
    )


def output_rows(good: DataFrame, stage: ModelStage, run_id: str) -> DataFrame:
    """Good results as rows of the target table, with lineage, in its column order."""
    from pyspark.sql import functions as F

    target = stage.target
    df = good.select(
        *stage.passthrough,
        F.col("text").alias(target.text_column),
        F.col("prompt_tokens"),
        F.col("new_tokens"),
        *lineage_columns(stage.spec, stage.source_versions, run_id),
    )
    return df.select(*[F.col(f.name).cast(f.dataType) for f in target.table_schema.fields])


def checkpoint_name(stage: ModelStage) -> str:
    """A checkpoint per (stage, source, model, revision, prompt, generation parameters).

    The generation parameters are in the checkpoint, not in the key: new parameters
    start a new stream, which finds the rows made under the old ones done (one key
    check, once) and generates only what is missing; a new revision or prompt is a
    new key and regenerates everything."""
    spec = stage.spec
    lineage = spec.lineage()
    key = "|".join(
        [STREAM_LAYOUT, stage.source, spec.id, spec.model_revision, spec.prompt_id]
        + [lineage["gen_params"]]
    ).encode()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{spec.id}-{spec.prompt_id}").strip("_")[:80]
    return f"{slug}-{sha256_hex(key)[:10]}"


def source_rows(changes: DataFrame) -> DataFrame:
    """The rows a change-feed micro-batch adds or turns into (inserts, update
    post-images), without the feed's own columns."""
    from pyspark.sql import functions as F

    if "_change_type" not in changes.columns:
        return changes
    rows = changes.where(F.col("_change_type").isin("insert", "update_postimage"))
    return rows.drop(*CDF_COLUMNS)


# ------------------------------------------------------------------ the writer


class ChunkWriter:
    """Runs the model over each micro-batch's candidates and commits them chunk by chunk.

    The micro-batch's candidates are persisted and counted once, cut into chunks by
    ranges of a uid hash (the cut is recorded in the checkpoint before its chunks run,
    so a replay cuts the same chunks), and run on LANES threads. A chunk's
    quarantine rows go first, then its good rows, each an append with txnAppId (the
    query id and the chunk's lane) and txnVersion (batch, chunk): a chunk whose good
    rows are committed is skipped before its model runs; a crash between the two
    appends redoes the model once and Delta skips the quarantine append.
    """

    def __init__(self, lake: Lake, run: StageRun, stage: ModelStage, ctx: UdfContext) -> None:
        from kale_spark.spark import udf

        self.lake = lake
        self.run = run
        self.stage = stage
        self.tally = Tally()
        self.accumulator = counter_accumulator(lake.spark)  # rows by outcome (progress)
        self.workers = counter_accumulator(lake.spark)  # model loads, one key per worker
        self.model_fn = udf.model_partition_fn(
            ctx, stage.kind, progress=self.accumulator, workers=self.workers
        )
        self.faults = ctx.faults  # injected faults (tests only; None: off)
        self.sizer: ChunkSizer | None = None
        self.plans: ChunkPlans | None = None
        self.done_keys: DataFrame | None = None  # set when a new checkpoint meets old rows
        self.app_id: str | None = None
        self.resize_to: int | None = None  # files per micro-batch a restart should use
        self._bound = threading.Event()

    def bind(self, query_id: str) -> None:
        """The streaming query's id: the txnAppId (with a lane) of this query's commits."""
        self.app_id = f"kale:{self.stage.target.stage}:{query_id}"
        self._bound.set()

    def process(self, changes: DataFrame, batch_id: int) -> None:
        """foreachBatch: generate and commit the micro-batch's missing rows in chunks."""
        if self.resize_to is not None:
            raise RuntimeError(RESIZE)  # the query restarts; this batch is replayed
        if not self._bound.wait(timeout=60):
            raise RuntimeError("the streaming query's id never reached the writer")
        self.plans.forget(batch_id - 1)  # the engine moved on: batch_id - 1 is committed
        self.run_batch(source_rows(changes), batch_id)
        self.resize_to = self.sizer.resize_after_first_batch()

    def run_batch(self, rows: DataFrame, batch_id: int | None) -> None:
        """Persist and count the candidates of `rows`, then commit them chunk by chunk
        (`batch_id` None: the retry pass, merged on the key without txn)."""
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        prepared = self.stage.prepare(rows)
        if self.done_keys is not None:
            prepared = prepared.join(self.done_keys, schema.UID, "left_anti")
        prepared = prepared.withColumn("_h", F.pmod(F.xxhash64(schema.UID), F.lit(HASH_SPACE)))
        # On disk: up to CHUNKS_PER_BATCH chunks of image bytes (at 490 px and many GPUs,
        # hundreds of GB) must not sit in executor heaps; each chunk reads its range.
        prepared = prepared.persist(StorageLevel.DISK_ONLY)
        try:
            n = prepared.count()
            log.info("[%s] batch %s: %d rows to generate", self.stage.target.stage, batch_id, n)
            if n == 0:
                return
            bounds = self.plans.load(batch_id) or self.plans.save(
                batch_id, self.sizer.chunks_for(n)
            )
            if bounds[-1] < HASH_SPACE:
                # No rate yet: the warm-up chunk alone, then the rest cut by its rate.
                self._run_lanes(self._parts(prepared, n, bounds, 0), batch_id)
                rest = self.sizer.cut_rest(bounds[-1], n * (HASH_SPACE - bounds[-1]) // HASH_SPACE)
                bounds = self.plans.save(batch_id, bounds + rest[1:])
                self._run_lanes(self._parts(prepared, n, bounds, 1), batch_id)
            else:
                self._run_lanes(self._parts(prepared, n, bounds, 0), batch_id)
        finally:
            prepared.unpersist()

    @staticmethod
    def _parts(
        prepared: DataFrame, n: int, bounds: list[int], first: int
    ) -> list[tuple[int, DataFrame, int]]:
        """(index, rows, about how many) of the chunks `first`.. that `bounds` cut."""
        from pyspark.sql import functions as F

        h = F.col("_h")
        return [
            (
                k,
                prepared.where((h >= lo) & (h < hi)).drop("_h"),
                max(1, n * (hi - lo) // HASH_SPACE),
            )
            for k, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False))
            if k >= first
        ]

    def _run_lanes(self, parts: list[tuple[int, DataFrame, int]], batch_id: int | None) -> None:
        """Chunk k on lane k % LANES; each lane commits its chunks in order."""
        from pyspark import InheritableThread

        errors: list[BaseException] = []

        def lane(mine: list[tuple[int, DataFrame, int]]) -> None:
            try:
                for k, chunk, rows in mine:
                    if errors:
                        return
                    self.commit_chunk(chunk, rows, batch_id, k)
            except BaseException as exc:  # re-raised in the caller's thread
                errors.append(exc)

        by_lane = [parts[i::LANES] for i in range(LANES)]
        threads = [InheritableThread(target=lane, args=(m,)) for m in by_lane[1:] if m]
        for t in threads:
            t.start()
        lane(by_lane[0])
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def commit_chunk(self, chunk: DataFrame, rows: int, batch_id: int | None, k: int) -> None:
        """Model over one chunk; its failures, then its good rows, each in one commit."""
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        stage = self.stage
        txn = None if batch_id is None else chunk_txn(self.app_id, batch_id, k)
        if txn is not None and self.lake.txn_committed(stage.target.table, *txn):
            with self.tally.lock:
                self.tally.replayed += 1
            log.info("[%s] chunk %s committed before: skipped", stage.target.stage, txn)
            return
        started = time.monotonic()
        results = self._model(chunk, rows).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            by_reason = {
                r["reason"]: r["count"] for r in results.groupBy("reason").count().collect()
            }
            n_good = by_reason.pop(None, 0)
            n_failed = sum(by_reason.values())
            q_rows = 0
            if n_failed:
                q_rows = self._quarantine(results.where(F.col("reason").isNotNull()), txn)
            written = self._write_good(results.where(F.col("reason").isNull()), n_good, txn)
        finally:
            results.unpersist()
        self.sizer.record(n_good + n_failed, time.monotonic() - started)
        timing = self.workers.value
        self.sizer.observe(timing.get("model_rows", 0), timing.get("model_ms", 0))
        self._count(written, n_good, by_reason, q_rows)

    def _model(self, chunk: DataFrame, rows: int) -> DataFrame:
        """mapInPandas over the chunk, dealt out over every model slot."""
        from pyspark.sql.types import StructType

        from kale_spark.spark import udf

        tasks = max(1, min(self.stage.slots, -(-rows // self.stage.spec.batch_size)))
        spread = chunk.repartition(tasks)
        fields = [f for f in spread.schema.fields if f.name not in udf.DROPPED_INPUTS]
        out_schema = StructType(fields + list(udf.RESULT_TYPE.fields))
        profile = self.stage.resource_profile
        if profile is not None:
            return spread.mapInPandas(self.model_fn, out_schema, profile=profile)
        return spread.mapInPandas(self.model_fn, out_schema)

    def _quarantine(self, failed: DataFrame, txn: tuple[str, int] | None) -> int:
        stage, run = self.stage, self.run
        self.lake.ensure_table(schema.QUARANTINE, schema.QUARANTINE_SCHEMA)
        rows = quarantine_rows(failed, stage, run.run_id).coalesce(1)
        if txn is None:
            q = self.lake.insert_new(
                schema.QUARANTINE, rows, list(schema.QUARANTINE_KEY), run.commit()
            )
        else:
            q = self.lake.append(schema.QUARANTINE, rows, run.commit(), txn=txn)
        with self.tally.lock:
            self.tally.quarantined += q.rows_inserted
            if q.committed:
                run.output_versions[schema.QUARANTINE] = q.version
        return q.rows_inserted

    def _write_good(self, good: DataFrame, n_good: int, txn: tuple[str, int] | None) -> WriteResult:
        """The chunk's good rows in one commit (one file up to FILE_BYTES)."""
        from kale_spark.faults import fail_commit_once

        target, run = self.stage.target, self.run
        fail_commit_once(self.faults, self.lake, target.table, target.stage)
        per_row = 256 + 8 * self.stage.spec.generation.max_new_tokens
        rows = output_rows(good, self.stage, run.run_id).coalesce(
            files_for(n_good * per_row, FILE_BYTES)
        )
        if txn is None:
            return self.lake.insert_new(
                target.table, rows, list(schema.GENERATED_KEY), run.commit()
            )
        return self.lake.append(target.table, rows, run.commit(), txn=txn)

    def _count(
        self, written: WriteResult, n_good: int, by_reason: Mapping[str, int], q_rows: int
    ) -> None:
        stage, tally = self.stage, self.tally
        with tally.lock:
            tally.generated += written.rows_inserted
            tally.duplicates += max(0, n_good - written.rows_inserted)
            tally.files += written.files
            tally.commits += 1
            tally.failed.update(by_reason)
            if written.committed:
                version = self.run.output_versions.get(stage.target.table, -1)
                self.run.output_versions[stage.target.table] = max(version, written.version)
        log.info(
            "[%s] committed %d rows (+%d failed) as %s v%d",
            stage.target.stage,
            written.rows_inserted,
            sum(by_reason.values()),
            stage.target.table,
            written.version,
        )


# ------------------------------------------------------------------ the run


def count_todo(lake: Lake, stage: ModelStage) -> tuple[int, int]:
    """(candidates in the source's snapshot, rows the target holds for the key): two
    counts, no join (a progress total and the run's accounting, once per run)."""
    n_candidates = stage.prepare(lake.read(stage.source)).count()
    n_done = lake.read(stage.target.table).where(key_condition(stage.spec)).count()
    return n_candidates, n_done


def stream_source(lake: Lake, stage: ModelStage, writer: ChunkWriter) -> None:
    """Every change of the source the checkpoint has not seen, about CHUNKS_PER_BATCH
    chunks per micro-batch; restarted once when a first run has measured its rate."""
    from pyspark.errors import StreamingQueryException

    checkpoint = lake.checkpoint_path(stage.target.stage, checkpoint_name(stage))
    while True:
        quiet = writer.sizer.may_resize()
        files = writer.sizer.files_per_trigger()
        query = (
            lake.read_stream(
                stage.source, {"readChangeFeed": "true", "maxFilesPerTrigger": str(files)}
            )
            .writeStream.foreachBatch(writer.process)
            .option("checkpointLocation", checkpoint)
            .trigger(availableNow=True)
            .start()
        )
        writer.bind(str(query.id))
        try:
            with _quiet_stream_errors(lake.spark) if quiet else contextlib.nullcontext():
                query.awaitTermination()
            return
        except StreamingQueryException as exc:
            if writer.resize_to is None or RESIZE not in str(exc):
                raise
            log.info(
                "[%s] restarting: %d files per micro-batch", stage.target.stage, writer.resize_to
            )
            writer.sizer.use_files(writer.resize_to)
            writer.resize_to = None


# Where Spark and py4j log a foreachBatch exception, with its traceback, at ERROR.
STREAM_LOGGERS = ("org.apache.spark.sql.execution.streaming",)
PY4J_LOGGER = "py4j.clientserver"


@contextlib.contextmanager
def _quiet_stream_errors(spark: Any) -> Iterator[None]:
    """The planned restart ends its query with an exception that Spark and py4j log at
    ERROR with tracebacks: mute those loggers for that query only. A real failure of
    the query still raises (StreamingQueryException) with its message."""
    py4j_log = logging.getLogger(PY4J_LOGGER)
    previous = py4j_log.level
    py4j_log.setLevel(logging.CRITICAL)
    levels = _set_jvm_levels(spark, dict.fromkeys(STREAM_LOGGERS, "OFF"))
    try:
        yield
    finally:
        py4j_log.setLevel(previous)
        _set_jvm_levels(spark, levels)


def _set_jvm_levels(spark: Any, levels: dict[str, str | None]) -> dict[str, str | None]:
    """Set log4j levels (None: inherit again); the levels they had. No JVM: nothing."""
    try:
        jvm = spark.sparkContext._jvm
        log4j = jvm.org.apache.logging.log4j
    except Exception:  # Spark Connect
        return {}
    before = {}
    for name, level in levels.items():
        current = log4j.LogManager.getLogger(name).getLevel()
        before[name] = None if current is None else current.toString()
        target = None if level is None else log4j.Level.toLevel(level)
        log4j.core.config.Configurator.setLevel(name, target)
    return before


def run_model_stage(lake: Lake, run: StageRun, stage: ModelStage, ctx: UdfContext) -> None:
    """Generate every missing row of `stage`, committing chunk by chunk; fill `run`."""
    target = stage.target
    lake.ensure_table(target.table, target.table_schema, change_feed=True)
    lake.ensure_change_feed(stage.source)
    run.input_versions[target.table] = lake.version(target.table)
    run.output_versions[target.table] = run.input_versions[target.table]
    writer = ChunkWriter(lake, run, stage, ctx)
    _warm_up(lake, stage, ctx, writer)
    n_candidates, n_done = count_todo(lake, stage)
    n_todo = max(0, n_candidates - n_done)
    run.counts.update(candidates=n_candidates, already_done=n_done)
    checkpoint = lake.checkpoint_path(target.stage, checkpoint_name(stage))
    writer.plans = ChunkPlans(lake, checkpoint)
    writer.sizer = ChunkSizer.for_stage(lake, stage, checkpoint, n_candidates)
    log.info(
        "[%s] about %d of %d rows to generate with %s@%s (%s); %s",
        target.stage,
        n_todo,
        n_candidates,
        stage.spec.id,
        stage.spec.model_revision,
        stage.spec.prompt_id,
        writer.sizer.describe(),
    )
    fresh = not lake.checkpoint_started(checkpoint)
    progress = Progress(
        target.stage,
        n_todo,
        interval_s=stage.progress_interval_s,
        poll=lambda: writer.accumulator.value,
    )
    with progress:
        if fresh and n_done:
            writer.done_keys = _done_keys(lake, stage)
        try:
            stream_source(lake, stage, writer)
            writer.done_keys = None
            if stage.spec.retry_failed:
                _retry_failed(lake, stage, writer)
        finally:
            if writer.done_keys is not None:
                writer.done_keys.unpersist()
    writer.sizer.save()
    _fill_run(run, writer, progress, n_candidates, n_done)


def _warm_up(lake: Lake, stage: ModelStage, ctx: UdfContext, writer: ChunkWriter) -> None:
    """Python workers start and load the model while the driver plans (counts, stream
    start). Under a model resource profile (GPUs) the warm-up's default-profile tasks
    hold no GPU: they only import."""
    from kale_spark.spark import udf
    from kale_spark.spark.warmup import warm_python_workers

    then = None
    if stage.resource_profile is None:
        then = udf.model_warmup_fn(ctx, stage.kind, writer.workers)
    warm_python_workers(lake.spark, ("kale_spark.models.inference",), then)


def _done_keys(lake: Lake, stage: ModelStage) -> DataFrame:
    """Keys a new checkpoint must not generate again: rows the target holds for the key,
    and rows quarantined for it (those wait for `retry_failed`). Persisted once."""
    from pyspark import StorageLevel

    log.info("[%s] new checkpoint over an old target: skipping done keys", stage.target.stage)
    done = already_done(lake, stage.target.table, stage.spec)
    if lake.exists(schema.QUARANTINE):
        done = done.unionByName(quarantined(lake, stage))
    done = done.distinct().persist(StorageLevel.MEMORY_AND_DISK)
    done.count()
    return done


def _retry_failed(lake: Lake, stage: ModelStage, writer: ChunkWriter) -> None:
    """Once per run: the candidates that still have no row (failed in an earlier run),
    except those this run failed on, through the same chunks, merged on the key."""
    from pyspark.sql import functions as F

    if not lake.exists(schema.QUARANTINE):
        return
    failed = quarantined(lake, stage)
    this_run = lake.read(schema.QUARANTINE).where(F.col("run_id") == writer.run.run_id)
    retry = failed.join(this_run.select(schema.UID), schema.UID, "left_anti").join(
        already_done(lake, stage.target.table, stage.spec), schema.UID, "left_anti"
    )
    if retry.limit(1).count() == 0:
        return
    log.info("[%s] retrying rows that failed in earlier runs", stage.target.stage)
    candidates = lake.read(stage.source).join(retry.distinct(), schema.UID, "left_semi")
    writer.run_batch(candidates, None)


def _fill_run(
    run: StageRun, writer: ChunkWriter, progress: Progress, n_candidates: int, n_done: int
) -> None:
    tally = writer.tally
    n_failed = sum(tally.failed.values())
    run.counts.update(
        generated=tally.generated,
        failed=n_failed,
        quarantine_new=tally.quarantined,
        commits=tally.commits,
        chunks_replayed=tally.replayed,
        files=tally.files,
    )
    for reason, n in sorted(tally.failed.items()):
        run.counts[f"failed.{reason}"] = n
    run.counts.update(progress.counts())
    run.metrics.update(progress.metrics())
    run.metrics.update(_worker_metrics(writer.workers.value))
    run.metrics.update(writer.sizer.metrics())
    if tally.duplicates:
        run.notes.append(
            f"{tally.duplicates} generated rows were already in the table "
            "(a concurrent run wrote them)"
        )
    rate = progress.metrics()["rows_per_s"]
    run.notes.append(
        f"candidates {n_candidates}: already done {n_done} before the run, generated "
        f"{tally.generated}, failed {n_failed}  ({tally.commits} commits, "
        f"{tally.files} files, {rate:.2f} rows/s)"
    )


def _worker_metrics(workers: Mapping[str, int]) -> dict[str, float]:
    """Model loads and the Python workers that ran the model (one key each)."""
    n_workers = sum(1 for k in workers if k.startswith("worker:"))
    loads = workers.get("loads", 0)
    return {
        "model_loads": float(loads),
        "model_workers": float(n_workers),
        "loads_per_worker": round(loads / n_workers, 3) if n_workers else 0.0,
    }


def run_on_cluster(spark: Any, cfg: Any, lake: Lake, run: StageRun, **wiring: Any) -> None:
    """Build a :class:`ModelStage` from ``wiring`` for the session's cluster and run it.

    What every model stage shares: the progress interval from ``cfg``, one GPU per model
    task on a GPU cluster (stage-level scheduling; None locally), the number of model
    tasks the cluster runs at once, and the model UDF's context for ``wiring["spec"]``.
    """
    from kale_spark.spark import udf
    from kale_spark.spark.resources import model_slots, model_stage_profile

    stage = ModelStage(
        **wiring,
        progress_interval_s=cfg.progress.interval_s,
        resource_profile=model_stage_profile(spark),
        slots=model_slots(spark),
    )
    run_model_stage(lake, run, stage, udf.udf_context(spark, cfg, stage.spec))
    if stage.spec.is_tiny:
        run.notes.append(f"{stage.spec.id} is an untrained smoke-test model: captions are noise")
