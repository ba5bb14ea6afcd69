"""Ingest: DataComp metadata → `samples` (bronze), bad rows → `quarantine`.

Every input row ends in exactly one place: inserted into `samples`, already present
there (a rerun, or a grown input), or in `quarantine` with a reason and its source
file and row. The run's counts say so:

    input = inserted + already_present + quarantined
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kale_spark import schema
from kale_spark.config import Config, IngestConfig
from kale_spark.lake.frames import local_frame
from kale_spark.lake.runs import StageRun, stage_run
from kale_spark.lake.tables import Lake
from kale_spark.sources.datacomp import read_raw

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession


STAGE = "ingest"
RAW_PREVIEW_CHARS = 500  # raw values kept in quarantine are cut to this length


def _url_pattern(schemes: tuple[str, ...]) -> str:
    """A URL must have a scheme we fetch and a host (or, for file://, an absolute path)."""
    web = [s for s in schemes if s != "file"]
    parts = []
    if web:
        parts.append(f"({'|'.join(web)})://[^\\s/?#@]+(:[0-9]+)?([/?#][^\\s]*)?")
    if "file" in schemes:
        parts.append("file:///[^\\s]+")
    return "^(" + "|".join(parts) + ")$"


def normalized(raw: DataFrame, cfg: IngestConfig) -> DataFrame:
    """Typed, trimmed columns beside the raw ones, and `reason` (null when valid)."""
    from pyspark.sql import functions as F

    def blank(c: str) -> Column:
        return F.col(c).isNull() | (F.trim(F.col(c)) == "")

    uid = F.lower(F.trim("uid"))
    url = F.trim("url")
    text = F.trim("text")
    width = F.expr("try_cast(try_cast(trim(original_width) AS DOUBLE) AS INT)")
    height = F.expr("try_cast(try_cast(trim(original_height) AS DOUBLE) AS INT)")
    b32 = F.expr("try_cast(trim(clip_b32_similarity_score) AS DOUBLE)")
    l14 = F.expr("try_cast(trim(clip_l14_similarity_score) AS DOUBLE)")
    sha = F.lower(F.trim("sha256"))
    faces = F.from_json(F.col("face_bboxes"), schema.FACE_BBOXES_TYPE)

    # Ordered: the first rule a row breaks is its reason.
    rules: list[tuple[str, Column]] = [
        (schema.REASON_MISSING_UID, blank("uid")),
        (schema.REASON_BAD_UID, ~uid.rlike("^[0-9a-f]{32}$")),
        (schema.REASON_MISSING_URL, blank("url")),
        (schema.REASON_BAD_URL, ~url.rlike(_url_pattern(cfg.url_schemes))),
        (schema.REASON_EMPTY_TEXT, blank("text")),
        (schema.REASON_TEXT_TOO_LONG, F.length(text) > cfg.max_text_chars),
        (schema.REASON_BAD_WIDTH, ~blank("original_width") & (width.isNull() | (width <= 0))),
        (schema.REASON_BAD_HEIGHT, ~blank("original_height") & (height.isNull() | (height <= 0))),
        (schema.REASON_BAD_SHA256, ~blank("sha256") & ~sha.rlike("^[0-9a-f]{64}$")),
        (
            schema.REASON_BAD_SCORE,
            (~blank("clip_b32_similarity_score") & b32.isNull())
            | (~blank("clip_l14_similarity_score") & l14.isNull()),
        ),
        (schema.REASON_BAD_FACE_BBOXES, ~blank("face_bboxes") & faces.isNull()),
    ]
    reason = F.lit(None).cast("string")
    for name, broken in reversed(rules):
        reason = F.when(F.coalesce(broken, F.lit(False)), F.lit(name)).otherwise(reason)

    return raw.select(
        "*",
        uid.alias("n_uid"),
        url.alias("n_url"),
        text.alias("n_text"),
        width.alias("n_width"),
        height.alias("n_height"),
        F.when(blank("sha256"), None).otherwise(sha).alias("n_sha256"),
        b32.alias("n_b32"),
        l14.alias("n_l14"),
        faces.alias("n_faces"),
        reason.alias("reason"),
    )


def classify(raw: DataFrame, cfg: IngestConfig) -> DataFrame:
    """`normalized` plus the in-input duplicate rule: the first row of a uid wins,
    ordered by source file then row, so reruns pick the same winner."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = normalized(raw, cfg)
    w = Window.partitionBy("n_uid").orderBy("source_file", "source_row")
    rank = F.when(F.col("reason").isNull(), F.row_number().over(w))
    return df.withColumn(
        "reason",
        F.when(F.col("reason").isNull() & (rank > 1), F.lit(schema.REASON_DUPLICATE_UID)).otherwise(
            F.col("reason")
        ),
    )


def _samples_rows(df: DataFrame, run_id: str) -> DataFrame:
    from pyspark.sql import functions as F

    return df.where(F.col("reason").isNull()).select(
        F.col("n_uid").alias("uid"),
        F.col("n_url").alias("url"),
        F.col("n_text").alias("text"),
        F.col("n_width").alias("original_width"),
        F.col("n_height").alias("original_height"),
        F.col("n_sha256").alias("sha256"),
        F.col("n_b32").alias("clip_b32_similarity_score"),
        F.col("n_l14").alias("clip_l14_similarity_score"),
        F.col("n_faces").alias("face_bboxes"),
        "source_file",
        F.current_timestamp().alias("ingested_at"),
        F.lit(run_id).alias("run_id"),
    )


def _quarantine_rows(df: DataFrame, run_id: str) -> DataFrame:
    from pyspark.sql import functions as F

    raw = F.create_map(
        *[
            part
            for name in schema.DATACOMP_COLUMNS
            for part in (F.lit(name), F.substring(F.col(name), 1, RAW_PREVIEW_CHARS))
        ]
    )
    return df.where(F.col("reason").isNotNull()).select(
        F.lit(STAGE).alias("stage"),
        "source_file",
        F.col("source_row").cast("long").alias("source_row"),
        F.substring("uid", 1, 64).alias("uid"),
        "reason",
        raw.alias("raw"),
        F.current_timestamp().alias("quarantined_at"),
        F.lit(run_id).alias("run_id"),
    )


def _unreadable_rows(spark: SparkSession, unreadable: dict[str, str], run_id: str) -> DataFrame:
    """One quarantine row per input file that could not be read (no uid, row -1)."""
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    rows = [
        (
            STAGE,
            f,
            -1,
            None,
            schema.REASON_UNREADABLE_FILE,
            {"error": why[:RAW_PREVIEW_CHARS]},
            now,
            run_id,
        )
        for f, why in sorted(unreadable.items())
    ]
    return local_frame(spark, rows, schema.QUARANTINE_SCHEMA)


def _insert(lake: Lake, table: str, rows: DataFrame, keys: list[str], run: StageRun):
    """Rows whose key the table lacks: a plain append into a table no write has touched
    yet (version 0, as created: nothing to match), else an insert-only MERGE."""
    if lake.version(table) == 0:
        return lake.append(table, rows, run.commit())
    return lake.insert_new(table, rows, keys, run.commit())


def run(spark: SparkSession, cfg: Config, input_path: str | None = None) -> StageRun:
    """Ingest `input_path` (default `cfg.ingest.input`) into the lake."""
    from pyspark import StorageLevel

    lake = Lake(spark, cfg.lake)
    path = input_path or cfg.ingest.input
    with stage_run(lake, cfg, STAGE) as run:
        lake.ensure_table(schema.SAMPLES, schema.SAMPLES_SCHEMA)
        lake.ensure_table(schema.QUARANTINE, schema.QUARANTINE_SCHEMA)
        run.input_versions[schema.SAMPLES] = lake.version(schema.SAMPLES)

        # On disk: the input's size must not set the JVM heap's (local mode holds the
        # executor in the driver's JVM); read back twice, computed once.
        raw, unreadable = read_raw(spark, path)
        classified = classify(raw, cfg.ingest).persist(StorageLevel.DISK_ONLY)
        try:
            by_reason = {
                r["reason"]: r["count"] for r in classified.groupBy("reason").count().collect()
            }
            total = sum(by_reason.values())
            valid = by_reason.pop(None, 0)
            quarantined = sum(by_reason.values())
            if unreadable:
                by_reason[schema.REASON_UNREADABLE_FILE] = len(unreadable)

            written = _insert(
                lake, schema.SAMPLES, _samples_rows(classified, run.run_id), ["uid"], run
            )
            q_written = _insert(
                lake,
                schema.QUARANTINE,
                _quarantine_rows(classified, run.run_id).unionByName(
                    _unreadable_rows(spark, unreadable, run.run_id)
                ),
                list(schema.QUARANTINE_KEY),
                run,
            )
        finally:
            classified.unpersist()

        run.counts.update(
            input=total,
            inserted=written.rows_inserted,
            already_present=valid - written.rows_inserted,
            quarantined=quarantined,
            quarantine_new=q_written.rows_inserted,
        )
        for reason, n in sorted(by_reason.items()):
            run.counts[f"quarantined.{reason}"] = n
        run.output_versions = {
            schema.SAMPLES: written.version,
            schema.QUARANTINE: q_written.version,
        }
        run.notes.append(
            f"input {total} = inserted {written.rows_inserted} + already present "
            f"{valid - written.rows_inserted} + quarantined {quarantined}"
            + (f"; {len(unreadable)} unreadable file(s) quarantined" if unreadable else "")
        )
    return run
