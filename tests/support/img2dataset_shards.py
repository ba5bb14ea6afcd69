"""Test input: img2dataset output shards (<shard>.tar + <shard>.parquet), as a DataComp
download writes them. Used by tests/unit/test_webdataset.py and tests/spark/test_fetch.py."""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kale_spark.sources.webdataset import ShardEntry, find_shards, iter_shard_entries

log = logging.getLogger(__name__)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_img2dataset_shard(
    directory: Path,
    shard: str,
    rows: list[dict],
    *,
    parquet: bool = True,
    uid_in_parquet: bool = True,
    uid_in_json: bool = True,
) -> Path:
    """An img2dataset output shard: <shard>.tar with <key>.jpg/.txt/.json, and <shard>.parquet.

    Each row: key, uid, url, caption, image (bytes or None for a failed download).
    """
    tar_path = directory / f"{shard}.tar"
    meta = []
    with tarfile.open(tar_path, "w") as tar:
        for row in rows:
            ok = row["image"] is not None
            record = {
                "url": row["url"],
                "caption": row["caption"],
                "key": row["key"],
                "status": "success" if ok else "failed_to_download",
                "error_message": None if ok else "HTTP Error 404",
                "width": 64 if ok else None,
                "height": 48 if ok else None,
                "original_width": 640 if ok else None,
                "original_height": 480 if ok else None,
                "exif": None,
                "sha256": row.get("sha256") if ok else None,
            }
            if uid_in_json:
                record["uid"] = row["uid"]
            if ok:
                _add(tar, f"{row['key']}.jpg", row["image"])
                _add(tar, f"{row['key']}.txt", row["caption"].encode())
                _add(tar, f"{row['key']}.json", json.dumps(record).encode())
            meta.append(
                {**record, "uid": row["uid"]}
                if uid_in_parquet
                else {k: v for k, v in record.items() if k != "uid"}
            )
    if parquet:
        pq.write_table(pa.Table.from_pylist(meta), directory / f"{shard}.parquet")
    return tar_path


def build_shard_index(paths: str | Iterable[str]) -> dict[str, ShardEntry]:
    """uid -> :class:`ShardEntry` over every shard under ``paths``.

    A uid present in several shards keeps its first occurrence (in sorted
    shard order). For very large collections build the index per shard with
    :func:`iter_shard_entries` in parallel instead of on one machine.
    """
    index: dict[str, ShardEntry] = {}
    shards = find_shards(paths)
    duplicates = 0
    for shard in shards:
        for entry in iter_shard_entries(shard):
            if entry.uid in index:
                duplicates += 1
                continue
            index[entry.uid] = entry
    log.info(
        "indexed %d images from %d shards (%d duplicate uids skipped)",
        len(index),
        len(shards),
        duplicates,
    )
    return index
