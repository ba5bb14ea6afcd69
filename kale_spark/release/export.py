"""Export one version of the gold `kale` table: Parquet shards, a dataset card, tars.

    path = export_release(lake, cfg, version)    # <lake.root>/exports/kale/v<version>/

The export is a pure function of the table version (Delta time travel) and the
release's row in `releases`: rows in uid order, `publish.rows_per_shard` rows per
shard (the last one holds the rest), plain Arrow types (string, int32, float64,
list<string>), written by pyarrow with fixed options. Exporting the same version again
gives the same bytes, so an old release can be reproduced exactly at any time
(`kale export --version V`).

Files:
    part-00000.parquet ...   the rows; `datasets.load_dataset("parquet", data_files=...)`
    README.md                dataset card (Hugging Face front matter, figures, columns)
    caption_length_hist.png  caption-length histogram
    manifest.json            version, release, files with row counts and sha256
    part-00000.tar ...       WebDataset (with publish.webdataset: true)

The driver holds the sorted uid column (to cut shards at exact row counts) and at most
`publish.shards_per_read` shards of rows at a time. Exports go to a local or mounted
path (on Databricks, /dbfs/...). The card's figures come from kale_spark/release/charts.py and
its text from kale_spark/release/card.py; the tars from kale_spark/release/webdataset.py.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kale_spark import schema
from kale_spark.config import Config
from kale_spark.hashing import sha256_file
from kale_spark.lake.files import atomic_dir
from kale_spark.lake.tables import Lake
from kale_spark.release import card
from kale_spark.release.charts import card_figures
from kale_spark.release.webdataset import write_tar

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

HIST_FILE = "caption_length_hist.png"


@dataclass(frozen=True)
class ReleaseInfo:
    """A `releases` row, as the export and its card need it."""

    release: int
    version: int
    published_at: dt.datetime
    config_hash: str
    run_id: str
    source_versions: dict[str, int] = field(default_factory=dict)


@dataclass
class _Written:
    """What the shard loop wrote: (name, rows) of shards and tars, manifest entries."""

    shards: list[tuple[str, int]] = field(default_factory=list)
    tars: list[tuple[str, int]] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)

    def add(self, folder: Path, name: str, rows: int, tar: bool = False) -> None:
        (self.tars if tar else self.shards).append((name, rows))
        self.files.append({"file": name, "rows": rows, "sha256": sha256_file(folder / name)})


def export_columns() -> list[str]:
    return schema.KALE_SCHEMA.fieldNames()


def default_dir(lake: Lake, version: int) -> str:
    return f"{lake.root.rstrip('/')}/exports/{schema.KALE}/v{version}"


def release_info(lake: Lake, version: int) -> ReleaseInfo | None:
    """The `releases` row of kale version `version`, if it is a recorded release."""
    from pyspark.sql import functions as F

    if not lake.exists(schema.RELEASES):
        return None
    row = lake.read(schema.RELEASES).where(F.col("version") == version).first()
    if row is None:
        return None
    return ReleaseInfo(
        release=int(row["release"]),
        version=int(row["version"]),
        published_at=row["published_at"],
        config_hash=row["config_hash"],
        run_id=row["run_id"],
        source_versions=dict(row["source_versions"] or {}),
    )


def _local(path: str) -> Path:
    if path.startswith("file:"):
        path = path.removeprefix("file:").replace("///", "/", 1)
    if "://" in path or path.startswith("dbfs:"):
        raise ValueError(f"exports need a local or mounted path (e.g. /dbfs/...), got {path!r}")
    return Path(path)


def _to_export_types(table: pa.Table, target: pa.Schema) -> pa.Table:
    """`table` (from Spark) with exactly the export schema: names, order, types, no
    Spark field metadata, one chunk per column."""
    import pyarrow as pa

    columns = [table.column(f.name).cast(f.type) for f in target]
    return pa.Table.from_arrays(columns, schema=target).combine_chunks()


def _write_parquet(table: pa.Table, path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(
        table,
        path,
        compression="zstd",
        compression_level=3,
        row_group_size=max(len(table), 1),
        use_dictionary=True,
        write_statistics=True,
        store_schema=False,
    )


def _range(df: DataFrame, lo: str | None, hi: str | None) -> DataFrame:
    from pyspark.sql import functions as F

    if lo is not None:
        df = df.where(F.col("uid") >= lo)
    if hi is not None:
        df = df.where(F.col("uid") < hi)
    return df


def _shard_bounds(df: DataFrame, rows_per_shard: int) -> tuple[int, list[str | None]]:
    """(rows, the first uid of each shard): shards cut at exact row counts in uid order.

    The driver gets one uid per shard, never the table's uids: the uids are range-
    partitioned (sorted within), each partition's size collected, and each shard's
    first uid picked inside its partition from the running offsets."""
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    parts = max(1, df.sparkSession.sparkContext.defaultParallelism)
    ranged = (
        df.select("uid")
        .repartitionByRange(parts, "uid")
        .withColumn("_p", F.spark_partition_id())
        .persist(StorageLevel.DISK_ONLY)
    )
    try:
        sizes = dict(ranged.groupBy("_p").count().collect())
        # Range partitions are in uid order: partition p starts at the rows before it.
        offsets, running = {}, 0
        for p in sorted(sizes):
            offsets[p] = running
            running += sizes[p]
        start = F.create_map(*[x for p, o in offsets.items() for x in (F.lit(p), F.lit(o))])
        index = (
            start[F.col("_p")] + F.row_number().over(Window.partitionBy("_p").orderBy("uid")) - 1
        )
        firsts = (
            ranged.withColumn("_i", index)
            .where(F.col("_i") % rows_per_shard == 0)
            .select("_i", "uid")
            .collect()
        )
    finally:
        ranged.unpersist()
    uids = [r["uid"] for r in sorted(firsts)]
    return running, uids or [None]


def _image_map(images: DataFrame, df: DataFrame, lo: str | None, hi: str | None) -> dict:
    """uid -> (image bytes, mime) of the rows of `df` in [lo, hi) that have an image."""
    rows = _range(images, lo, hi).join(_range(df.select("uid"), lo, hi), "uid", "left_semi")
    return {r["uid"]: (bytes(r["image"]), r["mime"]) for r in rows.collect()}


def _write_shards(
    df: DataFrame, images: DataFrame | None, cfg: Config, folder: Path, version: int
) -> tuple[int, _Written]:
    """Parquet shards (and tars, with `images`) of `df` in uid order into `folder`,
    reading `publish.shards_per_read` shards of rows at a time; (rows, what was written)."""
    target = schema.arrow_schema(schema.KALE_SCHEMA)
    rps, spr = cfg.publish.rows_per_shard, cfg.publish.shards_per_read
    total, bounds = _shard_bounds(df, rps)
    n_shards = len(bounds)
    written = _Written()
    for g in range(0, n_shards, spr):
        lo = bounds[g]
        hi = bounds[g + spr] if g + spr < n_shards else None
        piece = _range(df, lo, hi).orderBy("uid").toArrow()
        piece = _to_export_types(piece, target) if piece.num_rows else target.empty_table()
        image_map = _image_map(images, df, lo, hi) if images is not None else {}
        for i in range(g, min(g + spr, n_shards)):
            rows = piece.slice((i - g) * rps, rps)
            _write_parquet(rows, folder / f"part-{i:05d}.parquet")
            written.add(folder, f"part-{i:05d}.parquet", rows.num_rows)
            if images is not None:
                n = write_tar(rows, image_map, folder / f"part-{i:05d}.tar")
                written.add(folder, f"part-{i:05d}.tar", n, tar=True)
        log.info("export v%d: wrote shards %d..%d", version, g, min(g + spr, n_shards) - 1)
    if sum(n for _, n in written.shards) != total:
        raise RuntimeError(f"export v{version}: shards do not add up to the table's {total} rows")
    return total, written


def _card_info(
    lake: Lake, df: DataFrame, version: int, written: _Written, release: ReleaseInfo | None
) -> card.CardInfo:
    target = schema.arrow_schema(schema.KALE_SCHEMA)
    published = release.published_at.strftime("%Y-%m-%d %H:%M:%S UTC") if release else None
    return card.CardInfo(
        table=schema.KALE,
        version=version,
        shards=written.shards,
        columns=[(f.name, str(f.type)) for f in target],
        histogram_file=HIST_FILE,
        release=release.release if release else None,
        published_at=published,
        config_hash=release.config_hash if release else None,
        run_id=release.run_id if release else None,
        source_versions=release.source_versions if release else {},
        webdataset_shards=written.tars,
        database=lake.database,
        **card_figures(df),
    )


def _write_card_and_manifest(folder: Path, info: card.CardInfo, written: _Written, rps: int):
    (folder / HIST_FILE).write_bytes(card.draw_histogram(info.histogram))
    (folder / "README.md").write_text(card.card_text(info))
    manifest = {
        "table": info.table,
        "version": info.version,
        "release": info.release,
        "rows": info.rows,
        "rows_per_shard": rps,
        "columns": [[c, t] for c, t in info.columns],
        "files": written.files,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def export_release(
    lake: Lake,
    cfg: Config,
    version: int,
    out: str | None = None,
    release: ReleaseInfo | None = None,
) -> str:
    """Write the export of `kale` version `version` to `out` (default
    `<lake.root>/exports/kale/v<version>`), replacing what is there; returns the path."""
    latest = lake.version(schema.KALE)
    if latest is None:
        raise LookupError(f"no {schema.KALE} table under {lake.root}; run publish first")
    if not 0 <= version <= latest:
        raise ValueError(f"{schema.KALE} has versions 0..{latest}, asked for {version}")
    release = release or release_info(lake, version)
    final = _local(out or default_dir(lake, version))
    with atomic_dir(final) as tmp:
        df = lake.read(schema.KALE, version=version).select(*export_columns())
        images = _images_frame(lake, release) if cfg.publish.webdataset else None
        total, written = _write_shards(df, images, cfg, tmp, version)
        info = _card_info(lake, df, version, written, release)
        _write_card_and_manifest(tmp, info, written, cfg.publish.rows_per_shard)
    log.info(
        "exported %s v%d: %d rows in %d shard(s) to %s",
        schema.KALE,
        version,
        total,
        len(written.shards),
        final,
    )
    return str(final)


def _images_frame(lake: Lake, release: ReleaseInfo | None) -> DataFrame | None:
    """`images` rows with a usable image, at the version the release recorded."""
    from pyspark.sql import functions as F

    if not lake.exists(schema.IMAGES):
        log.warning("publish.webdataset is on but there is no images table; no tars written")
        return None
    version = release.source_versions.get(schema.IMAGES) if release else None
    images = lake.read(schema.IMAGES, version=version)
    return images.where((F.col("status") == schema.IMAGE_OK) & F.col("image").isNotNull()).select(
        "uid", "image", "mime"
    )
