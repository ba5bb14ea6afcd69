"""The fetch stage's batch function: samples rows in, ``images`` rows out.

:func:`process_batch` is pure pandas (no Spark): tests and benchmarks call it
directly; the fetch stage calls :func:`process_partition`, which streams every
row of a Spark task through one bounded thread pool (no stall at each Arrow
batch boundary). Each input row is fetched (http(s), file://, or read from
img2dataset shards), decoded, oriented, resized and re-encoded; every row comes
back with a status, never an exception.

The ``images`` columns are defined once, by ``schema.IMAGES_SCHEMA``; the column
list and the pandas dtypes here are derived from it, and the frames convert to its
Arrow schema, ``schema.arrow_schema(schema.IMAGES_SCHEMA)`` (uid, status, attempts
and run_id are never null).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pandas as pd

from kale_spark import schema
from kale_spark.fetch.client import FetchResult, fetch_url, map_bounded
from kale_spark.fetch.decode import ImageResult, decode_and_resize, sha256_matches
from kale_spark.fetch.hosts import HostGates, host_of
from kale_spark.fetch.options import FetchStageOptions
from kale_spark.fetch.status import Status, cut_error
from kale_spark.hashing import sha256_hex
from kale_spark.sources.webdataset import ShardEntry, read_entry

logger = logging.getLogger(__name__)

IMAGES_COLUMNS: list[str] = schema.IMAGES_SCHEMA.fieldNames()
# (uid, bytes) -> bytes between download and decode: an injected fault (kale_spark/faults).
Tamper = Callable[[str, bytes], bytes] | None


def _pandas_dtype(spark_field) -> str:
    name = spark_field.dataType.typeName()
    if name == "integer":
        return "Int32" if spark_field.nullable else "int32"
    if name == "boolean":
        return "boolean"
    if name == "timestamp":
        return "datetime64[ns, UTC]"
    if name in ("string", "binary"):
        return "object"
    raise TypeError(f"images column {spark_field.name}: no pandas dtype for {name}")


# pandas dtypes of IMAGES_COLUMNS, from the StructType.
IMAGES_DTYPES: dict[str, str] = {f.name: _pandas_dtype(f) for f in schema.IMAGES_SCHEMA.fields}

# The columns process_batch needs; `sha256` and `text` are read when present.
INPUT_COLUMNS = ("uid", "url")


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _row(uid: str, source: str, fetched: FetchResult | None = None, **values: object) -> dict:
    row: dict = dict.fromkeys(IMAGES_COLUMNS)
    row.update(uid=uid, source=source, attempts=0)
    if fetched is not None:
        row.update(
            status=fetched.status,
            error=fetched.error,
            http_status=fetched.http_status,
            attempts=fetched.attempts,
        )
    row.update(values)
    if not row["status"]:  # a bug; acquire_row / complete_row turn it into an internal-error row
        raise ValueError(f"images row for uid {uid} has no status")
    row["attempts"] = row["attempts"] or 0
    row["error"] = cut_error(row["error"])
    row["fetched_at"] = _now()
    return row


def _expected_hash(value: object) -> str | None:
    return value.strip().lower() if isinstance(value, str) and value.strip() else None


def _finish(
    uid: str,
    source: str,
    fetched: FetchResult,
    data: bytes,
    expected: str | None,
    opts: FetchStageOptions,
    entry: ShardEntry | None = None,
) -> dict:
    """Hash check, decode and resize fetched bytes into an images row."""
    digest = (entry.sha256 if entry is not None else None) or sha256_hex(data)
    match = None if opts.hash_policy == "ignore" else sha256_matches(digest, expected)
    if match is False and opts.hash_policy == "reject":
        return _row(
            uid,
            source,
            fetched,
            status=Status.HASH_MISMATCH,
            error=f"sha256 {digest} != expected {expected}",
            sha256=digest,
            sha256_match=False,
        )
    result: ImageResult = decode_and_resize(data, opts.image, digest)
    ok = result.status == Status.OK
    known_w = entry.original_width if entry is not None and ok else None
    known_h = entry.original_height if entry is not None and ok else None
    return _row(
        uid,
        source,
        fetched,
        status=result.status,
        error=result.error,
        original_width=known_w if known_w is not None else result.original_width,
        original_height=known_h if known_h is not None else result.original_height,
        width=result.width,
        height=result.height,
        mime=result.mime,
        sha256=digest,
        sha256_match=match,
        image=result.image,
    )


@dataclass(frozen=True)
class _Fetched:
    """Bytes a row acquired (network, file or shard), still to be hashed and decoded."""

    uid: str
    source: str
    fetched: FetchResult
    data: bytes
    expected: str | None
    entry: ShardEntry | None = None


def _read_shard(
    uid: str, entry: ShardEntry | None, expected: str | None, opts: FetchStageOptions
) -> dict | _Fetched:
    source = "webdataset"
    if entry is None:
        return _row(
            uid,
            source,
            status=Status.NOT_FOUND_IN_SHARDS,
            error="uid not in the img2dataset shards",
        )
    if entry.size > opts.max_bytes:
        return _row(
            uid,
            source,
            status=Status.TOO_LARGE,
            error=f"shard entry of {entry.size} bytes > max_bytes {opts.max_bytes}",
            attempts=1,
        )
    try:
        data = read_entry(entry, opts.max_bytes)
    except OSError as exc:
        # An I/O error (e.g. a flaky network mount) is worth a rerun.
        return _row(
            uid,
            source,
            status=Status.CONNECTION_ERROR,
            error=f"shard read failed: {exc}",
            attempts=1,
        )
    read = FetchResult(Status.OK, data=data, attempts=1, source=source)
    return _Fetched(uid, source, read, data, expected, entry)


def _internal_error(uid: str, source: str, exc: Exception) -> dict:
    logger.exception("unexpected error on uid %s", uid)
    return _row(
        uid,
        source,
        status=Status.DECODE_ERROR,
        error=f"internal error: {type(exc).__name__}: {exc}",
    )


def acquire_row(
    uid: str,
    url: object,
    expected_sha256: object,
    opts: FetchStageOptions,
    entry: ShardEntry | None = None,
    from_shards: bool = False,
    gates: HostGates | None = None,
    host: str = "",
) -> dict | _Fetched:
    """The I/O half of a row: its bytes (a ``_Fetched``) or its final row (a dict:
    nothing to decode). Never raises. Runs in the fetch threads; ``gates`` holds the
    per-host limits of the task, ``host`` the row's registered domain."""
    expected = _expected_hash(expected_sha256)
    source = "webdataset" if from_shards else _source_of(url)
    try:
        if from_shards:
            return _read_shard(uid, entry, expected, opts)
        fetched = fetch_url(url if isinstance(url, str) else None, opts, gates, host)
        if fetched.status != Status.OK or fetched.data is None:
            return _row(uid, source, fetched)
        return _Fetched(uid, source, fetched, fetched.data, expected)
    except Exception as exc:  # last line of defence: a bug must cost one row, not the task
        return _internal_error(uid, source, exc)


def complete_row(acquired: dict | _Fetched, opts: FetchStageOptions) -> dict:
    """The CPU half of a row: hash, decode, resize and encode what ``acquire_row``
    returned. Never raises. Runs in the task's own thread: one decode per core at a
    time, as a Spark task holds one core (decoding in every fetch thread oversubscribes
    the cores and costs ~14% more CPU per row, measured)."""
    if isinstance(acquired, dict):
        return acquired
    a = acquired
    try:
        return _finish(a.uid, a.source, a.fetched, a.data, a.expected, opts, a.entry)
    except Exception as exc:
        return _internal_error(a.uid, a.source, exc)


def _completed_rows(
    items: Iterable[tuple],
    opts: FetchStageOptions,
    from_shards: bool,
    gates: HostGates,
    tamper: Tamper = None,
) -> Iterator[dict]:
    """``_items`` tuples as ``images`` rows, in input order: the I/O in the bounded
    fetch pool (each host within its ``gates``), the decode in the calling thread.
    ``tamper(uid, bytes)`` (an injected fault, tests only) may change the bytes
    between the two."""

    def acquire(item: tuple) -> tuple[dict | _Fetched, object, str]:
        uid, url, sha, entry, alt_text, host = item
        return acquire_row(uid, url, sha, opts, entry, from_shards, gates, host), alt_text, host

    for acquired, alt_text, host in map_bounded(acquire, items, opts.concurrency):
        if tamper is not None and isinstance(acquired, _Fetched):
            acquired = dataclasses.replace(acquired, data=tamper(acquired.uid, acquired.data))
        row = complete_row(acquired, opts)
        row["alt_text"] = alt_text if isinstance(alt_text, str) else None
        if host:
            gates.count(host, row["status"])
        yield row


def _source_of(url: object) -> str:
    return "file" if isinstance(url, str) and url.strip().lower().startswith("file:") else "http"


def empty_images_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in IMAGES_DTYPES.items()})


def images_frame(rows: list[dict], run_id: str) -> pd.DataFrame:
    """Rows from complete_row as a frame with exactly IMAGES_COLUMNS, typed as IMAGES_DTYPES."""
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run_id must be a non-empty string, got {run_id!r}")
    if not rows:
        return empty_images_frame()
    out = pd.DataFrame(rows, columns=IMAGES_COLUMNS)
    out["run_id"] = run_id
    out = out.astype({c: t for c, t in IMAGES_DTYPES.items() if c != "fetched_at"})
    out["fetched_at"] = pd.to_datetime(out["fetched_at"], utc=True).astype(
        IMAGES_DTYPES["fetched_at"]
    )
    return out


def _items(pdf: pd.DataFrame, shard_index: dict | None) -> list[tuple]:
    """(uid, url, sha256, shard entry, alt-text, host) per distinct non-null uid, in
    input order (the sample's alt-text travels into its images row: the model stages
    read it there instead of joining `samples` per chunk). The host is the stage's
    ``_host`` column (the key it partitioned by) when present."""
    schema.require_columns(pdf.columns, INPUT_COLUMNS, "process_batch input")
    frame = pdf[pdf["uid"].notna()].drop_duplicates(subset="uid", keep="first")
    if len(frame) < len(pdf):
        logger.warning("dropped %d rows with a null or duplicate uid", len(pdf) - len(frame))
    uids = frame["uid"].astype(str).tolist()
    hashes = frame["sha256"].tolist() if "sha256" in frame.columns else [None] * len(uids)
    entries = [shard_index.get(u) for u in uids] if shard_index is not None else [None] * len(uids)
    texts = frame["text"].tolist() if "text" in frame.columns else [None] * len(uids)
    urls = frame["url"].tolist()
    if shard_index is not None:
        hosts = [""] * len(uids)  # read from shards: no connection to any host
    elif "_host" in frame.columns:
        hosts = [h if isinstance(h, str) else "" for h in frame["_host"].tolist()]
    else:
        hosts = [host_of(u) for u in urls]
    return list(zip(uids, urls, hashes, entries, texts, hosts, strict=True))


def process_batch(
    pdf: pd.DataFrame, opts: FetchStageOptions, run_id: str, shard_index: dict | None = None
) -> pd.DataFrame:
    """Fetch, decode and resize a batch of samples rows.

    ``pdf`` has columns uid, url and sha256 (DataComp's expected hash, may be
    null; the column may be absent). Returns one row per distinct non-null uid
    with exactly IMAGES_COLUMNS, typed as IMAGES_DTYPES. With ``shard_index``
    (uid -> ShardEntry, see ``kale_spark.sources.webdataset``) images are read
    from img2dataset shards instead of fetched; uids not in it get
    not_found_in_shards.
    """
    items = _items(pdf, shard_index)
    started = time.monotonic()
    from_shards = shard_index is not None

    gates = HostGates.for_options(opts)
    out = images_frame(list(_completed_rows(items, opts, from_shards, gates)), run_id)
    counts = collections.Counter(out["status"])
    logger.info(
        "fetch batch: %d rows in %.1fs (%s)",
        len(out),
        time.monotonic() - started,
        ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
    )
    return out


def process_partition(
    batches: Iterable[tuple[pd.DataFrame, dict | None]],
    opts: FetchStageOptions,
    run_id: str,
    from_shards: bool,
    out_rows: int,
    gates: HostGates | None = None,
    tamper: Tamper = None,
) -> Iterator[pd.DataFrame]:
    """Every row of a Spark task through one bounded pool; images frames of ``out_rows`` rows.

    ``batches`` yields (input frame, shard index or None). Rows are fetched as one
    continuous stream: a slow row delays only the frame it falls in, never the
    whole pool at every input batch boundary. ``gates`` (one per task; made here
    when not given) bounds each host's connections and keeps its figures.
    """
    gates = gates if gates is not None else HostGates.for_options(opts)

    def rows() -> Iterator[tuple]:
        for pdf, shard_index in batches:
            yield from _items(pdf, shard_index)

    done: list[dict] = []
    for row in _completed_rows(rows(), opts, from_shards, gates, tamper):
        done.append(row)
        if len(done) >= out_rows:
            yield images_frame(done, run_id)
            done = []
    if done:
        yield images_frame(done, run_id)
