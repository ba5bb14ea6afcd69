"""The lakehouse: the one module that touches Delta.

Tables are path-based Delta tables under `lake.root` and are also registered in the
Spark catalog as `<database>.<name>` (external tables at those paths), so both
`spark.read.format("delta").load(path)` and `SELECT ... FROM kale.samples VERSION AS
OF 3` work. Every commit a stage makes carries `{"run_id", "stage"}` as Delta commit
user metadata, so `DESCRIBE HISTORY` links each table version to its run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kale_spark.config import LakeConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int
    rows_inserted: int
    rows_updated: int = 0
    rows_deleted: int = 0


class Lake:
    """Delta tables of one lake root, registered under one catalog database."""

    def __init__(self, spark: SparkSession, cfg: LakeConfig) -> None:
        self.spark = spark
        self.database = cfg.database
        root = cfg.root
        # Local paths are made absolute so the catalog entry does not depend on the cwd;
        # URIs (s3://, abfss://, dbfs:/) are used as they are.
        self.root = root if "://" in root or root.startswith("dbfs:") else str(Path(root).resolve())
        self._registered: set[str] = set()
        self.spark.sql(f"CREATE DATABASE IF NOT EXISTS {self.database}")

    # ----------------------------------------------------------------- paths, catalog

    def path(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def qualified(self, name: str) -> str:
        return f"{self.database}.{name}"

    def exists(self, name: str) -> bool:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(self.spark, self.path(name))

    def tables(self) -> list[str]:
        """Names of the Delta tables under the lake root (local roots only)."""
        root = Path(self.root)
        if "://" in self.root or not root.exists():
            return sorted(self._registered)
        return sorted(p.name for p in root.iterdir() if (p / "_delta_log").is_dir())

    def register(self, name: str) -> None:
        """Make `<database>.<name>` point at this lake's table (re-pointing if needed)."""
        if name in self._registered:
            return
        qualified = self.qualified(name)
        location = self.path(name)
        if self.spark.catalog.tableExists(qualified):
            current = self.spark.sql(f"DESCRIBE DETAIL {qualified}").first()["location"]
            if _same_location(current, location):
                self._registered.add(name)
                return
            self.spark.sql(f"DROP TABLE {qualified}")  # external: the files stay
        self.spark.sql(f"CREATE TABLE {qualified} USING DELTA LOCATION '{location}'")
        self._registered.add(name)

    def register_all(self) -> list[str]:
        names = self.tables()
        for name in names:
            self.register(name)
        return names

    def ensure_table(self, name: str, schema: StructType, partition_by: Sequence[str] = ()) -> None:
        """Create an empty Delta table with `schema` if none exists, and register it."""
        from delta.tables import DeltaTable

        if not self.exists(name):
            builder = DeltaTable.createIfNotExists(self.spark).location(self.path(name))
            builder = builder.addColumns(schema)
            if partition_by:
                builder = builder.partitionedBy(*partition_by)
            with self.commit_metadata({"stage": "create", "table": name}):
                builder.execute()
            log.info("created Delta table %s at %s", name, self.path(name))
        else:
            self._evolve(name, schema)
        self.register(name)

    def _evolve(self, name: str, schema: StructType) -> None:
        """Bring an existing table up to `schema`: add the columns it lacks, drop NOT
        NULL where `schema` allows null (e.g. a lake written before stage 2)."""
        current = {f.name: f for f in self.read(name).schema.fields}
        missing = [f for f in schema.fields if f.name not in current]
        relax = [
            f.name
            for f in schema.fields
            if f.name in current and f.nullable and not current[f.name].nullable
        ]
        if not missing and not relax:
            return
        table = f"delta.`{self.path(name)}`"
        with self.commit_metadata({"stage": "evolve", "table": name}):
            if missing:
                cols = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
                self.spark.sql(f"ALTER TABLE {table} ADD COLUMNS ({cols})")
            for column in relax:
                self.spark.sql(f"ALTER TABLE {table} ALTER COLUMN `{column}` DROP NOT NULL")
        log.info("evolved %s: added %s, nullable %s", name, [f.name for f in missing], relax)

    # -------------------------------------------------------------------- reading

    def read(
        self,
        name: str,
        version: int | None = None,
        timestamp: str | None = None,
        session: SparkSession | None = None,
    ) -> DataFrame:
        """A table as of now, a version, or a timestamp (Delta time travel).

        `session`: read in another session of the same context (a foreachBatch
        micro-batch lives in a clone of the query's session, and SQL over both
        needs them in one)."""
        if version is not None and timestamp is not None:
            raise ValueError("give a version or a timestamp, not both")
        reader = (session or self.spark).read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", int(version))
        if timestamp is not None:
            reader = reader.option("timestampAsOf", timestamp)
        return reader.load(self.path(name))

    def read_stream(self, name: str, options: dict[str, str] | None = None) -> DataFrame:
        """A table as a Structured Streaming source (Delta's streaming reader)."""
        reader = self.spark.readStream.format("delta")
        for key, value in (options or {}).items():
            reader = reader.option(key, value)
        return reader.load(self.path(name))

    def checkpoint_path(self, *parts: str) -> str:
        """Where a streaming query over this lake keeps its checkpoint."""
        return self.path("/".join(["_checkpoints", *parts]))

    def version(self, name: str) -> int | None:
        if not self.exists(name):
            return None
        from delta.tables import DeltaTable

        row = DeltaTable.forPath(self.spark, self.path(name)).history(1).first()
        return int(row["version"])

    def history(self, name: str, limit: int | None = None) -> DataFrame:
        from delta.tables import DeltaTable

        if not self.exists(name):
            raise LookupError(f"no table {name!r} under {self.root}")
        table = DeltaTable.forPath(self.spark, self.path(name))
        return table.history(limit) if limit else table.history()

    def count(self, name: str) -> int:
        return self.read(name).count() if self.exists(name) else 0

    # -------------------------------------------------------------------- writing

    def merge_new(
        self,
        name: str,
        source: DataFrame,
        keys: Sequence[str],
        commit: dict[str, str],
        update_condition: str | None = None,
    ) -> WriteResult:
        """MERGE `source` into table `name` on `keys`: insert rows whose key is new.

        With `update_condition` (an SQL predicate over `t.` and `s.`), matched rows
        for which it holds are replaced by the source row (e.g. a retried fetch).
        Idempotent: merging the same source twice inserts nothing the second time.
        """
        from delta.tables import DeltaTable

        target = DeltaTable.forPath(self.spark, self.path(name))
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        merge = target.alias("t").merge(source.alias("s"), on)
        if update_condition:
            merge = merge.whenMatchedUpdateAll(condition=update_condition)
        merge = merge.whenNotMatchedInsertAll()
        with self.commit_metadata(commit) as stamp:
            merge.execute()
        result = self.last_write(name, stamp)
        log.info(
            "merged into %s: +%d rows, %d updated (version %d)",
            name,
            result.rows_inserted,
            result.rows_updated,
            result.version,
        )
        return result

    def append(
        self,
        name: str,
        source: DataFrame,
        commit: dict[str, str],
        merge_schema: bool = False,
    ) -> WriteResult:
        writer = source.write.format("delta").mode("append")
        if merge_schema:
            writer = writer.option("mergeSchema", "true")
        with self.commit_metadata(commit) as stamp:
            writer.save(self.path(name))
        self.register(name)
        return self.last_write(name, stamp)

    def last_write(self, name: str, stamp: str) -> WriteResult:
        """The commit a write inside `commit_metadata(...)` made, read from the history.

        A MERGE that changes nothing makes no commit at all; the commit stamp (a
        unique token in the user metadata) tells our commit from an older one.
        """
        from delta.tables import DeltaTable

        last = DeltaTable.forPath(self.spark, self.path(name)).history(1).first()
        if stamp not in (last["userMetadata"] or ""):
            return WriteResult(name, int(last["version"]), 0)
        m = last["operationMetrics"] or {}
        # MERGE reports numTargetRows*; a plain append reports numOutputRows.
        inserted = m.get("numTargetRowsInserted", m.get("numOutputRows", 0))
        return WriteResult(
            table=name,
            version=int(last["version"]),
            rows_inserted=int(inserted),
            rows_updated=int(m.get("numTargetRowsUpdated", 0)),
            rows_deleted=int(m.get("numTargetRowsDeleted", 0)),
        )

    @contextlib.contextmanager
    def commit_metadata(self, metadata: dict[str, str]) -> Iterator[str]:
        """Attach `metadata` (JSON, plus a unique commit stamp) to the Delta commits
        made inside the block; yields the stamp for `last_write`. Stages whose MERGE
        needs more than `merge_new` (updates, deletes) write inside this block."""
        conf = self.spark.conf
        previous = conf.get(USER_METADATA_CONF, None)
        stamp = uuid.uuid4().hex
        conf.set(USER_METADATA_CONF, json.dumps({**metadata, "commit": stamp}, sort_keys=True))
        try:
            yield stamp
        finally:
            if previous is None:
                conf.unset(USER_METADATA_CONF)
            else:
                conf.set(USER_METADATA_CONF, previous)


def _same_location(a: str, b: str) -> bool:
    def norm(p: str) -> str:
        return p.removeprefix("file:").rstrip("/")

    return norm(a) == norm(b)
