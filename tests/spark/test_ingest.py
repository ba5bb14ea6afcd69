"""Ingest on real local Spark + Delta: every input row accounted for, idempotent reruns,
standard Delta tables that another reader (delta-rs) and Spark SQL time travel read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kale_spark import schema
from kale_spark.config import load_config
from kale_spark.lake.tables import Lake
from kale_spark.sources.sample import FETCH_DEFECTS, generate_sample
from kale_spark.stages import ingest

# The sample's defect labels → the reason ingest must give.
EXPECTED_REASON = {
    "null_url": {schema.REASON_MISSING_URL},
    "malformed_url": {schema.REASON_BAD_URL, schema.REASON_MISSING_URL},
    "bad_uid": {schema.REASON_BAD_UID},
    "duplicate_uid": {schema.REASON_DUPLICATE_UID},
    "empty_text": {schema.REASON_EMPTY_TEXT},
    "huge_text": {schema.REASON_TEXT_TOO_LONG},
    "wrong_types": {schema.REASON_BAD_WIDTH, schema.REASON_BAD_SCORE},
}


@pytest.fixture(scope="module")
def ingested(spark, tmp_path_factory):
    """A 100-row sample with 10% broken rows, ingested twice into one lake."""
    root = tmp_path_factory.mktemp("ingest")
    sample = generate_sample(root / "sample", 100, bad_fraction=0.1, seed=7, max_side=256)
    cfg = load_config(
        None,
        [f"lake.root={root / 'lake'}", f"ingest.input={sample.metadata_dir}"],
    )
    first = ingest.run(spark, cfg)
    second = ingest.run(spark, cfg)
    return cfg, sample, first, second


def test_every_input_row_is_in_samples_or_quarantine(spark, ingested) -> None:
    cfg, sample, first, _ = ingested
    lake = Lake(spark, cfg.lake)
    n_samples = lake.count(schema.SAMPLES)
    n_quarantine = lake.count(schema.QUARANTINE)
    assert first.counts["input"] == 100
    assert n_samples + n_quarantine == 100
    assert first.counts["inserted"] == n_samples
    assert first.counts["quarantined"] == n_quarantine
    ingest_defects = [d for d in sample.defects.values() if d not in FETCH_DEFECTS]
    assert n_quarantine == len(ingest_defects)


def test_each_quarantined_row_has_the_right_reason(spark, ingested) -> None:
    cfg, sample, _, _ = ingested
    rows = Lake(spark, cfg.lake).read(schema.QUARANTINE).collect()
    by_uid = {}
    for r in rows:
        assert r["reason"], r
        assert r["source_file"].endswith(".parquet")
        assert r["stage"] == "ingest"
        by_uid.setdefault(r["uid"], []).append(r)
    for key, defect in sample.defects.items():
        if defect in FETCH_DEFECTS:
            continue
        uid = key.split("#")[0]
        found = by_uid.get(uid)
        assert found, (key, defect)
        assert {r["reason"] for r in found} & EXPECTED_REASON[defect], (key, defect, found)


def test_duplicate_uid_keeps_the_first_row(spark, ingested) -> None:
    cfg, sample, _, _ = ingested
    lake = Lake(spark, cfg.lake)
    dup_uids = [k.split("#")[0] for k, d in sample.defects.items() if d == "duplicate_uid"]
    assert dup_uids
    for uid in dup_uids:
        kept = lake.read(schema.SAMPLES).where(f"uid = '{uid}'").collect()
        assert len(kept) == 1
        q = lake.read(schema.QUARANTINE).where(f"uid = '{uid}'").collect()
        assert [r["reason"] for r in q] == [schema.REASON_DUPLICATE_UID]
        assert q[0]["source_row"] > 0


def test_rerun_inserts_nothing_and_logs_a_run(spark, ingested) -> None:
    cfg, _, first, second = ingested
    assert second.counts["inserted"] == 0
    assert second.counts["quarantine_new"] == 0
    assert second.counts["already_present"] == first.counts["inserted"]
    assert second.counts["input"] == 100
    # no new Delta version for a merge that changed nothing
    assert second.output_versions == first.output_versions
    runs = Lake(spark, cfg.lake).read(schema.RUNS).where("stage = 'ingest'").collect()
    assert {r["run_id"] for r in runs} == {first.run_id, second.run_id}
    assert all(r["status"] == "ok" for r in runs)
    by_id = {r["run_id"]: r for r in runs}
    assert by_id[second.run_id]["counts"]["inserted"] == 0
    assert by_id[first.run_id]["output_versions"]["samples"] == first.output_versions["samples"]


def test_commits_carry_the_run_id(spark, ingested) -> None:
    cfg, _, first, _ = ingested
    history = Lake(spark, cfg.lake).history(schema.SAMPLES).collect()
    # The first ingest appends (the table is as created: nothing to match).
    writes = [h for h in history if h["operation"] in ("WRITE", "MERGE")]
    assert [h["operation"] for h in writes] == ["WRITE"]
    meta = json.loads(writes[0]["userMetadata"])
    assert meta["run_id"] == first.run_id
    assert meta["stage"] == "ingest"


def test_samples_are_normalised(spark, ingested) -> None:
    cfg, _, _, _ = ingested
    df = Lake(spark, cfg.lake).read(schema.SAMPLES)
    assert df.schema["original_width"].dataType.typeName() == "integer"
    bad = df.where(
        "NOT uid RLIKE '^[0-9a-f]{32}$' OR url IS NULL OR trim(text) = '' OR length(text) > 2000"
    ).count()
    assert bad == 0


def test_another_delta_reader_sees_the_same_rows(spark, ingested) -> None:
    from deltalake import DeltaTable

    cfg, _, _, _ = ingested
    lake = Lake(spark, cfg.lake)
    table = DeltaTable(lake.path(schema.SAMPLES))
    assert table.version() == lake.version(schema.SAMPLES)
    arrow = table.to_pyarrow_table()
    assert arrow.num_rows == lake.count(schema.SAMPLES)
    assert sorted(arrow.column("uid").to_pylist()) == sorted(
        r["uid"] for r in lake.read(schema.SAMPLES).select("uid").collect()
    )


def test_sql_time_travel_through_the_catalog(spark, ingested) -> None:
    cfg, _, first, _ = ingested
    Lake(spark, cfg.lake).register_all()
    v0 = spark.sql("SELECT count(*) AS n FROM kale.samples VERSION AS OF 0").first()["n"]
    v1 = spark.sql("SELECT count(*) AS n FROM kale.samples VERSION AS OF 1").first()["n"]
    assert (v0, v1) == (0, first.counts["inserted"])


def test_grown_input_adds_only_new_rows(spark, tmp_path: Path) -> None:
    sample = generate_sample(tmp_path / "s", 30, seed=11, max_side=128)
    cfg = load_config(None, [f"lake.root={tmp_path / 'lake'}"])
    first = ingest.run(spark, cfg, str(sample.metadata_dir))
    generate_sample(tmp_path / "more", 10, seed=12, max_side=128)
    both = f"{tmp_path}/*/metadata/*.parquet"
    second = ingest.run(spark, cfg, both)
    assert first.counts["inserted"] == 30
    assert second.counts["input"] == 40
    assert second.counts["inserted"] == 10
    assert second.counts["already_present"] == 30
    assert Lake(spark, cfg.lake).count(schema.SAMPLES) == 40


def test_unreadable_input_is_a_clear_error(spark, tmp_path: Path) -> None:
    from kale_spark.sources.datacomp import InputError

    cfg = load_config(None, [f"lake.root={tmp_path / 'lake'}"])
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="not a readable parquet file"):
        ingest.run(spark, cfg, str(tmp_path / "junk"))
    with pytest.raises(InputError, match="input not found"):
        ingest.run(spark, cfg, str(tmp_path / "missing"))
    failed = Lake(spark, cfg.lake).read(schema.RUNS).where("status = 'failed'").collect()
    assert len(failed) == 2
    assert "InputError" in failed[0]["error"]
