"""Publish: kept `filtered_captions` + `samples` → the gold table `kale`, a release, exports.

One row per uid. When a uid has several kept captions (a stage-1 and a stage-2 one, or
captions from two models or prompts), the stage-1 caption wins, then the newest one,
then model and prompt id in name order - so the choice is deterministic.

    1. MERGE the gold rows into `kale` by uid: new uids are inserted, rows whose
       content changed are updated, uids that no longer have a kept caption are
       deleted. Only the changes go into the MERGE (a hash join against the table
       finds them); with nothing to change there is no MERGE and no commit.
    2. OPTIMIZE (bin-packing compaction) the table.
    3. If the table version is not a recorded release yet: export it
       (kale_spark/export.py) and append a row to `releases` (release number, the
       kale version, time, row counts, config hash, run id, source versions).

Both commits carry `{"run_id", "stage": "publish", "release": n}` as Delta user
metadata (the OPTIMIZE commit adds the release's table version as
`release_version`), so `kale history kale` shows which commit made which release.
Rerunning publish on unchanged inputs commits nothing and records no release; a
crash between steps is repaired by the next run (step 3 keys on the table version).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from kale_spark import caption_stats, quality, schema
from kale_spark.config import Config
from kale_spark.export import ReleaseInfo, default_dir, export_release
from kale_spark.lake import Lake
from kale_spark.runs import StageRun, stage_run
from kale_spark.versioning import ADDED, CHANGED, REMOVED, diff_counts

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

STAGE = "publish"
CDF_PROPERTY = "delta.enableChangeDataFeed"


def gold_rows(filtered: DataFrame, samples: DataFrame) -> DataFrame:
    """KALE_SCHEMA rows: one kept caption per uid, joined with its sample."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    kept = filtered.where(~F.col("rejected"))
    best = Window.partitionBy("uid").orderBy(
        F.col("stage").asc(), F.col("created_at").desc(), "model", "prompt_id"
    )
    one = kept.withColumn("_rank", F.row_number().over(best)).where(F.col("_rank") == 1)
    joined = one.alias("f").join(samples.alias("s"), "uid", "inner")
    columns = {
        "url": F.col("s.url"),
        "alt_text": F.col("s.text"),
        "filter_run_id": F.col("f.run_id"),
    }
    return joined.select(
        *[
            columns.get(f.name, F.col(f"f.{f.name}" if f.name != "uid" else "uid"))
            .cast(f.dataType)
            .alias(f.name)
            for f in schema.KALE_SCHEMA.fields
        ]
    )


def _ensure_kale(lake: Lake) -> None:
    """The gold table, with the change data feed on (kale diff reads it)."""
    lake.ensure_table(schema.KALE, schema.KALE_SCHEMA)
    props = {
        r["key"]: r["value"]
        for r in lake.spark.sql(f"SHOW TBLPROPERTIES delta.`{lake.path(schema.KALE)}`").collect()
    }
    if props.get(CDF_PROPERTY, "false").lower() != "true":
        with lake.commit_metadata({"stage": "create", "table": schema.KALE}):
            lake.spark.sql(
                f"ALTER TABLE delta.`{lake.path(schema.KALE)}` "
                f"SET TBLPROPERTIES ({CDF_PROPERTY} = true)"
            )


def _last_release(lake: Lake) -> tuple[int, int | None]:
    """(the last release number, its kale version); (0, None) before the first."""
    from pyspark.sql import functions as F

    row = lake.read(schema.RELEASES).orderBy(F.col("release").desc()).first()
    return (0, None) if row is None else (int(row["release"]), int(row["version"]))


def changes(lake: Lake, source: DataFrame) -> DataFrame:
    """What a MERGE of `source` into `kale` must do, as `source` rows plus `_delete`:
    rows that are new or differ from the table (`_delete` false), and uids the table
    has that `source` lacks (`_delete` true, other columns null)."""
    from pyspark.sql import functions as F

    from kale_spark.versioning import row_hash

    content = [c for c in schema.KALE_SCHEMA.fieldNames() if c != "uid"]
    target = lake.read(schema.KALE)
    current = target.select("uid", row_hash(content).alias("_h"))
    upserts = (
        source.withColumn("_h", row_hash(content))
        .join(current, ["uid", "_h"], "left_anti")
        .drop("_h")
        .withColumn("_delete", F.lit(False))
    )
    deletes = target.select("uid").join(source.select("uid"), "uid", "left_anti")
    deletes = deletes.select(
        *[
            F.col("uid") if f.name == "uid" else F.lit(None).cast(f.dataType).alias(f.name)
            for f in schema.KALE_SCHEMA.fields
        ],
        F.lit(True).alias("_delete"),
    )
    return upserts.unionByName(deletes)


def _merge(lake: Lake, source: DataFrame, commit: dict[str, str]) -> dict[str, int]:
    """MERGE the changes `source` implies into `kale` by uid; the commit's row
    metrics. Nothing to change: no MERGE, no commit, zeros."""
    from delta.tables import DeltaTable
    from pyspark import StorageLevel

    todo = changes(lake, source).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        if todo.isEmpty():
            return {"inserted": 0, "updated": 0, "deleted": 0}
        columns = {c: f"s.`{c}`" for c in schema.KALE_SCHEMA.fieldNames()}
        target = DeltaTable.forPath(lake.spark, lake.path(schema.KALE))
        merge = (
            target.alias("t")
            .merge(todo.alias("s"), "t.uid = s.uid")
            .whenMatchedDelete(condition="s._delete")
            .whenMatchedUpdate(set=columns)
            .whenNotMatchedInsert(condition="NOT s._delete", values=columns)
        )
        with lake.commit_metadata(commit) as stamp:
            merge.execute()
    finally:
        todo.unpersist()
    written = lake.last_write(schema.KALE, stamp)
    return {
        "inserted": written.rows_inserted,
        "updated": written.rows_updated,
        "deleted": written.rows_deleted,
    }


def _optimize(lake: Lake, commit: dict[str, str]) -> None:
    from delta.tables import DeltaTable

    with lake.commit_metadata(commit):
        DeltaTable.forPath(lake.spark, lake.path(schema.KALE)).optimize().executeCompaction()


def run(spark: SparkSession, cfg: Config) -> StageRun:
    """Publish the kept captions as the next release of `kale`."""
    lake = Lake(spark, cfg.lake)
    with stage_run(lake, cfg, STAGE) as run:
        for table in (schema.FILTERED_CAPTIONS, schema.SAMPLES):
            if not lake.exists(table):
                raise LookupError(f"publish needs the {table} table; run the earlier stages")
        _ensure_kale(lake)
        lake.ensure_table(schema.RELEASES, schema.RELEASES_SCHEMA)
        sources = {
            t: lake.version(t)
            for t in (schema.FILTERED_CAPTIONS, schema.SAMPLES, schema.IMAGES)
            if lake.exists(t)
        }
        run.input_versions.update(sources)
        last_release, last_version = _last_release(lake)
        release = last_release + 1
        stamp = {**run.commit(), "release": str(release)}

        filtered = lake.read(schema.FILTERED_CAPTIONS, version=sources[schema.FILTERED_CAPTIONS])
        samples = lake.read(schema.SAMPLES, version=sources[schema.SAMPLES])
        source = gold_rows(filtered, samples)
        merged = _merge(lake, source, {**stamp, "step": "merge"})
        if any(merged.values()):
            before = lake.version(schema.KALE)
            _optimize(lake, {**stamp, "step": "optimize", "release_version": str(before + 1)})
        version = lake.version(schema.KALE)
        run.output_versions[schema.KALE] = version
        run.counts.update(
            merged_inserted=merged["inserted"],
            merged_updated=merged["updated"],
            merged_deleted=merged["deleted"],
        )

        if version == last_version:
            run.counts.update(rows=lake.read(schema.KALE, version=version).count(), release=0)
            run.notes.append(f"no changes: release {last_release} (kale v{version}) is current")
            return run

        rows = lake.read(schema.KALE, version=version).count()
        if last_version is None:
            change = {ADDED: rows, REMOVED: 0, CHANGED: 0}
        else:
            change = diff_counts(lake, schema.KALE, last_version, version)
        kept = filtered.where("NOT rejected").select("uid").distinct().count()
        info = ReleaseInfo(
            release=release,
            version=version,
            published_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
            config_hash=cfg.config_hash(),
            run_id=run.run_id,
            source_versions=sources,
        )
        path = export_release(lake, cfg, version, release=info) if cfg.publish.export else None
        release_row = (
            release,
            version,
            info.published_at,
            rows,
            change[ADDED],
            change[CHANGED],
            change[REMOVED],
            sources,
            info.config_hash,
            run.run_id,
            path,
        )
        written = lake.append(
            schema.RELEASES,
            spark.createDataFrame([release_row], schema=schema.RELEASES_SCHEMA),
            {**stamp, "step": "release"},
        )
        run.output_versions[schema.RELEASES] = written.version
        run.counts.update(
            rows=rows,
            release=release,
            added=change[ADDED],
            updated=change[CHANGED],
            removed=change[REMOVED],
            kept_uids_without_sample=kept - rows,
        )
        run.notes.append(
            f"release {release} = kale v{version}: {rows} rows (+{change[ADDED]} "
            f"~{change[CHANGED]} -{change[REMOVED]} since "
            f"{'nothing' if last_version is None else f'v{last_version}'})"
        )
        words = quality.word_stats_lines(
            caption_stats.word_stats(lake.read(schema.KALE, version=version))
        )
        run.notes += [f"kale v{version}, {words[0]}", *words[1:]]
        run.notes.append(f"export: {path or 'off (publish.export: false)'}")
        if path is None:
            run.notes.append(
                f"export later with: kale export --version {version} "
                f"(to {default_dir(lake, version)})"
            )
    return run
