"""Reading DataComp metadata parquet as raw text columns, whatever its types.

DataComp ships metadata as `metadata/*.parquet` (uid, url, text, original_width, ...);
its download script adds `shards/*.tar` with img2dataset's own `shards/*.parquet`.
Real folders mix files written by different tools, so one file may carry a column as
text that another carries as int; a truncated or empty file is quarantined by name;
invalid UTF-8 is replaced (U+FFFD), as Arrow refuses it in the Python workers. Files
are grouped by their parquet schema (read from the footers, cheap) and each group is
read by Spark and cast to text, so a bad value becomes a quarantined row with a reason
instead of a failed job.
"""

from __future__ import annotations

import glob
import logging
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from kale_spark.schema import DATACOMP_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

# img2dataset names the alt-text `caption`; DataComp names it `text`.
COLUMN_ALIASES = {"caption": "text"}


class InputError(ValueError):
    """The ingest input cannot be read at all (no files, not parquet, no uid column)."""


def _is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def resolve_inputs(path: str) -> list[str]:
    """Parquet files named by a file, a folder (recursively) or a glob.

    A DataComp download folder (with `metadata/`) reads only `metadata/`; parquet files
    that sit beside same-named `.tar` shards are img2dataset's fetch logs, not metadata.
    Remote URIs are returned as they are (Spark lists them).
    """
    if _is_uri(path):
        return [path]
    path = path.removeprefix("file://")
    if any(ch in path for ch in "*?["):
        files = sorted(glob.glob(path, recursive=True))
    else:
        p = Path(path)
        if p.is_file():
            files = [str(p)]
        elif p.is_dir():
            root = p / "metadata" if (p / "metadata").is_dir() else p
            files = sorted(str(f) for f in root.rglob("*.parquet"))
        else:
            raise InputError(f"input not found: {path}")
    files = [
        f for f in files if f.endswith(".parquet") and not Path(f).with_suffix(".tar").exists()
    ]
    if not files:
        raise InputError(f"no parquet files under {path}")
    return [str(Path(f).resolve()) for f in files]


def _group_by_schema(files: list[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(files by parquet schema, unreadable file -> why): a truncated or empty file
    must cost that file, not the whole input."""
    import pyarrow.parquet as pq

    groups: dict[str, list[str]] = defaultdict(list)
    unreadable: dict[str, str] = {}
    for f in files:
        if _is_uri(f):
            groups["remote"].append(f)
            continue
        try:
            schema = pq.read_schema(f)
        except Exception as exc:  # not parquet, truncated, empty: quarantined by name
            unreadable[f] = f"not a readable parquet file: {exc}"
            continue
        groups[str(schema)].append(f)
    return groups, unreadable


def read_raw(spark: SparkSession, path: str) -> tuple[DataFrame, dict[str, str]]:
    """All input rows as text columns + `source_file`, `source_row` (row index in file),
    and the input files that could not be read (file -> why). No readable file at all is
    an InputError."""
    from functools import reduce

    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, MapType, StructType

    groups, unreadable = _group_by_schema(resolve_inputs(path))
    if not groups:
        f, why = next(iter(unreadable.items()))
        raise InputError(f"{f} is {why}")
    for f, why in unreadable.items():
        log.warning("input file %s skipped (quarantined): %s", f, why)
    frames = []
    for group, files in groups.items():
        df = spark.read.parquet(*files)
        present = {COLUMN_ALIASES.get(c, c): c for c in df.columns}
        if "uid" not in present:
            raise InputError(f"no uid column in {files[0]} (columns: {', '.join(df.columns)})")
        cols = []
        for name in DATACOMP_COLUMNS:
            if name not in present:
                cols.append(F.lit(None).cast("string").alias(name))
                continue
            col = F.col(f"`{present[name]}`")
            dtype = df.schema[present[name]].dataType
            if isinstance(dtype, (ArrayType, MapType, StructType)):
                col = F.to_json(col)
            # Invalid UTF-8 (replaced by U+FFFD) would crash Arrow in every Python worker.
            cols.append(F.make_valid_utf8(col.cast("string")).alias(name))
        cols.append(F.col("_metadata.file_path").alias("source_file"))
        cols.append(F.col("_metadata.row_index").alias("source_row"))
        frames.append(df.select(*cols))
        log.info("input group of %d file(s): %s", len(files), group.replace("\n", "; ")[:200])
    return reduce(lambda a, b: a.unionByName(b), frames), unreadable
