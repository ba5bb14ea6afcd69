"""kale_spark.lake.tables on real Spark + Delta: every write's commit carries its metadata, the
row counts come from that commit, and the caller's session conf is never written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql.types import BooleanType, LongType, StringType, StructField, StructType

from kale_spark.config import LakeConfig
from kale_spark.lake.checksum import NotPlain, checksum_path, plain_parquet_files
from kale_spark.lake.tables import USER_METADATA_CONF, Lake

SCHEMA = StructType([StructField("k", StringType(), False), StructField("v", LongType(), True)])


@pytest.fixture
def lake(spark, lake_root) -> Lake:
    return Lake(spark, LakeConfig(root=str(lake_root), database="kale_lake_test"))


def _df(spark, rows, schema=SCHEMA):
    return spark.createDataFrame(rows, schema)


def _table(lake: Lake) -> dict[str, int | None]:
    return {r["k"]: r["v"] for r in lake.read("t").collect()}


def _commits(lake: Lake) -> list[tuple[str, dict]]:
    """(operation, user metadata) of every commit, oldest first."""
    rows = lake.history("t").orderBy("version").collect()
    return [(r["operation"], json.loads(r["userMetadata"])) for r in rows]


def test_writes_stamp_their_commits_and_leave_the_session_conf_alone(spark, lake) -> None:
    spark.conf.set(USER_METADATA_CONF, "the notebook user's own value")
    try:
        lake.ensure_table("t", SCHEMA)
        first = lake.insert_new("t", _df(spark, [("a", 1), ("b", 2)]), ["k"], {"step": "one"})
        again = lake.insert_new("t", _df(spark, [("a", 9), ("c", 3)]), ["k"], {"step": "two"})
        up = lake.upsert(
            "t", _df(spark, [("a", 10), ("b", 20), ("d", 4)]), ["k"], {"step": "up"}, "s.v > 15"
        )
        added = lake.append("t", _df(spark, [("e", 5)]), {"step": "append"})
        lake.set_table_properties("t", {"delta.enableChangeDataFeed": "true"}, {"step": "cdf"})
        assert spark.conf.get(USER_METADATA_CONF) == "the notebook user's own value"
    finally:
        spark.conf.unset(USER_METADATA_CONF)

    assert (first.rows_inserted, first.rows_updated) == (2, 0)
    assert (again.rows_inserted, again.rows_updated) == (1, 0)  # "a" was there: left alone
    assert (up.rows_inserted, up.rows_updated) == (1, 1)  # d new; b updated (20 > 15), a not
    assert added.rows_inserted == 1
    assert _table(lake) == {"a": 1, "b": 20, "c": 3, "d": 4, "e": 5}
    assert lake.table_properties("t")["delta.enableChangeDataFeed"] == "true"
    commits = _commits(lake)
    assert [(op, m.get("step", m.get("stage"))) for op, m in commits] == [
        ("CREATE TABLE", "create"),
        ("MERGE", "one"),
        ("MERGE", "two"),
        ("MERGE", "up"),
        ("WRITE", "append"),
        ("SET TBLPROPERTIES", "cdf"),
    ]
    assert len({m["commit"] for _, m in commits}) == len(commits)  # one stamp per commit
    assert spark.conf.get(USER_METADATA_CONF, None) is None


def test_insert_new_of_nothing_new_makes_no_commit(spark, lake) -> None:
    lake.ensure_table("t", SCHEMA)
    lake.insert_new("t", _df(spark, [("a", 1)]), ["k"], {"step": "one"})
    version = lake.version("t")
    rerun = lake.insert_new("t", _df(spark, [("a", 1)]), ["k"], {"step": "rerun"})
    assert rerun.rows_inserted == 0 and rerun.version == version == lake.version("t")


def test_version_is_the_latest_commit_read_from_the_log_or_the_history(
    spark, lake, monkeypatch
) -> None:
    assert lake.version("t") is None  # no table yet
    lake.ensure_table("t", SCHEMA)  # version 0
    lake.append("t", _df(spark, [("a", 1)]), {"step": "one"})  # 1
    lake.append("t", _df(spark, [("b", 2)]), {"step": "two"})  # 2
    assert lake._log_version("t") == 2  # the log path answers on classic Spark
    assert lake.version("t") == 2
    monkeypatch.setattr(Lake, "_log_version", lambda self, name: None)  # e.g. Spark Connect
    assert lake.version("t") == 2


def test_the_commit_file_answers_as_the_history_does(spark, lake, monkeypatch) -> None:
    """last_write reads commit files (no Spark job); the history is the fallback and
    must give the same WriteResult, also when another commit came after ours."""
    lake.ensure_table("t", SCHEMA)
    lake.append("t", _df(spark, [("a", 1), ("b", 2)]), {"step": "one"})
    lake.upsert("t", _df(spark, [("a", 10), ("c", 3)]), ["k"], {"step": "up"}, "true")
    row = lake.history("t").orderBy("version", ascending=False).first()
    fast = lake._commit_info("t", row["version"])
    assert fast == {
        "version": row["version"],
        "userMetadata": row["userMetadata"],
        "operationMetrics": dict(row["operationMetrics"]),
    }
    stamp = json.loads(row["userMetadata"])["commit"]
    lake.append("t", _df(spark, [("d", 4)]), {"step": "a later writer"})
    via_file = lake.last_write("t", stamp)
    monkeypatch.setattr(Lake, "_commit_info", lambda self, name, version: None)
    via_history = lake.last_write("t", stamp)
    assert via_file == via_history
    assert via_file.version == row["version"]
    assert (via_file.rows_inserted, via_file.rows_updated, via_file.committed) == (1, 1, True)
    assert not lake.last_write("t", "another-stamp").committed


def test_apply_changes_deletes_updates_and_inserts(spark, lake) -> None:
    lake.ensure_table("t", SCHEMA)
    lake.append("t", _df(spark, [("a", 1), ("b", 2), ("c", 3)]), {"step": "seed"})
    flagged = StructType([*SCHEMA.fields, StructField("_gone", BooleanType(), False)])
    changes = _df(spark, [("a", None, True), ("b", 22, False), ("z", 26, False)], flagged)
    written = lake.apply_changes("t", changes, ["k"], {"step": "sync"}, delete_flag="_gone")
    assert (written.rows_inserted, written.rows_updated, written.rows_deleted) == (1, 1, 1)
    assert _table(lake) == {"b": 22, "c": 3, "z": 26}
    for k, v in (("x", 7), ("y", 8)):  # two more small files: something to compact
        lake.append("t", _df(spark, [(k, v)]).coalesce(1), {"step": "more"})
    lake.optimize("t", {"step": "optimize"})
    op, meta = _commits(lake)[-1]
    assert op == "OPTIMIZE" and meta["step"] == "optimize"
    assert _table(lake) == {"b": 22, "c": 3, "x": 7, "y": 8, "z": 26}


def test_driver_rows_become_a_local_relation_with_every_kind_of_column(spark) -> None:
    """A release row (int, timestamp, map, null string) and quarantine rows (a null uid)
    reach Spark as a LocalRelation, with their values intact: no Spark job converts them."""
    import datetime as dt

    from kale_spark import schema
    from kale_spark.lake.frames import local_frame

    when = dt.datetime(2026, 12, 7, 10, 30, tzinfo=dt.timezone.utc)
    release = (3, 12, when, 50, 2, 1, 0, {"images": 4, "samples": 1}, "cfg", "run-1", None)
    quarantine = [
        ("ingest", "a.parquet", -1, None, "unreadable_file", {"error": "bad magic"}, when, "r"),
        ("ingest", "b.parquet", -1, None, "unreadable_file", {"error": "cut"}, when, "r"),
    ]
    for rows, table_schema, stamp in (
        ([release], schema.RELEASES_SCHEMA, "published_at"),
        (quarantine, schema.QUARANTINE_SCHEMA, "quarantined_at"),
    ):
        frame = local_frame(spark, rows, table_schema)
        plan = frame._jdf.queryExecution().analyzed()
        assert plan.getClass().getSimpleName() == "LocalRelation"
        assert frame.schema == table_schema
        names = table_schema.fieldNames()
        at = names.index(stamp)
        others = [n for n in names if n != stamp]
        got = frame.selectExpr(*others, f"CAST({stamp} AS LONG) AS _s").orderBy(names[1])
        want = [(*(v for i, v in enumerate(r) if i != at), int(when.timestamp())) for r in rows]
        assert [tuple(r) for r in got.collect()] == want


WIDER = StructType([*SCHEMA.fields, StructField("note", StringType(), True)])


def test_a_small_plain_table_is_read_from_its_checksum_at_its_version(spark, lake) -> None:
    """The read Delta's checksum allows (lake/checksum.py) gives Delta's rows, from
    version `version` even after a later commit: those files, no log replay."""
    lake.ensure_table("t", SCHEMA)
    frame, version = lake.read_latest("t")
    assert (frame.collect(), version) == ([], 0)
    lake.append("t", _df(spark, [("a", 1), ("b", 2)]), {"step": "one"})
    lake.upsert("t", _df(spark, [("a", 10), ("c", 3)]), ["k"], {"step": "up"}, "true")
    lake.ensure_table("t", WIDER)  # a column added: older files lack it
    lake.append("t", _df(spark, [("d", 4, "new")], WIDER), {"step": "wider"})
    # Delta writes every file into a small table's checksum: the fast read's premise.
    crc = lake.read_text(checksum_path(lake.path("t"), lake.version("t")))
    assert len(plain_parquet_files(crc, lake.path("t")).paths) == lake.file_count("t")

    frame, version = lake.read_latest("t")
    expected = sorted(lake.read("t").collect())
    assert version == lake.version("t")
    # The table's columns and types; nullable, as any Parquet read is in Spark.
    assert [(f.name, f.dataType) for f in frame.schema] == [
        (f.name, f.dataType) for f in lake.read("t").schema
    ]
    assert (
        sorted(frame.collect())
        == expected
        == [
            ("a", 10, None),
            ("b", 2, None),
            ("c", 3, None),
            ("d", 4, "new"),
        ]
    )
    lake.append("t", _df(spark, [("e", 5, None)], WIDER), {"step": "later"})
    assert sorted(frame.collect()) == expected  # still the version it named
    assert len(lake.read("t").collect()) == 5  # Delta's reader moves on


def test_tables_the_checksum_cannot_answer_are_read_through_delta(spark, lake, lake_root) -> None:
    """A deletion vector, partitions, or `lake.checksum_reads` off: Delta's reader, so
    a deleted row stays deleted and partition values come back."""
    dv = f"delta.`{lake.path('dv')}`"
    spark.sql(
        f"CREATE TABLE {dv} (k STRING, v LONG) USING delta "
        "TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')"
    )
    spark.sql(f"INSERT INTO {dv} VALUES ('a', 1), ('b', 2), ('c', 3)")
    spark.sql(f"DELETE FROM {dv} WHERE k = 'b'")
    crc = lake.read_text(checksum_path(lake.path("dv"), lake.version("dv")))
    with pytest.raises(NotPlain, match="deletion vector"):
        plain_parquet_files(crc, lake.path("dv"))
    frame, version = lake.read_latest("dv")
    assert version == 2 and sorted(frame.collect()) == [("a", 1), ("c", 3)]

    parts = f"delta.`{lake.path('parts')}`"
    spark.sql(f"CREATE TABLE {parts} (k STRING, day INT) USING delta PARTITIONED BY (day)")
    spark.sql(f"INSERT INTO {parts} VALUES ('a', 1), ('b', 2)")
    frame, _ = lake.read_latest("parts")
    assert sorted(frame.select("k", "day").collect()) == [("a", 1), ("b", 2)]

    lake.ensure_table("gone", SCHEMA)
    lake.append("gone", _df(spark, [("a", 1)]), {"step": "one"})
    Path(checksum_path(lake.path("gone"), 1)).unlink()  # e.g. a writer that writes none
    frame, version = lake.read_latest("gone")
    assert version == 1 and frame.collect() == [("a", 1)]

    off = Lake(spark, LakeConfig(root=str(lake_root), database=lake.database, checksum_reads=False))
    frame, version = off.read_latest("dv")
    assert version == 2 and sorted(frame.collect()) == [("a", 1), ("c", 3)]
    with pytest.raises(LookupError, match="no table 'absent'"):
        lake.read_latest("absent")
