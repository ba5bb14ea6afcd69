"""What the model stages (caption, augment) share: idempotent generation into a table.

    candidates ─ anti-join rows this model + prompt already wrote ─▶ todo
    todo ─ model UDF (one struct per row) ─▶ checkpointed results
    results with text ─▶ MERGE into the output table on GENERATED_KEY, with lineage
    results without   ─▶ MERGE into quarantine (reason, error), never lost

The model runs once per row: the UDF output is checkpointed before the two merges
read it (Delta's MERGE may scan its source twice). A rerun generates only uids with
no row yet for this model and prompt; rows that failed are retried.

    candidates = already_done + generated + failed    (without concurrent writers)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kale_spark import schema
from kale_spark.lake import Lake
from kale_spark.models.spec import ModelSpec
from kale_spark.runs import StageRun

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import StructType

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


def quarantine_rows(
    failed: DataFrame,
    target: Target,
    spec: ModelSpec,
    source_versions: Mapping[str, int],
    run_id: str,
) -> DataFrame:
    """Failed results as quarantine rows. `source_row` is a stable hash of (uid, model,
    prompt_id): a rerun that fails again adds nothing, another model's failure does."""
    from pyspark.sql import functions as F

    raw = F.create_map(
        F.lit("model"),
        F.lit(spec.id),
        F.lit("model_revision"),
        F.lit(spec.model_revision),
        F.lit("prompt_id"),
        F.lit(spec.prompt_id),
        F.lit("source_versions"),
        F.lit(",".join(f"{k}@{v}" for k, v in sorted(source_versions.items()))),
        F.lit("error"),
        F.substring(F.col("r.error"), 1, RAW_ERROR_CHARS),
    )
    return failed.select(
        F.lit(target.stage).alias("stage"),
        F.lit(target.source_table).alias("source_file"),
        F.xxhash64(schema.UID, F.lit(spec.id), F.lit(spec.prompt_id)).alias("source_row"),
        F.col(schema.UID),
        F.col("r.reason").alias("reason"),
        raw.alias("raw"),
        F.current_timestamp().alias("quarantined_at"),
        F.lit(run_id).alias("run_id"),
    )


def output_rows(
    good: DataFrame,
    target: Target,
    spec: ModelSpec,
    source_versions: Mapping[str, int],
    run_id: str,
    passthrough: Sequence[str],
) -> DataFrame:
    from pyspark.sql import functions as F

    df = good.select(
        *passthrough,
        F.col("r.text").alias(target.text_column),
        F.col("r.prompt_tokens").alias("prompt_tokens"),
        F.col("r.new_tokens").alias("new_tokens"),
        *lineage_columns(spec, source_versions, run_id),
    )
    return df.select(*[F.col(f.name).cast(f.dataType) for f in target.table_schema.fields])


def generate(
    lake: Lake,
    run: StageRun,
    target: Target,
    spec: ModelSpec,
    candidates: DataFrame,
    model_call: Column,
    source_versions: Mapping[str, int],
    passthrough: Sequence[str] = (schema.UID,),
) -> None:
    """Run `model_call` (a model UDF over `candidates`' columns) on the candidates this
    model + prompt has not done yet; merge results and failures; fill `run`'s counts."""
    from pyspark.sql import functions as F

    lake.ensure_table(target.table, target.table_schema)
    run.input_versions[target.table] = lake.version(target.table)

    done = already_done(lake, target.table, spec)
    # One job counts both (the model columns are pruned away; no model runs here).
    flagged = candidates.select(schema.UID).join(
        done.withColumn("_done", F.lit(True)), schema.UID, "left"
    )
    by_done = {r["_done"]: r["count"] for r in flagged.groupBy("_done").count().collect()}
    n_done = by_done.get(True, 0)
    n_candidates = n_done + by_done.get(None, 0)
    n_todo = n_candidates - n_done
    todo = candidates.join(done, schema.UID, "left_anti")
    run.counts.update(candidates=n_candidates, already_done=n_done)
    if n_todo == 0:
        run.counts.update(generated=0, failed=0, quarantine_new=0)
        run.output_versions[target.table] = lake.version(target.table)
        run.notes.append(f"nothing to do: all {n_candidates} candidates have a {target.table} row")
        return

    log.info(
        "[%s] %d of %d rows to generate with %s (%s)",
        target.stage,
        n_todo,
        n_candidates,
        spec.id,
        spec.prompt_id,
    )
    start = time.monotonic()
    # Checkpointed: the model runs once per row, whatever reads the results after.
    results = todo.select(*passthrough, model_call.alias("r")).localCheckpoint(eager=True)
    seconds = time.monotonic() - start
    log.info(
        "[%s] generated %d rows in %.1fs (%.2f rows/s)",
        target.stage,
        n_todo,
        seconds,
        n_todo / max(seconds, 1e-6),
    )
    try:
        ok = F.col("r.reason").isNull()
        by_reason = {
            r["reason"]: r["count"]
            for r in results.groupBy(F.col("r.reason").alias("reason")).count().collect()
        }
        n_good = by_reason.pop(None, 0)
        written = lake.merge_new(
            target.table,
            output_rows(results.where(ok), target, spec, source_versions, run.run_id, passthrough),
            list(schema.GENERATED_KEY),
            run.commit(),
        )
        n_failed = sum(by_reason.values())
        quarantined = 0
        if n_failed:
            lake.ensure_table(schema.QUARANTINE, schema.QUARANTINE_SCHEMA)
            q_written = lake.merge_new(
                schema.QUARANTINE,
                quarantine_rows(results.where(~ok), target, spec, source_versions, run.run_id),
                list(schema.QUARANTINE_KEY),
                run.commit(),
            )
            quarantined = q_written.rows_inserted
            run.output_versions[schema.QUARANTINE] = q_written.version
    finally:
        results.unpersist()

    run.counts.update(generated=written.rows_inserted, failed=n_failed, quarantine_new=quarantined)
    for reason, n in sorted(by_reason.items()):
        run.counts[f"failed.{reason}"] = n
    run.output_versions[target.table] = written.version
    if written.rows_inserted != n_good:
        run.notes.append(
            f"{n_good - written.rows_inserted} generated rows were already in {target.table} "
            "(a concurrent run wrote them)"
        )
    run.notes.append(
        f"candidates {n_candidates} = already done {n_candidates - n_todo} + generated "
        f"{n_good} + failed {n_failed}  ({n_todo / max(seconds, 1e-6):.2f} rows/s)"
    )
