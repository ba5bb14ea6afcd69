"""The DataComp-format sample generator (pyarrow + Pillow, no Spark)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pyarrow.parquet as pq
from PIL import Image

from kale_spark.sources.sample import INGEST_DEFECTS, generate_sample

DATACOMP = [
    "uid",
    "url",
    "text",
    "original_width",
    "original_height",
    "sha256",
    "clip_b32_similarity_score",
    "clip_l14_similarity_score",
    "face_bboxes",
]


def test_clean_sample_is_datacomp_format(tmp_path: Path) -> None:
    result = generate_sample(tmp_path / "s", 12, seed=3, max_side=600)
    table = pq.read_table(result.metadata_dir / "part-00000.parquet")
    assert table.column_names == DATACOMP
    assert table.num_rows == 12
    assert result.defects == {}
    rows = table.to_pylist()
    assert len({r["uid"] for r in rows}) == 12
    formats = set()
    for r in rows:
        assert re.fullmatch(r"[0-9a-f]{32}", r["uid"])
        path = Path(url2pathname(urlsplit(r["url"]).path))
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["sha256"]
        with Image.open(path) as im:
            assert im.size == (r["original_width"], r["original_height"])
            formats.add(im.format)
        assert r["text"].strip()
    assert formats <= {"JPEG", "PNG", "WEBP"} and "JPEG" in formats


def test_same_seed_same_sample(tmp_path: Path) -> None:
    a = generate_sample(tmp_path / "a", 8, seed=5, max_side=300)
    b = generate_sample(tmp_path / "b", 8, seed=5, max_side=300)
    ta = pq.read_table(a.metadata_dir / "part-00000.parquet").to_pylist()
    tb = pq.read_table(b.metadata_dir / "part-00000.parquet").to_pylist()
    assert [r["uid"] for r in ta] == [r["uid"] for r in tb]
    assert [r["text"] for r in ta] == [r["text"] for r in tb]


def test_bad_fraction_writes_labelled_defects(tmp_path: Path) -> None:
    result = generate_sample(tmp_path / "s", 100, bad_fraction=0.2, seed=1, max_side=400)
    manifest = json.loads((result.out / "manifest.json").read_text())
    assert len(result.defects) == 20
    assert manifest["ingest_defects"] + manifest["fetch_defects"] == 20
    assert set(INGEST_DEFECTS) <= set(result.defects.values())
    typed = pq.read_table(result.metadata_dir / "part-types.parquet")
    assert str(typed.schema.field("original_width").type) == "string"
    good = pq.read_table(result.metadata_dir / "part-00000.parquet").num_rows
    assert good + typed.num_rows == 100


def test_base_url_makes_http_urls(tmp_path: Path) -> None:
    result = generate_sample(tmp_path / "s", 3, base_url="http://127.0.0.1:8000/", max_side=200)
    rows = pq.read_table(result.metadata_dir / "part-00000.parquet").to_pylist()
    for r in rows:
        assert r["url"].startswith("http://127.0.0.1:8000/images/")
