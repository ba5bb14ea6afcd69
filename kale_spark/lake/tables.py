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
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale_spark.config import LakeConfig
from kale_spark.lake.connect import refuse_connect
from kale_spark.lake.contracts import check_write
from kale_spark.lake.frames import local_frame

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)
# Catalog changes (create, register, re-point) one at a time per process.
_CATALOG_LOCK = threading.RLock()

# Delta commit user metadata: a DataFrameWriter option, or (for operations that have no
# writer) a SQL conf of the session that runs them. See Lake._commit_session.
USER_METADATA_OPTION = "userMetadata"
USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
CHANGE_FEED_PROPERTY = "delta.enableChangeDataFeed"
COMMITS_SEARCHED = 16  # how far back last_write looks for its own commit
# Delta's refusal of a commit whose txnAppId/txnVersion a concurrent commit just took.
TXN_CONFLICT = "DELTA_CONCURRENT_TRANSACTION"


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int
    rows_inserted: int
    rows_updated: int = 0
    rows_deleted: int = 0
    committed: bool = True  # False: the write made no commit (nothing changed, or a
    #                         transaction version the table had already seen)
    files: int = 0  # data files the commit added


class Lake:
    """Delta tables of one lake root, registered under one catalog database."""

    def __init__(self, spark: SparkSession, cfg: LakeConfig) -> None:
        refuse_connect(spark)  # every stage builds a Lake first: Connect fails here, clearly
        self.spark = spark
        self.database = cfg.database
        root = cfg.root
        # Local paths are made absolute so the catalog entry does not depend on the cwd;
        # URIs (s3://, abfss://, dbfs:/) are used as they are.
        self.root = root if "://" in root or root.startswith("dbfs:") else str(Path(root).resolve())
        self._registered: set[str] = set()
        self.checksum_reads = cfg.checksum_reads
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
        """Make `<database>.<name>` point at this lake's table (re-pointing if needed).
        Under a process-wide lock: a model stage's two lanes may register the same table
        at once, and a re-pointing DROP would pull it from under the other's DESCRIBE."""
        with _CATALOG_LOCK:
            self._register(name)

    def _register(self, name: str) -> None:
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

    def ensure_table(self, name: str, schema: StructType, change_feed: bool = False) -> None:
        """Create an empty Delta table with `schema` if none exists, and register it.
        `change_feed`: record Delta's change data feed from the start (a model stage
        streams the changes of its source)."""
        with _CATALOG_LOCK:  # lanes of one stage may create the same table at once
            self._ensure_table(name, schema, change_feed)

    def _ensure_table(self, name: str, schema: StructType, change_feed: bool) -> None:
        from delta.tables import DeltaTable

        if not self.exists(name):
            with self._commit_session({"stage": "create", "table": name}) as (session, _):
                builder = DeltaTable.createIfNotExists(session).location(self.path(name))
                if change_feed:
                    builder = builder.property(CHANGE_FEED_PROPERTY, "true")
                builder.addColumns(schema).execute()
            log.info("created Delta table %s at %s", name, self.path(name))
        else:
            self._evolve(name, schema)
        self.register(name)

    def ensure_change_feed(self, name: str) -> None:
        """Turn on the change data feed of an existing table (a table created before a
        stage streamed it); one commit, only when it is off."""
        if self.table_properties(name).get(CHANGE_FEED_PROPERTY, "false").lower() == "true":
            return
        log.warning("turning on the change data feed of %s (a table from an older lake)", name)
        self.set_table_properties(
            name, {CHANGE_FEED_PROPERTY: "true"}, {"stage": "evolve", "table": name}
        )

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
        with self._commit_session({"stage": "evolve", "table": name}) as (session, _):
            if missing:
                cols = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in missing)
                session.sql(f"ALTER TABLE {table} ADD COLUMNS ({cols})")
            for column in relax:
                session.sql(f"ALTER TABLE {table} ALTER COLUMN `{column}` DROP NOT NULL")
        log.info("evolved %s: added %s, nullable %s", name, [f.name for f in missing], relax)

    def table_properties(self, name: str) -> dict[str, str]:
        """The table's properties (`delta.*` and user-set ones)."""
        rows = self.spark.sql(f"SHOW TBLPROPERTIES delta.`{self.path(name)}`").collect()
        return {r["key"]: r["value"] for r in rows}

    def set_table_properties(
        self, name: str, properties: dict[str, str], commit: dict[str, str]
    ) -> None:
        """Set table properties (one commit carrying `commit`), e.g. the change data feed."""
        assignments = ", ".join(f"'{k}' = '{v}'" for k, v in sorted(properties.items()))
        with self._commit_session(commit) as (session, _):
            session.sql(f"ALTER TABLE delta.`{self.path(name)}` SET TBLPROPERTIES ({assignments})")

    # -------------------------------------------------------------------- reading

    def read(
        self, name: str, version: int | None = None, session: SparkSession | None = None
    ) -> DataFrame:
        """A table as of now, or as of `version` (Delta time travel).

        `session`: read in another session of the same context (a foreachBatch
        micro-batch lives in a clone of the query's session, and SQL over both
        needs them in one)."""
        reader = (session or self.spark).read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", int(version))
        return reader.load(self.path(name))

    def read_latest(self, name: str) -> tuple[DataFrame, int]:
        """The table at its latest version, and that version (LookupError: no table).

        A small table whose version checksum lists its files, and that needs nothing
        but Parquet to read, is read as those files (lake/checksum.py): no log replay in
        Spark jobs, about 2 s on a fresh driver; its columns are all nullable, as in any
        Parquet read. Any other table, or `lake.checksum_reads` off, goes through Delta's
        reader, which may see a commit made after `version`."""
        version = self.version(name)
        if version is None:
            raise LookupError(f"no table {name!r} under {self.root}")
        plain = self._checksum_files(name, version) if self.checksum_reads else None
        if plain is None:
            return self.read(name), version
        paths, schema = plain
        if not paths:
            return local_frame(self.spark, [], schema), version
        return self.spark.read.schema(schema).parquet(*paths), version

    def _checksum_files(self, name: str, version: int) -> tuple[tuple[str, ...], StructType] | None:
        """(data files, schema) of `version` from its checksum, or None (logged why):
        not a plain table, no checksum file, or any error reading it."""
        from pyspark.sql.types import StructType

        from kale_spark.lake.checksum import checksum_path, plain_parquet_files

        try:
            text = self.read_text(checksum_path(self.path(name), version))
            if text is None:
                log.info("%s v%d read through Delta: no checksum file", name, version)
                return None
            plain = plain_parquet_files(text, self.path(name))
            return plain.paths, StructType.fromJson(json.loads(plain.schema_json))
        except Exception as why:  # NotPlain; py4j errors reading the file: Delta decides
            log.info("%s v%d read through Delta: %s", name, version, why)
            return None

    def read_changes(self, name: str, start: int, end: int) -> DataFrame:
        """The change data feed of versions `start`..`end` (inclusive). Raises (an
        AnalysisException) when the table did not record the feed over that range."""
        return (
            self.spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", int(start))
            .option("endingVersion", int(end))
            .load(self.path(name))
        )

    def read_stream(self, name: str, options: dict[str, str] | None = None) -> DataFrame:
        """A table as a Structured Streaming source (Delta's streaming reader)."""
        reader = self.spark.readStream.format("delta")
        for key, value in (options or {}).items():
            reader = reader.option(key, value)
        return reader.load(self.path(name))

    def checkpoint_path(self, *parts: str) -> str:
        """Where a streaming query over this lake keeps its checkpoint."""
        return self.path("/".join(["_checkpoints", *parts]))

    def checkpoint_started(self, checkpoint: str) -> bool:
        """Whether a streaming query has started from `checkpoint` before (its offset
        log exists). Unknown (Spark Connect has no file system handle): True."""
        if getattr(self.spark, "_jsparkSession", None) is None:
            return True
        sc = self.spark.sparkContext
        path = sc._jvm.org.apache.hadoop.fs.Path(f"{checkpoint}/offsets")
        fs = path.getFileSystem(sc._jsc.hadoopConfiguration())
        return bool(fs.exists(path))

    def txn_committed(self, name: str, app_id: str, version: int) -> bool:
        """Whether table `name` has committed transaction `version` (or a later one) of
        `app_id` (Delta's txnAppId / txnVersion), read from the table's snapshot. False
        where that cannot be read (Spark Connect): the caller then runs its write and
        Delta skips it."""
        snapshot = self._snapshot(name)
        if snapshot is None:
            return False
        latest = snapshot.transactions().get(app_id)
        return bool(latest.isDefined()) and int(latest.get()) >= version

    def _snapshot(self, name: str) -> Any:
        """The table's latest Delta snapshot (a py4j handle; no Spark job), or None where
        the JVM is not reachable (Spark Connect) or Delta's internal API differs: callers
        then fall back to a public API (the history) or to Delta's own checks."""
        jsession = getattr(self.spark, "_jsparkSession", None)
        if jsession is None:
            return None
        try:
            jvm = self.spark.sparkContext._jvm
            log_ = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(jsession, self.path(name))
            none = jvm.scala.Option.empty()
            return log_.update(False, none, none)
        except Exception:  # py4j errors: an API change in another Delta version
            log.warning("the Delta log of %s is unreadable through the JVM; falling back", name)
            return None

    # ----------------------------------------------------- small files beside tables

    def _fs(self, path: str) -> tuple[Any, Any] | None:
        """(Hadoop FileSystem, Path) for `path`, or None without a JVM (Spark Connect)."""
        if getattr(self.spark, "_jsparkSession", None) is None:
            return None
        sc = self.spark.sparkContext
        jpath = sc._jvm.org.apache.hadoop.fs.Path(path)
        return jpath.getFileSystem(sc._jsc.hadoopConfiguration()), jpath

    def read_text(self, path: str) -> str | None:
        """A small text file under the lake (e.g. beside a checkpoint), or None."""
        handle = self._fs(path)
        if handle is None:
            local = Path(path.removeprefix("file:"))
            return local.read_text() if local.is_file() else None
        fs, jpath = handle
        if not fs.exists(jpath):
            return None
        stream = fs.open(jpath)
        try:
            return self.spark.sparkContext._jvm.org.apache.commons.io.IOUtils.toString(
                stream, "UTF-8"
            )
        finally:
            stream.close()

    def write_text(self, path: str, text: str) -> None:
        """Write a small text file under the lake, replacing it (written whole, then
        renamed where the file system renames atomically)."""
        handle = self._fs(path)
        if handle is None:
            local = Path(path.removeprefix("file:"))
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f".{local.name}.tmp")
            tmp.write_text(text)
            tmp.replace(local)
            return
        fs, jpath = handle
        jvm = self.spark.sparkContext._jvm
        tmp = jvm.org.apache.hadoop.fs.Path(
            jpath.getParent(), f".{jpath.getName()}.{uuid.uuid4().hex}"
        )
        out = fs.create(tmp, True)
        try:
            out.write(bytearray(text.encode()))
        finally:
            out.close()
        fs.delete(jpath, False)
        if not fs.rename(tmp, jpath):
            raise OSError(f"cannot rename {tmp} to {jpath}")

    def delete_path(self, path: str) -> None:
        handle = self._fs(path)
        if handle is None:
            Path(path.removeprefix("file:")).unlink(missing_ok=True)
            return
        fs, jpath = handle
        fs.delete(jpath, False)

    def version(self, name: str) -> int | None:
        if not self.exists(name):
            return None
        latest = self._log_version(name)
        if latest is not None:
            return latest
        from delta.tables import DeltaTable

        row = DeltaTable.forPath(self.spark, self.path(name)).history(1).first()
        return int(row["version"])

    def _commit_info(self, name: str, version: int) -> dict[str, Any] | None:
        """Version `version`'s userMetadata and operationMetrics, read from its commit
        file (``_delta_log/<version>.json``, the protocol's layout) through the JVM's
        file system: no Spark job (``history`` runs one: 0.15-0.3 s). None where that
        is not possible (Spark Connect, no such file); the caller reads the history."""
        try:
            sc = self.spark.sparkContext
            jvm = sc._jvm
            path = jvm.org.apache.hadoop.fs.Path(
                f"{self.path(name)}/_delta_log/{version:020d}.json"
            )
            fs = path.getFileSystem(sc._jsc.hadoopConfiguration())
            stream = fs.open(path)
            try:
                text = jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
            finally:
                stream.close()
        except Exception:  # py4j errors: a missing file, another file system API
            log.warning("commit file of %s v%d unreadable; reading the history", name, version)
            return None
        for line in text.splitlines():
            info = json.loads(line).get("commitInfo") if line.strip() else None
            if info is not None:
                return {
                    "version": version,
                    "userMetadata": info.get("userMetadata"),
                    "operationMetrics": info.get("operationMetrics"),
                }
        return None

    def _find_commit(self, name: str, stamp: str) -> dict[str, Any] | None:
        """The commit whose user metadata holds `stamp`, among the last COMMITS_SEARCHED
        versions (other writers of the same table, e.g. a model stage's other lane, may
        have committed after it); the latest commit when none does. Commit files first,
        the history where they cannot be read."""
        latest = self._log_version(name)
        infos: list[dict[str, Any]] = []
        if latest is not None:
            for version in range(latest, max(-1, latest - COMMITS_SEARCHED), -1):
                info = self._commit_info(name, version)
                if info is None:
                    infos = []
                    break
                if stamp in (info["userMetadata"] or ""):
                    return info
                infos.append(info)
        if not infos:
            from delta.tables import DeltaTable

            history = DeltaTable.forPath(self.spark, self.path(name)).history(COMMITS_SEARCHED)
            infos = [r.asDict() for r in history.collect()]
            for info in infos:
                if stamp in (info["userMetadata"] or ""):
                    return info
        return infos[0] if infos else None

    def _log_version(self, name: str) -> int | None:
        """The latest version from Delta's log directly (no Spark job: `history` runs
        one, a second or more on a fresh session); None where that is unreadable."""
        snapshot = self._snapshot(name)
        return None if snapshot is None else int(snapshot.version())

    def history(self, name: str, limit: int | None = None) -> DataFrame:
        from delta.tables import DeltaTable

        if not self.exists(name):
            raise LookupError(f"no table {name!r} under {self.root}")
        table = DeltaTable.forPath(self.spark, self.path(name))
        return table.history(limit) if limit else table.history()

    def file_count(self, name: str) -> int:
        """Data files in the table's current snapshot (from the log: no data read)."""
        from delta.tables import DeltaTable

        return int(DeltaTable.forPath(self.spark, self.path(name)).detail().first()["numFiles"])

    def count(self, name: str) -> int:
        return self.read(name).count() if self.exists(name) else 0

    # -------------------------------------------------------------------- writing

    def insert_new(
        self, name: str, source: DataFrame, keys: Sequence[str], commit: dict[str, str]
    ) -> WriteResult:
        """MERGE `source` into table `name` on `keys`, inserting only the rows whose key
        the table lacks; rows already there are left as they are. Idempotent: merging
        the same source twice inserts nothing the second time."""
        return self._merge(name, source, keys, commit, lambda m: m.whenNotMatchedInsertAll())

    def upsert(
        self,
        name: str,
        source: DataFrame,
        keys: Sequence[str],
        commit: dict[str, str],
        update_when: str,
    ) -> WriteResult:
        """MERGE `source` into table `name` on `keys`: insert rows whose key is new, and
        replace a matched row by its source row where `update_when` (an SQL predicate
        over `t.` and `s.`) holds, e.g. `t.status <> 'ok'` for a retried fetch."""
        return self._merge(
            name,
            source,
            keys,
            commit,
            lambda m: m.whenMatchedUpdateAll(condition=update_when).whenNotMatchedInsertAll(),
        )

    def apply_changes(
        self,
        name: str,
        changes: DataFrame,
        keys: Sequence[str],
        commit: dict[str, str],
        delete_flag: str,
    ) -> WriteResult:
        """MERGE a change set into table `name` on `keys`. `changes` has the table's
        columns plus the boolean column `delete_flag`: a row with the flag set deletes
        the table row with its key; any other row replaces the table row with its key,
        or is inserted when there is none."""
        columns = {c: f"s.`{c}`" for c in self.read(name).columns}
        return self._merge(
            name,
            changes,
            keys,
            commit,
            lambda m: (
                m.whenMatchedDelete(condition=f"s.`{delete_flag}`")
                .whenMatchedUpdate(set=columns)
                .whenNotMatchedInsert(condition=f"NOT s.`{delete_flag}`", values=columns)
            ),
        )

    def append(
        self,
        name: str,
        source: DataFrame,
        commit: dict[str, str],
        merge_schema: bool = False,
        txn: tuple[str, int] | None = None,
    ) -> WriteResult:
        """Append `source` to table `name` (`merge_schema`: add the columns it has and
        the table lacks, e.g. a new `runs` column).

        `txn` = (app id, version) makes the append idempotent (Delta's txnAppId /
        txnVersion): Delta skips it, without running `source`, when the table has
        already committed that version or a later one for that app id; the result then
        says `committed=False`. Two writers racing on one txn (a micro-batch replayed
        twice at once): Delta refuses the loser's commit (ConcurrentTransactionException),
        which is then a skip like any other.
        """
        check_write(commit, name)
        metadata, stamp = _commit_info(commit)
        writer = source.write.format("delta").mode("append").option(USER_METADATA_OPTION, metadata)
        if merge_schema:
            writer = writer.option("mergeSchema", "true")
        if txn is not None:
            writer = writer.option("txnAppId", txn[0]).option("txnVersion", str(txn[1]))
        try:
            writer.save(self.path(name))
        except Exception as exc:
            if txn is None or TXN_CONFLICT not in str(exc) or not self.txn_committed(name, *txn):
                raise
            log.info("%s: txn %s@%d was committed by a concurrent writer: skipped", name, *txn)
            return WriteResult(name, int(self.version(name)), 0, committed=False)
        self.register(name)
        return self.last_write(name, stamp)

    def optimize(self, name: str, commit: dict[str, str]) -> None:
        """Bin-packing compaction of table `name`; its commit (if any) carries `commit`."""
        from delta.tables import DeltaTable

        check_write(commit, name)
        with self._commit_session(commit) as (session, _):
            DeltaTable.forPath(session, self.path(name)).optimize().executeCompaction()

    def last_write(self, name: str, stamp: str) -> WriteResult:
        """The commit a write of this class made, read from the history; `stamp` is the
        unique token that write put in the commit's user metadata.

        A MERGE that changes nothing makes no commit at all; the stamp tells our commit
        from an older one.
        """
        last = self._find_commit(name, stamp)
        if stamp not in (last["userMetadata"] or ""):
            return WriteResult(name, int(last["version"]), 0, committed=False)
        m = last["operationMetrics"] or {}
        # MERGE reports numTargetRows*; a plain append reports numOutputRows.
        inserted = m.get("numTargetRowsInserted", m.get("numOutputRows", 0))
        return WriteResult(
            table=name,
            version=int(last["version"]),
            rows_inserted=int(inserted),
            rows_updated=int(m.get("numTargetRowsUpdated", 0)),
            rows_deleted=int(m.get("numTargetRowsDeleted", 0)),
            files=int(m.get("numTargetFilesAdded", m.get("numFiles", 0))),
        )

    def _merge(
        self,
        name: str,
        source: DataFrame,
        keys: Sequence[str],
        commit: dict[str, str],
        clauses: Callable[[Any], Any],
    ) -> WriteResult:
        """MERGE `source` (alias `s`) into `name` (alias `t`) on equal `keys`, with the
        WHEN clauses `clauses` adds to Delta's merge builder; the commit's row counts."""
        from delta.tables import DeltaTable

        check_write(commit, name)
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        with self._commit_session(commit) as (session, stamp):
            target = DeltaTable.forPath(session, self.path(name))
            clauses(target.alias("t").merge(source.alias("s"), on)).execute()
        result = self.last_write(name, stamp)
        log.info(
            "merged into %s: +%d rows, %d updated, %d deleted (version %d)",
            name,
            result.rows_inserted,
            result.rows_updated,
            result.rows_deleted,
            result.version,
        )
        return result

    @contextlib.contextmanager
    def _commit_session(self, metadata: dict[str, str]) -> Iterator[tuple[SparkSession, str]]:
        """A session for one Delta operation whose commit carries `metadata` (JSON, plus
        a unique commit stamp); yields it and the stamp for `last_write`.

        DataFrame writes take the metadata as a writer option (see `append`); MERGE,
        OPTIMIZE, CREATE and ALTER TABLE have none (delta-io/delta#857): Delta
        reads `spark.databricks.delta.commitInfo.userMetadata` from the conf of the
        session that runs the operation. So the operation runs on a clone of this
        session (same SparkContext, catalog and cache, a copy of its SQL conf) with the
        value set there: the caller's session conf is never written, so concurrent
        writers in one shared notebook session cannot stamp each other's commits.
        (`cloneSession` is Spark-internal, `private[sql]` in Scala, reached via py4j;
        the public `newSession()` would drop the caller's runtime settings.)
        """
        text, stamp = _commit_info(metadata)
        jsession = getattr(self.spark, "_jsparkSession", None)
        if jsession is None:
            # Spark Connect has no session clone; the value is set for this one
            # operation and restored right after (the narrowest scope Connect offers).
            yield from _scoped_conf(self.spark, text, stamp)
            return
        from pyspark.sql import SparkSession

        session = SparkSession(self.spark.sparkContext, jsession.cloneSession())
        session.conf.set(USER_METADATA_CONF, text)
        yield session, stamp


def _commit_info(metadata: dict[str, str]) -> tuple[str, str]:
    """(the commit's user metadata JSON, its unique stamp)."""
    stamp = uuid.uuid4().hex
    return json.dumps({**metadata, "commit": stamp}, sort_keys=True), stamp


def _scoped_conf(spark: SparkSession, text: str, stamp: str) -> Iterator[tuple[SparkSession, str]]:
    previous = spark.conf.get(USER_METADATA_CONF, None)
    spark.conf.set(USER_METADATA_CONF, text)
    try:
        yield spark, stamp
    finally:
        if previous is None:
            spark.conf.unset(USER_METADATA_CONF)
        else:
            spark.conf.set(USER_METADATA_CONF, previous)


def _same_location(a: str, b: str) -> bool:
    def norm(p: str) -> str:
        return p.removeprefix("file:").rstrip("/")

    return norm(a) == norm(b)
