"""kale_spark.sources.webdataset: img2dataset shards indexed by uid and read by process_batch."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from kale_spark.fetch.options import FetchStageOptions
from kale_spark.fetch.rows import IMAGES_COLUMNS, process_batch
from kale_spark.fetch.status import Status
from kale_spark.sources.webdataset import (
    ShardEntry,
    find_shards,
    iter_shard_entries,
    read_entry,
)
from tests.support.img2dataset_shards import build_shard_index, write_img2dataset_shard


def _uid(i: int) -> str:
    return hashlib.md5(str(i).encode()).hexdigest()  # DataComp uids are 32 hex characters


@pytest.fixture
def shard_dir(tmp_path: Path, image_bytes) -> tuple[Path, list[dict]]:
    rows = []
    for i in range(5):
        image = image_bytes("JPEG", size=(64, 48), color=(40 * i, 10, 10)) if i != 3 else None
        rows.append(
            {
                "key": f"{i:09d}",
                "uid": _uid(i),
                "url": f"https://example.com/{i}.jpg",
                "caption": f"caption {i}",
                "image": image,
                "sha256": hashlib.sha256(b"original-%d" % i).hexdigest(),
            }
        )
    write_img2dataset_shard(tmp_path, "00000", rows[:3])
    write_img2dataset_shard(tmp_path, "00001", rows[3:])
    return tmp_path, rows


def test_index_maps_uids_to_members(shard_dir) -> None:
    directory, rows = shard_dir
    index = build_shard_index(str(directory))
    assert sorted(index) == sorted(r["uid"] for r in rows if r["image"] is not None)
    entry = index[_uid(4)]
    assert entry.key == "000000004"
    assert entry.tar_path == str(directory / "00001.tar")
    assert (entry.original_width, entry.original_height) == (640, 480)
    assert entry.sha256 == rows[4]["sha256"]
    assert entry.url == "https://example.com/4.jpg"
    for r in rows:
        if r["image"] is not None:
            assert read_entry(index[r["uid"]]) == r["image"]


def test_process_batch_reads_shards_without_fetching(shard_dir) -> None:
    directory, rows = shard_dir
    index = build_shard_index([str(directory)])
    pdf = pd.DataFrame(
        {
            "uid": [r["uid"] for r in rows] + ["f" * 32],
            # Loopback URLs would be blocked if they were fetched: the shard wins.
            "url": ["http://127.0.0.1:9/never"] * 6,
            "sha256": [rows[0]["sha256"], "0" * 64, None, None, None, None],
        }
    )
    out = process_batch(pdf, FetchStageOptions(), run_id="wds", shard_index=index)
    assert list(out.columns) == IMAGES_COLUMNS
    assert list(out["uid"]) == list(pdf["uid"])
    assert list(out["status"]) == [
        Status.OK,
        Status.OK,
        Status.OK,
        Status.NOT_FOUND_IN_SHARDS,
        Status.OK,
    ] + [Status.NOT_FOUND_IN_SHARDS]
    assert list(out["source"]) == ["webdataset"] * 6
    ok = out[out["status"] == Status.OK]
    assert list(ok["sha256"]) == [
        rows[i]["sha256"] for i in (0, 1, 2, 4)
    ]  # img2dataset's hash of the original
    assert list(ok["sha256_match"].astype(object)) == [True, False, pd.NA, pd.NA]
    assert list(ok["original_width"]) == [640] * 4
    assert list(ok["width"]) == [64] * 4
    assert list(ok["attempts"]) == [1] * 4
    assert out.loc[3, "error"] == "uid not in the img2dataset shards"
    assert out["http_status"].isna().all()


def test_uid_from_json_when_parquet_lacks_it(tmp_path: Path, image_bytes) -> None:
    rows = [
        {
            "key": "000000007",
            "uid": _uid(7),
            "url": "u",
            "caption": "c",
            "image": image_bytes("JPEG"),
        }
    ]
    tar = write_img2dataset_shard(tmp_path, "00000", rows, uid_in_parquet=False)
    assert [e.uid for e in iter_shard_entries(str(tar))] == [_uid(7)]
    tar.with_suffix(".parquet").unlink()
    assert [e.uid for e in iter_shard_entries(str(tar))] == [_uid(7)]


def test_key_is_uid_without_metadata(tmp_path: Path, image_bytes) -> None:
    rows = [
        {
            "key": "000000007",
            "uid": _uid(7),
            "url": "u",
            "caption": "c",
            "image": image_bytes("JPEG"),
        }
    ]
    tar = write_img2dataset_shard(tmp_path, "00000", rows, parquet=False, uid_in_json=False)
    assert [e.uid for e in iter_shard_entries(str(tar))] == ["000000007"]


def test_changed_shard_is_a_row_error(tmp_path: Path) -> None:
    (tmp_path / "x.tar").write_bytes(b"short")
    entry = ShardEntry(
        _uid(1), str(tmp_path / "x.tar"), "000000001", 512, 100, None, None, None, None
    )
    with pytest.raises(OSError, match="short read"):
        read_entry(entry)
    pdf = pd.DataFrame({"uid": [_uid(1)], "url": [None], "sha256": [None]})
    out = process_batch(pdf, FetchStageOptions(), run_id="r", shard_index={_uid(1): entry})
    assert out.loc[0, "status"] == Status.CONNECTION_ERROR
    assert out.loc[0, "error"].startswith("shard read failed: ")


def test_shard_entry_byte_cap(shard_dir) -> None:
    directory, rows = shard_dir
    index = build_shard_index([str(directory)])
    entry = index[rows[0]["uid"]]
    cap = entry.size - 1
    with pytest.raises(ValueError, match=f"bytes > max_bytes {cap}"):
        read_entry(entry, cap)
    pdf = pd.DataFrame({"uid": [rows[0]["uid"]], "url": [None]})
    out = process_batch(pdf, FetchStageOptions(max_bytes=cap), run_id="r", shard_index=index)
    assert (out.loc[0, "status"], out.loc[0, "error"]) == (
        Status.TOO_LARGE,
        f"shard entry of {entry.size} bytes > max_bytes {cap}",
    )
    assert out.loc[0, "image"] is None


def test_find_shards(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a/00001.tar", "00000.tar", "00000.parquet", "a/00001_stats.json"):
        (tmp_path / name).write_bytes(b"")
    assert find_shards(str(tmp_path)) == [
        str(tmp_path / "00000.tar"),
        str(tmp_path / "a" / "00001.tar"),
    ]
    with pytest.raises(ValueError, match="not a .tar shard"):
        find_shards(str(tmp_path / "00000.parquet"))
