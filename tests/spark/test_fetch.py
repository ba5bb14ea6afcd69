"""The fetch stage on real Spark + Delta, against files and a real local HTTP server."""

from __future__ import annotations

from pathlib import Path

import pytest

from kale_spark import schema
from kale_spark.config import load_config
from kale_spark.fetch.status import is_retryable, retryable_condition
from kale_spark.lake.checksum import checksum_path, plain_parquet_files
from kale_spark.lake.tables import Lake
from kale_spark.sources.sample import FETCH_DEFECTS, generate_sample
from kale_spark.stages import fetch, ingest
from tests.support.img2dataset_shards import write_img2dataset_shard


def _lake_with_samples(spark, root: Path, rows: int, base_url: str | None = None, **kw):
    sample = generate_sample(
        root / "sample", rows, seed=kw.pop("seed", 3), max_side=400, base_url=base_url, **kw
    )
    return sample


def _config(root: Path, *overrides: str):
    return load_config(
        None,
        [
            f"lake.root={root / 'lake'}",
            f"ingest.input={root / 'sample' / 'metadata'}",
            "fetch.rows_per_task=8",
            "fetch.image.resolution=64",
            f"fetch.file_root={root / 'sample'}",
            *overrides,
        ],
    )


def test_file_sample_every_uid_has_one_images_row(spark, tmp_path: Path) -> None:
    sample = _lake_with_samples(spark, tmp_path, 24, bad_fraction=0.25)
    cfg = _config(tmp_path)
    ingest.run(spark, cfg)
    first = fetch.run(spark, cfg)
    lake = Lake(spark, cfg.lake)
    samples = {r["uid"] for r in lake.read(schema.SAMPLES).select("uid").collect()}
    images = lake.read(schema.IMAGES).collect()
    assert sorted(r["uid"] for r in images) == sorted(samples)
    by_uid = {r["uid"]: r for r in images}
    expected = {
        "missing_file": "http_error",
        "not_an_image": "not_an_image",
        "truncated_image": "decode_error",
    }
    checked = set()
    for uid, defect in sample.defects.items():
        if defect in expected:
            assert by_uid[uid]["status"] == expected[defect], (uid, defect)
            assert by_uid[uid]["error"]
            checked.add(defect)
    assert checked == set(FETCH_DEFECTS) == set(expected)  # the sample holds every fetch defect
    ok = [r for r in images if r["status"] == "ok"]
    assert ok and all(max(r["width"], r["height"]) == 64 for r in ok)
    assert all(r["image"][:2] == b"\xff\xd8" for r in ok)  # re-encoded JPEG
    assert all(r["sha256_match"] is True for r in ok)
    assert first.counts["fetched"] == len(samples)
    assert sum(v for k, v in first.counts.items() if k.startswith("status.")) == len(samples)

    # Both runs planned from the tables' version checksums (Lake.read_latest), not
    # through Delta's log replay: what ingest and fetch write is a plain table.
    for table in (schema.SAMPLES, schema.IMAGES):
        crc = lake.read_text(checksum_path(lake.path(table), lake.version(table)))
        assert plain_parquet_files(crc, lake.path(table)).paths
    again = fetch.run(spark, cfg)
    assert again.counts["candidates"] == 0
    assert lake.count(schema.IMAGES) == len(samples)
    assert first.input_versions[schema.SAMPLES] == lake.version(schema.SAMPLES)
    assert again.input_versions[schema.IMAGES] == first.output_versions[schema.IMAGES]


def test_a_file_root_that_blocks_every_row_says_which_key_to_set(
    spark, tmp_path: Path, caplog
) -> None:
    """The newcomer's trap: a sample outside fetch.file_root ends all `blocked`, and the
    run says so in one line naming the key (not only in the `images` table)."""
    import logging

    _lake_with_samples(spark, tmp_path, 6, bad_fraction=0.0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cfg = _config(tmp_path, f"fetch.file_root={elsewhere}")
    ingest.run(spark, cfg)
    with caplog.at_level(logging.WARNING, logger="kale_spark.stages.fetch"):
        run = fetch.run(spark, cfg)
    assert run.counts["status.blocked"] == 6
    lines = [r.getMessage() for r in caplog.records if "fetch.file_root" in r.getMessage()]
    assert len(lines) == 1
    assert "--set fetch.file_root=" in lines[0]
    assert lines[0] in run.notes


def test_default_config_blocks_loopback_and_sends_nothing(spark, tmp_path, http_server) -> None:
    _lake_with_samples(spark, tmp_path, 6, base_url=http_server.url("/blocked"))
    before = len(http_server.log)
    cfg = _config(tmp_path)
    ingest.run(spark, cfg)
    run = fetch.run(spark, cfg)
    statuses = {r["status"] for r in Lake(spark, cfg.lake).read(schema.IMAGES).collect()}
    assert statuses == {"blocked"}
    assert run.counts["status.blocked"] == 6
    assert len(http_server.log) == before  # not one request reached the server


def test_http_fetch_with_allow_list_and_retry_on_rerun(
    spark, tmp_path, http_server, route_cls
) -> None:
    sample = _lake_with_samples(spark, tmp_path, 6, base_url=http_server.url(f"/{tmp_path.name}"))
    files = sorted((sample.out / "images").iterdir())
    flaky_name = files[0].name
    for f in files:
        route = route_cls(body=f.read_bytes(), content_type="application/octet-stream")
        if f.name == flaky_name:
            # 503 for more requests than one run's retries allow: the row ends the first
            # run as a retryable http_error and succeeds on the rerun.
            route = route_cls(body=f.read_bytes(), fail_first=3)
        http_server.add(f"/{tmp_path.name}/images/{f.name}", route)
    cfg = _config(
        tmp_path,
        "fetch.allow_networks=[127.0.0.0/8]",
        "fetch.retries=1",
        "fetch.backoff_s=0.01",
    )
    ingest.run(spark, cfg)
    first = fetch.run(spark, cfg)
    lake = Lake(spark, cfg.lake)
    rows = {r["uid"]: r for r in lake.read(schema.IMAGES).collect()}
    flaky_uid = flaky_name.split(".")[0]
    assert first.counts["status.ok"] == 5
    assert rows[flaky_uid]["status"] == "http_error"
    assert rows[flaky_uid]["http_status"] == 500
    assert rows[flaky_uid]["attempts"] == 2

    second = fetch.run(spark, cfg)
    assert second.counts["candidates"] == 1
    assert second.counts["retried"] == 1
    row = lake.read(schema.IMAGES).where(f"uid = '{flaky_uid}'").collect()
    assert len(row) == 1
    assert row[0]["status"] == "ok"
    assert row[0]["attempts"] == 4  # 2 in the first run + 500 then 200 in the second
    assert lake.count(schema.IMAGES) == 6


def test_rerun_policy_is_the_in_run_policy(spark) -> None:
    """The Spark condition that picks rows for a rerun says what images.is_retryable says."""
    from kale_spark.fetch.status import Status

    grid = [(s, None) for s in sorted(Status.ALL)] + [
        ("http_error", code) for code in (400, 403, 404, 408, 429, 499, 500, 503, 599, 600)
    ]
    frame = spark.createDataFrame(grid, "status string, http_status int")
    got = {
        (r["status"], r["http_status"]): r["retry"]
        for r in frame.select("*", retryable_condition().alias("retry")).collect()
    }
    assert got == {(s, c): is_retryable(s, c) for s, c in grid}
    assert got[("http_error", 429)] and got[("timeout", None)] and not got[("http_error", 404)]


def test_fetch_before_ingest_is_a_clear_error(spark, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    with pytest.raises(LookupError, match="run `kale ingest` first"):
        fetch.run(spark, cfg)


def test_datacomp_download_layout_reads_images_from_shards(spark, tmp_path: Path) -> None:
    """A DataComp download folder: metadata/*.parquet plus img2dataset shards/*.tar with
    their own *.parquet logs. Ingest reads only metadata/; fetch reads images from the tars
    (the file:// URLs point nowhere, so any network/file fetch would fail)."""
    import pyarrow.parquet as pq

    sample = generate_sample(tmp_path / "dl", 8, seed=21, max_side=200)
    table = pq.read_table(sample.metadata_dir / "part-00000.parquet").to_pylist()
    shards = tmp_path / "dl" / "shards"
    shards.mkdir()
    rows = []
    for i, r in enumerate(table[:6]):  # the last two uids are not in any shard
        path = Path(r["url"].removeprefix("file://"))
        rows.append(
            {
                "key": f"{i:09d}",
                "uid": r["uid"],
                "url": r["url"],
                "caption": r["text"],
                "image": path.read_bytes(),
                "sha256": r["sha256"],
            }
        )
    write_img2dataset_shard(shards, "00000", rows[:3])
    write_img2dataset_shard(shards, "00001", rows[3:])
    for f in (tmp_path / "dl" / "images").iterdir():
        f.unlink()  # prove nothing is read through the URLs

    cfg = load_config(
        None,
        [
            f"lake.root={tmp_path / 'lake'}",
            "fetch.image.resolution=64",
            f"fetch.webdataset=[{shards}]",
        ],
    )
    ing = ingest.run(spark, cfg, str(tmp_path / "dl"))
    assert ing.counts["input"] == 8  # shards/*.parquet were not read as metadata
    run = fetch.run(spark, cfg)
    rows_out = {r["uid"]: r for r in Lake(spark, cfg.lake).read(schema.IMAGES).collect()}
    assert len(rows_out) == 8
    in_shards = {r["uid"] for r in rows}
    for uid, r in rows_out.items():
        if uid in in_shards:
            assert (r["status"], r["source"]) == ("ok", "webdataset"), r["error"]
        else:
            assert r["status"] == "not_found_in_shards"
    assert run.counts["status.ok"] == 6


def test_registered_domain_column_is_the_python_rule(spark) -> None:
    """The Spark form (partitioning) and the Python form (the task's gates) agree."""
    from kale_spark.fetch.hosts import host_of, registered_domain_column, with_registered_domain

    urls = [
        "http://images.example.com/a.jpg",
        "https://A.B.Example.COM./x",
        "HTTP://WWW.EXAMPLE.ORG/UPPER.JPG",
        "http://cdn.shop.example.co.uk:8080/p?q=1",
        "http://someone.github.io/i.png",
        "http://127.0.0.1:9/x",
        "http://[::1]:80/x",
        "http://localhost/x",
        "file:///data/a.jpg",
        "not a url",
        "https://co.uk/",
    ]
    frame = spark.createDataFrame([(i, u) for i, u in enumerate(urls)], "i int, url string")
    want = [host_of(u) for u in urls]
    assert [r[0] for r in frame.select(registered_domain_column("url")).collect()] == want
    # The plan's form: the host in one projection, the rule over it in the next.
    two = with_registered_domain(frame, "url", "_host", ["i", "url"]).orderBy("i")
    assert two.columns == ["i", "url", "_host"]
    assert [r["_host"] for r in two.collect()] == want


def test_big_hosts_are_a_local_relation(spark) -> None:
    """The salted hosts reach the plan as a local relation: no Spark job (with Python
    workers) runs to build them, before the fetch job can start."""
    frame = fetch.big_hosts_frame(spark, ("cdn.example.com", "img.example.org"))
    logical = frame._jdf.queryExecution().analyzed()
    assert logical.getClass().getSimpleName() == "LocalRelation"
    assert sorted(tuple(r) for r in frame.collect()) == [
        ("cdn.example.com", True),
        ("img.example.org", True),
    ]
    assert fetch.big_hosts_frame(spark, ()).count() == 0


def _write_metadata(folder: Path, urls: list[str]) -> None:
    """A DataComp metadata parquet of these URLs (no hashes: any image is right)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    n = len(urls)
    table = pa.table(
        {
            "uid": [f"{i:032x}" for i in range(n)],
            "url": urls,
            "text": [f"picture {i}" for i in range(n)],
            "original_width": [8] * n,
            "original_height": [8] * n,
            "sha256": pa.array([None] * n, pa.string()),
        }
    )
    pq.write_table(table, folder / "part-00000.parquet")


def _documented_query(name: str) -> str:
    """The SQL under the `<!-- query: name -->` marker of docs/fetch.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "fetch.md").read_text()
    block = text.split(f"<!-- query: {name} -->", 1)[1].split("```sql", 1)[1]
    return block.split("```", 1)[0].strip()


def test_per_host_bound_across_tasks_and_the_host_figures(
    spark, tmp_path, http_server, route_cls, image_bytes
) -> None:
    """2000 URLs on one host, salted into 2 buckets, over 2 cores: never more than
    per_host_concurrency x host_salt connections to it at once, and a small host stays
    in one task (at most per_host_concurrency). The `runs` row then names the hosts,
    their ok share and their 429s, and the docs' "which hosts are refusing us" query
    finds the one that refused."""
    jpeg = image_bytes("JPEG", size=(8, 8))
    http_server.add("/cluster/a.jpg", route_cls(body=jpeg, delay_s=0.002))
    http_server.add("/cluster/busy.jpg", route_cls(body=b"", status=429))
    port = http_server.port
    urls = [f"http://localhost:{port}/cluster/a.jpg?n={i}" for i in range(2000)]
    urls += [f"http://127.0.0.1:{port}/cluster/a.jpg?m={i}" for i in range(36)]
    urls += [f"http://127.0.0.1:{port}/cluster/busy.jpg?m={i}" for i in range(4)]
    _write_metadata(tmp_path / "sample" / "metadata", urls)
    cfg = _config(
        tmp_path,
        "fetch.allow_networks=[127.0.0.0/8]",
        "fetch.rows_per_task=1020",  # 2 tasks on 2 cores: both hold a bucket of localhost
        "fetch.per_host_concurrency=4",
        "fetch.host_salt=2",
        "fetch.host_rows_per_task=1000",
        "fetch.retries=0",
        "fetch.backoff_s=0.01",
        "fetch.image.resolution=8",
    )
    ingest.run(spark, cfg)
    http_server.reset_peaks()
    run = fetch.run(spark, cfg)
    assert run.counts["status.ok"] == 2036 and run.counts["status.http_error"] == 4
    assert http_server.peak_for("localhost") <= 4 * 2
    assert http_server.peak_for("127.0.0.1") <= 4
    assert run.counts["hosts.seen"] == 2 and run.counts["hosts.http_429"] == 4
    assert run.counts["top_host.localhost.rows"] == 2000
    assert run.counts["top_host.127.0.0.1.rows"] == 40
    assert run.counts["top_host.127.0.0.1.http_429"] == 4
    assert run.metrics["top_host.localhost.ok_share"] == 1.0
    assert run.metrics["top_host.127.0.0.1.ok_share"] == 0.9

    Lake(spark, cfg.lake).register_all()
    refusing = spark.sql(_documented_query("refusing-hosts")).collect()
    assert [(r["host"], r["http_429"], r["ok_share"]) for r in refusing] == [("127.0.0.1", 4, 0.9)]
