"""Read images that img2dataset already downloaded (WebDataset output format).

img2dataset writes, per shard, ``<shard>.tar`` whose members are
``<key>.jpg`` (or .png/.webp), ``<key>.txt`` (the caption) and ``<key>.json``
(url, key, status, sha256, width, height, original_width, original_height, and
every ``save_additional_columns`` column, e.g. DataComp's ``uid``), plus a
``<shard>.parquet`` with the same metadata for every row, failed ones included.

This module indexes such shards by DataComp ``uid`` so that the fetch stage can
read an image straight out of a tar instead of downloading it again. The index
stores the byte offset of each image member, so reading one image is one seek
and one read, with no tar parsing on the executors. The uid of a member comes
from the shard's parquet (``uid`` column), else from its ``.json`` member,
else the img2dataset key itself is taken as the uid.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"})


class ShardEntry(NamedTuple):
    """Where one uid's image lies inside a shard; plain values, picklable, broadcastable."""

    uid: str
    tar_path: str
    key: str
    offset: int  # byte offset of the member's data in the tar file
    size: int  # member size in bytes
    sha256: str | None  # img2dataset's hash of the bytes it originally downloaded, if recorded
    original_width: int | None
    original_height: int | None
    url: str | None

    @classmethod
    def from_row(cls, row: Any) -> ShardEntry:
        """The entry of a row with ``SHARD_COLUMNS`` (a pandas itertuples row: NaN = null)."""
        values = [getattr(row, column(name)) for name in cls._fields]
        return cls(*(_plain(v, SPARK_TYPES[n]) for n, v in zip(cls._fields, values, strict=True)))


# ShardEntry as Spark columns, from its fields: their SQL types, and the columns that
# would clash with a `samples` column get a `wds_` prefix.
SPARK_TYPES = {
    "uid": "string",
    "tar_path": "string",
    "key": "string",
    "offset": "bigint",
    "size": "bigint",
    "sha256": "string",
    "original_width": "int",
    "original_height": "int",
    "url": "string",
}
_PREFIXED = ("sha256", "original_width", "original_height", "url")
assert tuple(SPARK_TYPES) == ShardEntry._fields


def column(field_name: str) -> str:
    """The Spark column of a ShardEntry field."""
    return f"wds_{field_name}" if field_name in _PREFIXED else field_name


# The DDL schema of a frame of shard entries (one row per ShardEntry, in field order).
SHARD_DDL = ", ".join(f"{column(n)} {SPARK_TYPES[n]}" for n in ShardEntry._fields)


def _plain(value: Any, kind: str) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return int(value) if kind in ("int", "bigint") else value


def _split_member(name: str) -> tuple[str, str]:
    """WebDataset convention: the key is the name up to the first dot of its basename."""
    directory, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    key = f"{directory}/{stem}" if directory else stem
    return key, ext.lower() if dot else ""


def _int_or_none(value: object) -> int | None:
    try:
        if value is None:
            return None
        out = int(value)  # type: ignore[call-overload]
        return out if out >= 0 else None
    except (TypeError, ValueError):
        return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _parquet_meta(parquet_path: str) -> dict[str, dict]:
    """key -> metadata row from img2dataset's per-shard parquet (empty if absent)."""
    if not os.path.exists(parquet_path):
        return {}
    import pyarrow.parquet as pq

    wanted = ("key", "uid", "sha256", "original_width", "original_height", "url", "status")
    schema_names = set(pq.read_schema(parquet_path).names)
    if "key" not in schema_names:
        logger.warning("%s has no 'key' column; ignoring it", parquet_path)
        return {}
    table = pq.read_table(parquet_path, columns=[c for c in wanted if c in schema_names])
    return {str(row["key"]): row for row in table.to_pylist() if row.get("key") is not None}


def iter_shard_entries(tar_path: str) -> Iterator[ShardEntry]:
    """Yield one :class:`ShardEntry` per image member of an img2dataset tar shard.

    Looks for the sibling ``<shard>.parquet``; when it lacks ``uid``, reads the
    ``<key>.json`` members; when those lack it too, the key is the uid.
    """
    tar_path = os.path.abspath(tar_path)
    meta = _parquet_meta(os.path.splitext(tar_path)[0] + ".parquet")
    images: dict[str, tarfile.TarInfo] = {}
    jsons: dict[str, dict] = {}
    need_json = not any("uid" in row for row in meta.values())
    with tarfile.open(tar_path, mode="r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, ext = _split_member(member.name)
            if ext in IMAGE_EXTENSIONS:
                images.setdefault(key, member)
            elif ext == "json" and (need_json or key not in meta):
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                try:
                    jsons[key] = json.loads(fh.read())
                except (ValueError, UnicodeDecodeError):
                    logger.warning("%s: unreadable %s", tar_path, member.name)
    for key, member in images.items():
        info = {
            **jsons.get(key, {}),
            **{k: v for k, v in meta.get(key, {}).items() if v is not None},
        }
        uid = _str_or_none(info.get("uid")) or key.rpartition("/")[2]
        yield ShardEntry(
            uid=uid,
            tar_path=tar_path,
            key=key,
            offset=member.offset_data,
            size=member.size,
            sha256=_str_or_none(info.get("sha256")),
            original_width=_int_or_none(info.get("original_width")),
            original_height=_int_or_none(info.get("original_height")),
            url=_str_or_none(info.get("url")),
        )


def find_shards(paths: str | Iterable[str]) -> list[str]:
    """Tar shards under the given files / directories, sorted."""
    if isinstance(paths, str):
        paths = [paths]
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for root, _dirs, files in os.walk(path):
                found.extend(os.path.join(root, f) for f in files if f.endswith(".tar"))
        elif path.endswith(".tar"):
            found.append(path)
        else:
            raise ValueError(f"not a .tar shard or a directory: {path}")
    return sorted(found)


def read_entry(entry: ShardEntry, max_bytes: int | None = None) -> bytes:
    """The image bytes of one indexed member (raises OSError if the shard changed).

    With ``max_bytes``, an entry larger than that raises ValueError before any read.
    """
    if max_bytes is not None and entry.size > max_bytes:
        raise ValueError(f"{entry.key}: {entry.size} bytes > max_bytes {max_bytes}")
    with open(entry.tar_path, "rb") as fh:
        fh.seek(entry.offset)
        data = fh.read(entry.size)
    if len(data) != entry.size:
        raise OSError(
            f"{entry.tar_path}: short read for {entry.key} ({len(data)} of {entry.size} bytes)"
        )
    return data
