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
       (kale_spark/release/export.py) and append a row to `releases` (release number, the
       kale version, time, row counts, config hash, run id, source versions).

Both commits carry `{"run_id", "stage": "publish", "release": n}` as Delta user
metadata (the OPTIMIZE commit adds the release's table version as
`release_version`), so `kale history kale` shows which commit made which release.
Rerunning publish on unchanged inputs commits nothing and records no release; a
crash between steps is repaired by the next run (step 3 keys on the table version).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from kale_spark import schema
from kale_spark.config import Config
from kale_spark.curation import quality
from kale_spark.lake.frames import local_frame
from kale_spark.lake.progress import Progress
from kale_spark.lake.runs import StageRun, stage_run
from kale_spark.lake.tables import Lake
from kale_spark.lake.versioning import ADDED, CHANGED, REMOVED, diff_counts
from kale_spark.release import stats as caption_stats
from kale_spark.release.browser import publish_browser
from kale_spark.release.export import ReleaseInfo, default_dir, export_release

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


STAGE = "publish"
# The column of `changes` that marks a uid to delete from `kale`.
DELETE_FLAG = "_delete"


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


def _ensure_tables(lake: Lake) -> None:
    """The gold table, with the change data feed on (kale diff reads it), and releases."""
    lake.ensure_table(schema.KALE, schema.KALE_SCHEMA, change_feed=True)
    lake.ensure_change_feed(schema.KALE)
    lake.ensure_table(schema.RELEASES, schema.RELEASES_SCHEMA)


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

    from kale_spark.lake.versioning import row_hash

    content = [c for c in schema.KALE_SCHEMA.fieldNames() if c != "uid"]
    target = lake.read(schema.KALE)
    current = target.select("uid", row_hash(content).alias("_h"))
    upserts = (
        source.withColumn("_h", row_hash(content))
        .join(current, ["uid", "_h"], "left_anti")
        .drop("_h")
        .withColumn(DELETE_FLAG, F.lit(False))
    )
    deletes = target.select("uid").join(source.select("uid"), "uid", "left_anti")
    deletes = deletes.select(
        *[
            F.col("uid") if f.name == "uid" else F.lit(None).cast(f.dataType).alias(f.name)
            for f in schema.KALE_SCHEMA.fields
        ],
        F.lit(True).alias(DELETE_FLAG),
    )
    return upserts.unionByName(deletes)


def _merge_gold(lake: Lake, source: DataFrame, commit: dict[str, str]) -> dict[str, int]:
    """MERGE the changes `source` implies into `kale` by uid, then OPTIMIZE it; the
    MERGE's row counts. Nothing to change: no MERGE, no OPTIMIZE, no commit, zeros."""
    from pyspark import StorageLevel

    todo = changes(lake, source).persist(StorageLevel.DISK_ONLY)  # grows with the table
    try:
        if todo.isEmpty():
            return {"inserted": 0, "updated": 0, "deleted": 0}
        written = lake.apply_changes(
            schema.KALE, todo, list(schema.KALE_KEY), {**commit, "step": "merge"}, DELETE_FLAG
        )
    finally:
        todo.unpersist()
    # The OPTIMIZE commit is the one after the MERGE: the release's table version.
    optimize = {**commit, "step": "optimize", "release_version": str(written.version + 1)}
    lake.optimize(schema.KALE, optimize)
    return {
        "inserted": written.rows_inserted,
        "updated": written.rows_updated,
        "deleted": written.rows_deleted,
    }


def _change_counts(lake: Lake, last_version: int | None, version: int, rows: int) -> dict:
    """Rows added, changed and removed since the last release (all added for the first)."""
    if last_version is None:
        return {ADDED: rows, REMOVED: 0, CHANGED: 0}
    return diff_counts(lake, schema.KALE, last_version, version)


def _record_release(
    lake: Lake, info: ReleaseInfo, rows: int, change: dict, path: str | None, commit: dict
) -> int:
    """Append the release's `releases` row; the releases table version."""
    row = (
        info.release,
        info.version,
        info.published_at,
        rows,
        change[ADDED],
        change[CHANGED],
        change[REMOVED],
        info.source_versions,
        info.config_hash,
        info.run_id,
        path,
    )
    df = local_frame(lake.spark, [row], schema.RELEASES_SCHEMA)
    return lake.append(schema.RELEASES, df, {**commit, "step": "release"}).version


def _source_versions(lake: Lake) -> dict[str, int]:
    """The versions of the input tables this run reads (images only for the tars)."""
    for table in (schema.FILTERED_CAPTIONS, schema.SAMPLES):
        if not lake.exists(table):
            raise LookupError(f"publish needs the {table} table; run the earlier stages")
    return {
        t: lake.version(t)
        for t in (schema.FILTERED_CAPTIONS, schema.SAMPLES, schema.IMAGES)
        if lake.exists(t)
    }


def run(spark: SparkSession, cfg: Config) -> StageRun:
    """Publish the kept captions as the next release of `kale`."""
    lake = Lake(spark, cfg.lake)
    with stage_run(lake, cfg, STAGE) as run:
        sources = _source_versions(lake)
        _ensure_tables(lake)
        run.input_versions.update(sources)
        last_release, last_version = _last_release(lake)
        release = last_release + 1
        commit = {**run.commit(), "release": str(release)}

        filtered = lake.read(schema.FILTERED_CAPTIONS, version=sources[schema.FILTERED_CAPTIONS])
        samples = lake.read(schema.SAMPLES, version=sources[schema.SAMPLES])
        # Steps, not rows, are what takes long here: the reporter shows each as it ends.
        progress = Progress(STAGE, interval_s=cfg.progress.interval_s)
        with progress:
            merged = _merge_gold(lake, gold_rows(filtered, samples), commit)
            run.counts.update({f"merged_{k}": v for k, v in merged.items()})
            progress.add({f"merged_{k}": v for k, v in merged.items()})
            published = _publish_release(lake, cfg, run, (release, last_release, last_version))
            progress.add(published)
        run.counts.update(progress.counts())
        run.metrics.update(progress.metrics())
    return run


def _publish_release(
    lake: Lake, cfg: Config, run: StageRun, releases: tuple[int, int, int | None]
) -> dict[str, int]:
    """Export and record the release the merge made (nothing if it changed nothing)."""
    release, last_release, last_version = releases
    sources = run.input_versions
    commit = {**run.commit(), "release": str(release)}
    filtered = lake.read(schema.FILTERED_CAPTIONS, version=sources[schema.FILTERED_CAPTIONS])
    version = lake.version(schema.KALE)
    run.output_versions[schema.KALE] = version
    rows = lake.read(schema.KALE, version=version).count()
    if version == last_version:
        run.counts.update(rows=rows, release=0)
        run.notes.append(f"no changes: release {last_release} (kale v{version}) is current")
        return {}

    info = ReleaseInfo(
        release=release,
        version=version,
        published_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
        config_hash=cfg.config_hash(),
        run_id=run.run_id,
        source_versions=sources,
    )
    path = export_release(lake, cfg, version, release=info) if cfg.publish.export else None
    # publish.browser, before the release is recorded: a failed browser leaves the release
    # unrecorded, and the next run redoes the export and the browser.
    browser = publish_browser(lake, cfg, info, path)
    change = _change_counts(lake, last_version, version, rows)
    run.output_versions[schema.RELEASES] = _record_release(lake, info, rows, change, path, commit)
    kept = filtered.where("NOT rejected").select("uid").distinct().count()
    run.counts.update(
        rows=rows,
        release=release,
        added=change[ADDED],
        updated=change[CHANGED],
        removed=change[REMOVED],
        kept_uids_without_sample=kept - rows,
    )
    run.notes += _release_notes(lake, info, rows, change, last_version, path)
    if browser is not None:
        run.notes.append(f"browser: {browser}/index.html")
    return {"exported_rows": rows if path else 0}


def _release_notes(
    lake: Lake,
    info: ReleaseInfo,
    rows: int,
    change: dict,
    last_version: int | None,
    path: str | None,
) -> list[str]:
    since = "nothing" if last_version is None else f"v{last_version}"
    words = quality.word_stats_lines(
        caption_stats.word_stats(lake.read(schema.KALE, version=info.version))
    )
    notes = [
        f"release {info.release} = kale v{info.version}: {rows} rows (+{change[ADDED]} "
        f"~{change[CHANGED]} -{change[REMOVED]} since {since})",
        f"kale v{info.version}, {words[0]}",
        *words[1:],
        f"export: {path or 'off (publish.export: false)'}",
    ]
    if path is None:
        notes.append(
            f"export later with: kale export --version {info.version} "
            f"(to {default_dir(lake, info.version)})"
        )
    return notes
