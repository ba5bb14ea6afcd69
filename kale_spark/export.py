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
path (on Databricks, /dbfs/...).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kale_spark import caption_stats, card, schema
from kale_spark.config import Config
from kale_spark.lake import Lake

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

HIST_FILE = "caption_length_hist.png"
MIME_EXT = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


@dataclass(frozen=True)
class ReleaseInfo:
    """A `releases` row, as the export and its card need it."""

    release: int
    version: int
    published_at: dt.datetime
    config_hash: str
    run_id: str
    source_versions: dict[str, int] = field(default_factory=dict)


def export_columns() -> list[str]:
    return schema.KALE_SCHEMA.fieldNames()


def arrow_schema() -> pa.Schema:
    """The export's Arrow schema: KALE_SCHEMA in plain types."""
    import pyarrow as pa
    from pyspark.sql import types as T

    def convert(dtype) -> pa.DataType:
        if isinstance(dtype, T.StringType):
            return pa.string()
        if isinstance(dtype, T.IntegerType):
            return pa.int32()
        if isinstance(dtype, T.LongType):
            return pa.int64()
        if isinstance(dtype, T.DoubleType):
            return pa.float64()
        if isinstance(dtype, T.ArrayType):
            return pa.list_(convert(dtype.elementType))
        raise TypeError(f"no plain export type for {dtype}")

    return pa.schema([pa.field(f.name, convert(f.dataType)) for f in schema.KALE_SCHEMA.fields])


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


def _to_plain(table: pa.Table, target: pa.Schema) -> pa.Table:
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _range(df: DataFrame, lo: str | None, hi: str | None) -> DataFrame:
    from pyspark.sql import functions as F

    if lo is not None:
        df = df.where(F.col("uid") >= lo)
    if hi is not None:
        df = df.where(F.col("uid") < hi)
    return df


def _card_figures(df: DataFrame) -> dict:
    """Figures for the card, aggregated in Spark."""
    from pyspark.sql import functions as F

    agg = df.agg(
        F.count("*").alias("rows"),
        F.avg("word_count").alias("mean_words"),
        F.percentile(F.col("word_count"), F.lit(0.5)).alias("median_words"),
        F.avg("knowledge_retention").alias("mean_retention"),
        F.avg("novel_share").alias("mean_novel_share"),
        F.sum((F.size("removed_sentences") > 0).cast("long")).alias("rows_with_removals"),
        F.sum(F.size("removed_sentences")).alias("sentences_removed"),
    ).first()
    bucket = F.least(F.floor(F.col("word_count") / card.BIN_WORDS), F.lit(card.N_BINS - 1)).cast(
        "int"
    )
    hist = [0] * card.N_BINS
    by_stage: dict[str, int] = {}
    by_model: dict[str, int] = {}
    for r in df.groupBy(bucket.alias("b"), "stage", "model").count().collect():
        n = int(r["count"])
        hist[max(int(r["b"]), 0)] += n
        by_stage[r["stage"]] = by_stage.get(r["stage"], 0) + n
        by_model[r["model"]] = by_model.get(r["model"], 0) + n

    return {
        "rows": int(agg["rows"]),
        "mean_words": agg["mean_words"],
        "median_words": agg["median_words"],
        "mean_retention": agg["mean_retention"],
        "mean_novel_share": agg["mean_novel_share"],
        "rows_with_removals": int(agg["rows_with_removals"] or 0),
        "sentences_removed": int(agg["sentences_removed"] or 0),
        "histogram": hist,
        "rows_by_stage": by_stage,
        "rows_by_model": by_model,
        "word_stats": caption_stats.word_stats(df),
    }


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def _write_tar(rows: pa.Table, images: dict[str, tuple[bytes, str]], path: Path) -> int:
    """One WebDataset tar: <uid>.<ext>, <uid>.txt, <uid>.json per row with an image."""
    n = 0
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for row in rows.to_pylist():
            image = images.get(row["uid"])
            if image is None:
                continue
            data, mime = image
            ext = MIME_EXT.get(mime or "", "jpg")
            _tar_member(tar, f"{row['uid']}.{ext}", data)
            _tar_member(tar, f"{row['uid']}.txt", row["caption"].encode())
            meta = json.dumps(row, sort_keys=True, ensure_ascii=False, allow_nan=False)
            _tar_member(tar, f"{row['uid']}.json", meta.encode())
            n += 1
    return n


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
    tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    target = arrow_schema()
    rps = cfg.publish.rows_per_shard
    df = lake.read(schema.KALE, version=version).select(*export_columns())
    try:
        uids = df.select("uid").orderBy("uid").toArrow().column("uid").to_pylist()
        total = len(uids)
        n_shards = max(1, -(-total // rps))
        bounds = [uids[i * rps] if i * rps < total else None for i in range(n_shards)]
        del uids

        images = None
        if cfg.publish.webdataset:
            images = _images_frame(lake, release)

        shards: list[tuple[str, int]] = []
        files: list[dict] = []
        tars: list[tuple[str, int]] = []
        spr = cfg.publish.shards_per_read
        for g in range(0, n_shards, spr):
            lo = bounds[g]
            hi = bounds[g + spr] if g + spr < n_shards else None
            piece = _range(df, lo, hi).orderBy("uid").toArrow()
            piece = _to_plain(piece, target) if piece.num_rows else target.empty_table()
            image_map: dict[str, tuple[bytes, str]] = {}
            if images is not None:
                img_rows = _range(images, lo, hi).join(
                    _range(df.select("uid"), lo, hi), "uid", "left_semi"
                )
                for r in img_rows.collect():
                    image_map[r["uid"]] = (bytes(r["image"]), r["mime"])
            for i in range(g, min(g + spr, n_shards)):
                start = (i - g) * rps
                rows = piece.slice(start, rps)
                name = f"part-{i:05d}.parquet"
                _write_parquet(rows, tmp / name)
                shards.append((name, rows.num_rows))
                files.append({"file": name, "rows": rows.num_rows, "sha256": _sha256(tmp / name)})
                if images is not None:
                    tar_name = f"part-{i:05d}.tar"
                    n = _write_tar(rows, image_map, tmp / tar_name)
                    tars.append((tar_name, n))
                    files.append({"file": tar_name, "rows": n, "sha256": _sha256(tmp / tar_name)})
            log.info("export v%d: wrote shards %d..%d", version, g, min(g + spr, n_shards) - 1)
        assert sum(n for _, n in shards) == total, "shards do not add up to the table"

        figures = _card_figures(df)
        (tmp / HIST_FILE).write_bytes(card.draw_histogram(figures["histogram"]))
        info = card.CardInfo(
            table=schema.KALE,
            version=version,
            shards=shards,
            columns=[(f.name, str(f.type)) for f in target],
            histogram_file=HIST_FILE,
            release=release.release if release else None,
            published_at=release.published_at.strftime("%Y-%m-%d %H:%M:%S UTC")
            if release
            else None,
            config_hash=release.config_hash if release else None,
            run_id=release.run_id if release else None,
            source_versions=release.source_versions if release else {},
            webdataset_shards=tars,
            database=lake.database,
            **figures,
        )
        (tmp / "README.md").write_text(card.card_text(info))
        manifest = {
            "table": schema.KALE,
            "version": version,
            "release": info.release,
            "rows": total,
            "rows_per_shard": rps,
            "columns": [[c, t] for c, t in info.columns],
            "files": files,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "exported %s v%d: %d rows in %d shard(s) to %s",
        schema.KALE,
        version,
        total,
        len(shards),
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
