"""kale_spark.lake.checksum: which version checksums give a plain Parquet read of the
table, and which send the reader back to Delta (every refusal names its reason)."""

from __future__ import annotations

import copy
import json

import pytest

from kale_spark.lake.checksum import NotPlain, checksum_path, plain_parquet_files

SCHEMA = json.dumps(
    {
        "type": "struct",
        "fields": [
            {"name": "uid", "type": "string", "nullable": False, "metadata": {}},
            {"name": "url", "type": "string", "nullable": True, "metadata": {}},
        ],
    }
)
# The shape Delta 4.4 writes for a two-file table (tests/spark/test_lake.py checks that
# Delta really writes `allFiles` for kale's tables).
CRC = {
    "tableSizeBytes": 300,
    "numFiles": 2,
    "numMetadata": 1,
    "numProtocol": 1,
    "metadata": {
        "id": "d774ecea",
        "format": {"provider": "parquet", "options": {}},
        "schemaString": SCHEMA,
        "partitionColumns": [],
        "configuration": {"delta.enableChangeDataFeed": "true"},
    },
    "protocol": {"minReaderVersion": 1, "minWriterVersion": 7},
    "allFiles": [
        {"path": "part-00000-a-c000.snappy.parquet", "partitionValues": {}, "size": 100},
        {"path": "part-00001-b-c000.snappy.parquet", "partitionValues": {}, "size": 200},
    ],
}


def _crc(**edits) -> str:
    crc = copy.deepcopy(CRC)
    for dotted, value in edits.items():
        *parents, leaf = dotted.split("__")
        node = crc
        for key in parents:
            node = node[key]
        node[leaf] = value
    return json.dumps(crc)


def test_a_plain_table_gives_its_files_under_the_table_path_and_its_schema() -> None:
    plain = plain_parquet_files(json.dumps(CRC), "s3://bucket/lake/samples/")
    assert plain.paths == (
        "s3://bucket/lake/samples/part-00000-a-c000.snappy.parquet",
        "s3://bucket/lake/samples/part-00001-b-c000.snappy.parquet",
    )
    assert plain.schema_json == SCHEMA


def test_reader_features_that_leave_the_files_plain_are_accepted() -> None:
    protocol = {
        "minReaderVersion": 3,
        "minWriterVersion": 7,
        "readerFeatures": ["timestampNtz", "v2Checkpoint", "deletionVectors"],
    }
    assert len(plain_parquet_files(_crc(protocol=protocol), "/lake/t").paths) == 2


def test_an_empty_table_is_plain_with_no_files() -> None:
    assert plain_parquet_files(_crc(allFiles=[], numFiles=0), "/lake/t").paths == ()


def test_the_checksum_path_is_the_versions_file_in_the_log() -> None:
    assert checksum_path("/lake/t/", 12) == "/lake/t/_delta_log/00000000000000000012.crc"


DV = {"storageType": "u", "pathOrInlineDv": "x", "offset": 1, "sizeInBytes": 34, "cardinality": 1}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (_crc(allFiles=None), "lists no files"),
        (_crc(numFiles=3), "lists 2 files, counts 3"),
        (_crc(protocol=None), "no protocol"),
        (_crc(protocol__minReaderVersion=4), "reader version 4"),
        (
            _crc(protocol={"minReaderVersion": 3, "readerFeatures": ["typeWidening"]}),
            "reader features typeWidening",
        ),
        (_crc(metadata__format__provider="orc"), "data format 'orc'"),
        (_crc(metadata__partitionColumns=["day"]), "partitioned by day"),
        (
            _crc(metadata__configuration={"delta.columnMapping.mode": "name"}),
            "column mapping mode 'name'",
        ),
        (
            _crc(
                metadata__configuration={"delta.coordinatedCommits.commitCoordinator-preview": "x"}
            ),
            "coordinatedCommits",
        ),
        (_crc(metadata__schemaString=None), "no schema"),
        (
            _crc(allFiles=[{"path": "part-0.parquet", "deletionVector": DV}], numFiles=1),
            "deletion vector",
        ),
        (
            _crc(
                allFiles=[{"path": "day=1/part-0.parquet", "partitionValues": {"day": "1"}}],
                numFiles=1,
            ),
            "partition values",
        ),
        (_crc(allFiles=[{"path": "a%20b.parquet"}], numFiles=1), "not a plain relative path"),
        (_crc(allFiles=[{"path": "part-*.parquet"}], numFiles=1), "not a plain relative path"),
        (_crc(allFiles=[{"path": "s3://other/x.parquet"}], numFiles=1), "not a plain relative"),
        (_crc(allFiles=[{"path": "/abs/x.parquet"}], numFiles=1), "not a plain relative path"),
        (_crc(allFiles=[{"size": 1}], numFiles=1), "has no path"),
    ],
)
def test_anything_beyond_plain_parquet_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(NotPlain, match=reason):
        plain_parquet_files(text, "/lake/t")
