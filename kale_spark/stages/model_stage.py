"""What the model stages (caption, augment, student-caption) share: generation that
commits as it goes, exactly once per (uid, model, prompt_id).

    source table ─ Structured Streaming, trigger(availableNow), checkpoint under the lake,
    │              files per micro-batch sized to about one commit (files_per_trigger)
    └ foreachBatch(micro-batch):
        keys: (uid, committed?) of its candidates, in uid order     (keys only)
        cut into even chunks of at most `<stage>.rows_per_commit`, each:
          committed rows dropped ─ model (mapInPandas, one model per Python worker)
          ─▶ append to the output table with txnAppId/txnVersion   ─ one commit
          ─▶ failed rows into quarantine (reason, error), never lost
    catch-up (resumed checkpoints only): candidates the stream did not deliver (rows
              an update commit changed, earlier failures) through the same chunks,
              committed by insert-only MERGE.

Exactly once. Chunks are cut from every candidate of the micro-batch, committed or
not, so a replayed micro-batch (a crash between a commit and the checkpoint) is cut
the same way: each chunk's append carries the streaming query's id as txnAppId and
(batch id, chunk index) as txnVersion, and Delta skips a version it has committed
(and fails the second of two runs committing the same one at once). Committed rows
are removed from a chunk before the model runs, so nothing committed is generated
again. A chunk Delta skips although rows remained (rows_per_commit changed between
a crash and its rerun) is merged on the key instead. A killed run loses at most the
chunks in flight; the rerun resumes from the checkpoint. Every commit carries the
run id.

    candidates = already_done + generated + failed    (without concurrent writers)
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kale_spark import schema
from kale_spark.hashing import sha256_hex
from kale_spark.lake import Lake, WriteResult
from kale_spark.models.spec import ModelSpec
from kale_spark.progress import Progress, counter_accumulator
from kale_spark.runs import StageRun

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import StructType

    from kale_spark.udf import UdfContext

log = logging.getLogger(__name__)

RAW_ERROR_CHARS = 500


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


@dataclass
class Tally:
    """What a run committed, summed over its chunks."""

    generated: int = 0
    duplicates: int = 0
    quarantined: int = 0
    commits: int = 0
    failed: dict[str, int] = field(default_factory=dict)


def already_done(lake: Lake, table: str, spec: ModelSpec) -> DataFrame:
    """uids that `table` already holds for this model and prompt."""
    from pyspark.sql import functions as F

    return (
        lake.read(table)
        .where((F.col("model") == spec.id) & (F.col("prompt_id") == spec.prompt_id))
        .select(schema.UID)  # unique: (uid, model, prompt_id) is the table's key
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
    prompt_id): a rerun that fails again adds nothing, another model's failure does."""
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
        F.xxhash64(schema.UID, F.lit(spec.id), F.lit(spec.prompt_id)).alias("source_row"),
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
    """A checkpoint per (stage, source, model, prompt): another model starts afresh."""
    spec = stage.spec
    key = f"{stage.source}|{spec.id}|{spec.prompt_id}".encode()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{spec.id}-{spec.prompt_id}").strip("_")[:80]
    return f"{slug}-{sha256_hex(key)[:10]}"


# A chunk's Delta transaction version: micro-batch id x this + chunk index.
CHUNKS_PER_BATCH = 1_000_000


class ChunkWriter:
    """Runs the model over batches of candidate rows and commits them chunk by chunk.

    Chunks of a micro-batch are cut from all its candidates in uid order, committed
    or not, so a replayed micro-batch (a crash before the checkpoint recorded it) is
    cut into the same chunks. Each chunk is one append carrying Delta's txnAppId (the
    streaming query's id, stable for the checkpoint's life) and txnVersion (batch,
    chunk): a chunk that committed is skipped by Delta, and two runs that replay the
    same micro-batch at once cannot both commit it. Rows already committed are removed
    before the model runs, so nothing committed is generated again. A chunk outside
    the stream (the catch-up pass), or one Delta skipped although it still had rows
    (the chunk size changed between a crash and its rerun), goes through a keyed
    insert-only MERGE instead.
    """

    def __init__(self, lake: Lake, run: StageRun, stage: ModelStage, ctx: UdfContext) -> None:
        from kale_spark import udf

        self.lake = lake
        self.run = run
        self.stage = stage
        self.tally = Tally()
        self.failed_uids: set[str] = set()  # rows this run failed on (few; bounded per chunk)
        self.accumulator = counter_accumulator(lake.spark)
        self.model_fn = udf.model_partition_fn(ctx, stage.kind, progress=self.accumulator)
        self.app_id: str | None = None
        self._bound = threading.Event()

    def bind(self, query_id: str) -> None:
        """The streaming query's id: the txnAppId of this checkpoint's commits."""
        self.app_id = f"kale:{self.stage.target.stage}:{query_id}"
        self._bound.set()

    def keys(self, prepared: DataFrame) -> list[tuple[str, bool]]:
        """(uid, committed) of every candidate in `prepared`, in uid order; keys only."""
        flagged = flag_committed(self.lake, self.stage, prepared)
        return sorted((r[schema.UID], bool(r["_done"])) for r in flagged.collect())

    def process(self, source_rows: DataFrame, batch_id: int) -> None:
        """foreachBatch: generate and commit the micro-batch's missing rows in chunks."""
        prepared = self.stage.prepare(source_rows)
        keys = self.keys(prepared)
        chunks = [
            [u for u, done in part if not done and u not in self.failed_uids]
            for part in even_parts(keys, self.stage.spec.rows_per_commit)
        ]
        n = sum(len(c) for c in chunks)
        log.info("[%s] batch %d: %d rows to generate", self.stage.target.stage, batch_id, n)
        if n == 0:
            return
        if batch_id >= 0 and not self._bound.wait(timeout=60):
            # Never bound (foreachBatch runs in another process, e.g. on Spark Connect):
            # this and every later chunk commits by MERGE, without waiting again.
            log.warning("[%s] no query id: chunks commit by MERGE", self.stage.target.stage)
            self._bound.set()
        for k, chunk in enumerate(chunks):
            if not chunk:
                continue
            # A chunk that is not the whole micro-batch reads it through a filter on its
            # uids; micro-batches are sized to about one chunk (files_per_trigger), so
            # the batch's files are rarely read twice and nothing is cached.
            rows = prepared if len(chunk) == len(keys) else self._only(prepared, chunk)
            txn = None
            if batch_id >= 0 and self.app_id is not None:
                txn = (self.app_id, batch_id * CHUNKS_PER_BATCH + k)
            self.commit_chunk(rows, len(chunk), txn)

    def _only(self, rows: DataFrame, uids: list[str]) -> DataFrame:
        import pandas as pd

        # From pandas (Arrow): a local relation, no Python-worker job to build it.
        keys = self.lake.spark.createDataFrame(
            pd.DataFrame({schema.UID: uids}), f"{schema.UID} string"
        )
        return rows.join(keys.hint("broadcast"), schema.UID, "left_semi")

    def _spread(self, chunk: DataFrame, rows: int) -> DataFrame:
        """Spread a chunk evenly over the cluster, at least one model batch per task.
        (A micro-batch's file splits are sized by bytes, not rows: 3 splits on 2
        slots leave one slot idle for a third of the run, so rows are dealt out.)"""
        parallelism = self.lake.spark.sparkContext.defaultParallelism
        return chunk.repartition(max(1, min(parallelism, -(-rows // self.stage.spec.batch_size))))

    def _results_schema(self, chunk: DataFrame) -> StructType:
        from pyspark.sql.types import StructType

        from kale_spark import udf

        fields = [f for f in chunk.schema.fields if f.name not in udf.DROPPED_INPUTS]
        return StructType(fields + list(udf.RESULT_TYPE.fields))

    def _write_good(self, good: DataFrame, txn: tuple[str, int] | None) -> WriteResult:
        """The chunk's good rows in one commit: an idempotent append, or the MERGE."""
        target, run = self.stage.target, self.run
        rows = output_rows(good, self.stage, run.run_id)
        keys = list(schema.GENERATED_KEY)
        if txn is None:
            return self.lake.insert_new(target.table, rows, keys, run.commit())
        written = self.lake.append(target.table, rows, run.commit(), txn=txn)
        if written.committed:
            return written
        log.warning("[%s] Delta skipped chunk %s as committed; merging it", target.stage, txn)
        return self.lake.insert_new(target.table, rows, keys, run.commit())

    def commit_chunk(self, chunk: DataFrame, rows: int, txn: tuple[str, int] | None) -> None:
        """Model over one chunk; its good rows in one commit, its failures in quarantine."""
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        stage, run = self.stage, self.run
        chunk = self._spread(chunk, rows)
        out_schema = self._results_schema(chunk)
        if stage.resource_profile is not None:
            mapped = chunk.mapInPandas(self.model_fn, out_schema, profile=stage.resource_profile)
        else:
            mapped = chunk.mapInPandas(self.model_fn, out_schema)
        # Persisted for the chunk's two writes: the model runs once per row.
        results = mapped.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            ok = F.col("reason").isNull()
            written = self._write_good(results.where(ok), txn)  # runs the model
            failed = results.where(~ok).select(schema.UID, "reason").collect()
            by_reason = Counter(r["reason"] for r in failed)
            if failed:
                self.failed_uids.update(r[schema.UID] for r in failed)
                self.lake.ensure_table(schema.QUARANTINE, schema.QUARANTINE_SCHEMA)
                q = self.lake.insert_new(
                    schema.QUARANTINE,
                    quarantine_rows(results.where(~ok), stage, run.run_id),
                    list(schema.QUARANTINE_KEY),
                    run.commit(),
                )
                self.tally.quarantined += q.rows_inserted
                run.output_versions[schema.QUARANTINE] = q.version
            n_good = rows - len(failed)
        finally:
            results.unpersist()
        self.tally.generated += written.rows_inserted
        self.tally.duplicates += max(0, n_good - written.rows_inserted)
        self.tally.commits += 1
        for reason, count in by_reason.items():
            self.tally.failed[reason] = self.tally.failed.get(reason, 0) + count
        run.output_versions[stage.target.table] = written.version
        log.info(
            "[%s] committed %d rows (+%d failed) as %s v%d",
            stage.target.stage,
            written.rows_inserted,
            len(failed),
            stage.target.table,
            written.version,
        )


def even_parts(items: Sequence[Any], limit: int) -> list[Sequence[Any]]:
    """`items` cut, in order, into the fewest parts of at most `limit`, sizes within one
    of each other (300 rows at 256 a commit: 150 + 150, not 256 + 44)."""
    if not items:
        return []
    parts = -(-len(items) // limit)
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


def files_per_trigger(lake: Lake, stage: ModelStage, n_candidates: int) -> int:
    """`<stage>.files_per_trigger`, or when 0 the files that hold about one commit's
    candidates (rows_per_commit / candidates per file of the source), at least 1."""
    if stage.spec.files_per_trigger:
        return stage.spec.files_per_trigger
    per_file = n_candidates / max(1, lake.file_count(stage.source))
    return max(1, int(stage.spec.rows_per_commit // max(per_file, 1.0)))


def flag_committed(lake: Lake, stage: ModelStage, candidates: DataFrame) -> DataFrame:
    """(uid, _done) for each candidate: _done true when the target holds its row for this
    model and prompt, null otherwise. Keys only."""
    from pyspark.sql import functions as F

    done = already_done(lake, stage.target.table, stage.spec).withColumn("_done", F.lit(True))
    return candidates.select(schema.UID).join(done, schema.UID, "left")


def count_todo(lake: Lake, stage: ModelStage) -> tuple[int, int]:
    """(candidates, already done) over the source's current snapshot; reads keys only."""
    flagged = flag_committed(lake, stage, stage.prepare(lake.read(stage.source)))
    by_done = {r["_done"]: r["count"] for r in flagged.groupBy("_done").count().collect()}
    n_done = by_done.get(True, 0)
    return n_done + by_done.get(None, 0), n_done


def stream_source(lake: Lake, stage: ModelStage, writer: ChunkWriter, files: int) -> bool:
    """Every file of the source the checkpoint has not seen, `files` per micro-batch.
    True when the checkpoint was new: the stream then delivered the whole snapshot."""
    options = {
        # Update commits (a fetch retry rewriting a row) are skipped here; the
        # catch-up pass picks up what they changed.
        "skipChangeCommits": "true",
        "maxFilesPerTrigger": str(files),
    }
    checkpoint = lake.checkpoint_path(stage.target.stage, checkpoint_name(stage))
    fresh = not lake.checkpoint_started(checkpoint)
    query = (
        lake.read_stream(stage.source, options)
        .writeStream.foreachBatch(writer.process)
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .start()
    )
    writer.bind(str(query.id))
    query.awaitTermination()
    return fresh


def run_model_stage(lake: Lake, run: StageRun, stage: ModelStage, ctx: UdfContext) -> None:
    """Generate every missing row of `stage`, committing chunk by chunk; fill `run`."""
    target = stage.target
    lake.ensure_table(target.table, target.table_schema)
    run.input_versions[target.table] = lake.version(target.table)
    n_candidates, n_done = count_todo(lake, stage)
    n_todo = n_candidates - n_done
    run.counts.update(candidates=n_candidates, already_done=n_done)
    run.output_versions[target.table] = run.input_versions[target.table]
    if n_todo == 0:
        run.counts.update(generated=0, failed=0, quarantine_new=0, commits=0)
        run.notes.append(f"nothing to do: all {n_candidates} candidates have a {target.table} row")
        return
    files = files_per_trigger(lake, stage, n_candidates)
    log.info(
        "[%s] %d of %d rows to generate with %s (%s), %d rows per commit, %d files per batch",
        target.stage,
        n_todo,
        n_candidates,
        stage.spec.id,
        stage.spec.prompt_id,
        stage.spec.rows_per_commit,
        files,
    )
    writer = ChunkWriter(lake, run, stage, ctx)
    progress = Progress(
        target.stage,
        n_todo,
        interval_s=stage.progress_interval_s,
        poll=lambda: writer.accumulator.value,
    )
    with progress:
        if not stream_source(lake, stage, writer, files):
            # Catch-up: what a resumed stream did not deliver (rows an update commit
            # changed, rows that failed in an earlier run), through the same chunks. A
            # new checkpoint delivered the whole snapshot: nothing to catch up. The
            # count reads keys only; the image bytes are read only when rows remain.
            candidates, done = count_todo(lake, stage)
            if candidates > done + len(writer.failed_uids):
                log.info(
                    "[%s] catch-up: %d rows the stream did not deliver",
                    target.stage,
                    candidates - done - len(writer.failed_uids),
                )
                writer.process(lake.read(stage.source), batch_id=-1)
    _fill_run(run, writer.tally, progress, n_candidates, n_todo)


def _fill_run(
    run: StageRun, tally: Tally, progress: Progress, n_candidates: int, n_todo: int
) -> None:
    n_failed = sum(tally.failed.values())
    run.counts.update(
        generated=tally.generated,
        failed=n_failed,
        quarantine_new=tally.quarantined,
        commits=tally.commits,
    )
    for reason, n in sorted(tally.failed.items()):
        run.counts[f"failed.{reason}"] = n
    run.counts.update(progress.counts())
    run.metrics.update(progress.metrics())
    if tally.duplicates:
        run.notes.append(
            f"{tally.duplicates} generated rows were already in the table "
            "(a concurrent run wrote them)"
        )
    rate = progress.metrics()["rows_per_s"]
    run.notes.append(
        f"candidates {n_candidates} = already done {n_candidates - n_todo} + generated "
        f"{tally.generated} + failed {n_failed}  ({tally.commits} commits, {rate:.2f} rows/s)"
    )
