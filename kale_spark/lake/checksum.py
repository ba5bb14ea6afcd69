"""A small Delta table's files from its version checksum, when that is the whole answer.

Delta's reader lists a table's files by replaying its log in Spark jobs. On a fresh
driver that costs about 2 s even for a table of four files, before the stage's first
task can run: the largest fixed cost of `kale fetch` on a few thousand URLs.

Delta's protocol lets a version's checksum file (``_delta_log/<version>.crc``) carry
`allFiles`, every AddFile of that version; Delta writes it for tables of at most
`spark.databricks.delta.allFilesInCrc.thresholdNumFiles` (50) files. Where the checksum
has it and the table needs nothing but Parquet to read (no partition columns, no column
mapping, no deletion vector on any file, no reader feature outside PLAIN_READER_FEATURES),
reading those Parquet files with the table's schema gives the table at that version.
Anything else raises NotPlain, and the caller reads through Delta (lake/tables.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

# Reader features that change nothing for a plain Parquet read of the data files:
# timestampNtz is a Parquet type Spark reads; v2Checkpoint and vacuumProtocolCheck
# concern checkpoints and VACUUM; deletionVectors only where no file has one (checked).
PLAIN_READER_FEATURES = frozenset(
    {"timestampNtz", "v2Checkpoint", "vacuumProtocolCheck", "deletionVectors"}
)
# Table properties that put commits or meaning outside the files listed here.
_REFUSED_PROPERTIES = ("delta.coordinatedCommits.commitCoordinator-preview",)
# A data file's path relative to the table, as Spark writes it: nothing URL-encoded
# (Delta's paths are URIs), nothing Spark's reader would take for a glob.
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_.=/-]+$")


class NotPlain(Exception):
    """The checksum does not give a plain Parquet read of the table; the message says why."""


@dataclass(frozen=True)
class PlainFiles:
    schema_json: str  # the table's schema (Delta's schemaString, Spark's JSON form)
    paths: tuple[str, ...]  # the data files, under the table's path


def checksum_path(table_path: str, version: int) -> str:
    return f"{table_path.rstrip('/')}/_delta_log/{version:020d}.crc"


def plain_parquet_files(crc_text: str, table_path: str) -> PlainFiles:
    """The data files and schema that a version's checksum file gives, or NotPlain."""
    try:
        crc = json.loads(crc_text)
    except ValueError as exc:
        raise NotPlain(f"checksum is not JSON: {exc}") from None
    if not isinstance(crc, dict):
        raise NotPlain("checksum is not a JSON object")
    files = crc.get("allFiles")
    if not isinstance(files, list):
        raise NotPlain("checksum lists no files (table above Delta's allFilesInCrc threshold)")
    if crc.get("numFiles") != len(files):
        raise NotPlain(f"checksum lists {len(files)} files, counts {crc.get('numFiles')}")
    _check_protocol(crc.get("protocol"))
    schema_json = _check_metadata(crc.get("metadata"))
    base = table_path.rstrip("/")
    paths = []
    for add in files:
        if not isinstance(add, dict) or not isinstance(add.get("path"), str):
            raise NotPlain("a listed file has no path")
        if add.get("deletionVector"):
            raise NotPlain(f"file {add['path']} has a deletion vector")
        if add.get("partitionValues"):
            raise NotPlain(f"file {add['path']} has partition values")
        if not _PLAIN_PATH.match(add["path"]) or add["path"].startswith("/"):
            raise NotPlain(f"file path {add['path']!r} is not a plain relative path")
        paths.append(f"{base}/{add['path']}")
    return PlainFiles(schema_json, tuple(paths))


def _check_protocol(protocol: object) -> None:
    if not isinstance(protocol, dict):
        raise NotPlain("checksum has no protocol")
    reader = protocol.get("minReaderVersion")
    if reader not in (1, 2, 3):
        raise NotPlain(f"reader version {reader!r}")
    features = set(protocol.get("readerFeatures") or ())
    unknown = sorted(features - PLAIN_READER_FEATURES)
    if unknown:
        raise NotPlain(f"reader features {', '.join(unknown)}")


def _check_metadata(metadata: object) -> str:
    """The schema JSON of a table that Parquet alone reads, or NotPlain."""
    if not isinstance(metadata, dict):
        raise NotPlain("checksum has no metadata")
    provider = (metadata.get("format") or {}).get("provider")
    if provider != "parquet":
        raise NotPlain(f"data format {provider!r}")
    if metadata.get("partitionColumns"):
        raise NotPlain(f"partitioned by {', '.join(metadata['partitionColumns'])}")
    conf = metadata.get("configuration") or {}
    mapping = conf.get("delta.columnMapping.mode", "none")
    if mapping != "none":
        raise NotPlain(f"column mapping mode {mapping!r}")
    refused = [key for key in _REFUSED_PROPERTIES if key in conf]
    if refused:
        raise NotPlain(f"table property {refused[0]}")
    schema_json = metadata.get("schemaString")
    if not isinstance(schema_json, str):
        raise NotPlain("metadata has no schema")
    return schema_json
