"""The fetch stage's batch function: samples rows in, ``images`` rows out.

:func:`process_batch` is pure pandas (no Spark): the fetch stage calls it from
``mapInPandas``; tests and benchmarks call it directly. Each input row is
fetched (http(s), file://, or read from img2dataset shards), decoded, oriented,
resized and re-encoded in a bounded per-task thread pool; every row comes back
with a status, never an exception.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field

import pandas as pd

from kale_spark.fetching import FetchOptions, FetchResult, fetch_url, map_bounded
from kale_spark.images import (
    ImageOptions,
    ImageResult,
    Status,
    decode_and_resize,
    sha256_hex,
    sha256_matches,
)
from kale_spark.sources.webdataset import ShardEntry, read_entry

logger = logging.getLogger(__name__)

IMAGES_COLUMNS: list[str] = [
    "uid",
    "status",
    "error",
    "http_status",
    "attempts",
    "original_width",
    "original_height",
    "width",
    "height",
    "mime",
    "sha256",
    "sha256_match",
    "image",
    "source",
    "fetched_at",
    "run_id",
]

# pandas dtypes of IMAGES_COLUMNS; Arrow maps them to string, int32, boolean,
# binary and timestamp[UTC] (Spark: StringType, IntegerType, BooleanType,
# BinaryType, TimestampType).
IMAGES_DTYPES: dict[str, str] = {
    "uid": "object",
    "status": "object",
    "error": "object",
    "http_status": "Int32",
    "attempts": "int32",
    "original_width": "Int32",
    "original_height": "Int32",
    "width": "Int32",
    "height": "Int32",
    "mime": "object",
    "sha256": "object",
    "sha256_match": "boolean",
    "image": "object",
    "source": "object",
    "fetched_at": "datetime64[ns, UTC]",
    "run_id": "object",
}

INPUT_COLUMNS = ("uid", "url", "sha256")


def images_arrow_schema():  # -> pyarrow.Schema (pyarrow imported lazily)
    """Arrow schema of process_batch's output; all-null object columns need it."""
    import pyarrow as pa

    return pa.schema(
        [
            ("uid", pa.string()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("http_status", pa.int32()),
            ("attempts", pa.int32()),
            ("original_width", pa.int32()),
            ("original_height", pa.int32()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("mime", pa.string()),
            ("sha256", pa.string()),
            ("sha256_match", pa.bool_()),
            ("image", pa.binary()),
            ("source", pa.string()),
            ("fetched_at", pa.timestamp("us", tz="UTC")),
            ("run_id", pa.string()),
        ]
    )


HASH_POLICIES = ("ignore", "flag", "reject")


@dataclass(frozen=True)
class FetchStageOptions:
    """Options of the fetch stage.

    hash_policy: what to do when DataComp's ``sha256`` is given and differs
        from the hash of the downloaded bytes (the image changed since
        DataComp was built): "ignore" does not compare (``sha256_match`` null);
        "flag" keeps the image with status ok and ``sha256_match`` false;
        "reject" returns status hash_mismatch without image bytes.
    """

    fetch: FetchOptions = field(default_factory=FetchOptions)
    image: ImageOptions = field(default_factory=ImageOptions)
    hash_policy: str = "flag"

    def __post_init__(self) -> None:
        if not isinstance(self.fetch, FetchOptions):
            raise ValueError(f"fetch must be FetchOptions, got {type(self.fetch).__name__}")
        if not isinstance(self.image, ImageOptions):
            raise ValueError(f"image must be ImageOptions, got {type(self.image).__name__}")
        if self.hash_policy not in HASH_POLICIES:
            raise ValueError(
                f"hash_policy must be one of {HASH_POLICIES}, got {self.hash_policy!r}"
            )


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _row(uid: str, source: str, fetched: FetchResult | None = None, **values: object) -> dict:
    row: dict = {c: None for c in IMAGES_COLUMNS}
    row.update(uid=uid, source=source, attempts=0)
    if fetched is not None:
        row.update(
            status=fetched.status,
            error=fetched.error,
            http_status=fetched.http_status,
            attempts=fetched.attempts,
        )
    row.update(values)
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
    known_sha256: str | None = None,
    known_size: tuple[int | None, int | None] = (None, None),
) -> dict:
    """Hash check, decode and resize fetched bytes into an images row."""
    digest = known_sha256 or sha256_hex(data)
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
    result: ImageResult = decode_and_resize(data, opts.image)
    orig_w, orig_h = known_size
    return _row(
        uid,
        source,
        fetched,
        status=result.status,
        error=result.error,
        original_width=orig_w
        if orig_w is not None and result.status == Status.OK
        else result.original_width,
        original_height=orig_h
        if orig_h is not None and result.status == Status.OK
        else result.original_height,
        width=result.width,
        height=result.height,
        mime=result.mime,
        sha256=digest,
        sha256_match=match,
        image=result.image,
    )


def process_row(
    uid: str,
    url: object,
    expected_sha256: object,
    opts: FetchStageOptions,
    shard_index: dict | None = None,
) -> dict:
    """One ``images`` row (a dict over IMAGES_COLUMNS). Never raises."""
    expected = _expected_hash(expected_sha256)
    source = "webdataset" if shard_index is not None else _source_of(url)
    try:
        if shard_index is not None:
            entry: ShardEntry | None = shard_index.get(uid)
            if entry is None:
                return _row(
                    uid,
                    source,
                    status=Status.NOT_FOUND_IN_SHARDS,
                    error="uid not in the img2dataset shards",
                )
            try:
                data = read_entry(entry)
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
            return _finish(
                uid,
                source,
                read,
                data,
                expected,
                opts,
                known_sha256=entry.sha256,
                known_size=(entry.original_width, entry.original_height),
            )
        fetched = fetch_url(url if isinstance(url, str) else None, opts.fetch)
        if fetched.status != Status.OK or fetched.data is None:
            return _row(uid, source, fetched)
        return _finish(uid, source, fetched, fetched.data, expected, opts)
    except Exception as exc:  # last line of defence: a bug must cost one row, not the task
        logger.exception("unexpected error on uid %s", uid)
        return _row(
            uid,
            source,
            status=Status.DECODE_ERROR,
            error=f"internal error: {type(exc).__name__}: {exc}",
        )


def _source_of(url: object) -> str:
    return "file" if isinstance(url, str) and url.strip().lower().startswith("file:") else "http"


def empty_images_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in IMAGES_DTYPES.items()})


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
    missing = [c for c in ("uid", "url") if c not in pdf.columns]
    if missing:
        raise ValueError(f"process_batch input lacks columns {missing}")
    frame = pdf[[c for c in INPUT_COLUMNS if c in pdf.columns]]
    frame = frame[frame["uid"].notna()].drop_duplicates(subset="uid", keep="first")
    if len(frame) < len(pdf):
        logger.warning("dropped %d rows with a null or duplicate uid", len(pdf) - len(frame))
    hashes = (
        frame["sha256"]
        if "sha256" in frame.columns
        else pd.Series([None] * len(frame), index=frame.index)
    )
    items = list(zip(frame["uid"].astype(str), frame["url"], hashes, strict=True))
    if not items:
        out = empty_images_frame()
        return out

    started = time.monotonic()

    def work(item: tuple[str, object, object]) -> dict:
        return process_row(item[0], item[1], item[2], opts, shard_index)

    rows = list(map_bounded(work, items, opts.fetch.concurrency))
    out = pd.DataFrame(rows, columns=IMAGES_COLUMNS)
    out["run_id"] = run_id
    out = out.astype({c: t for c, t in IMAGES_DTYPES.items() if c != "fetched_at"})
    out["fetched_at"] = pd.to_datetime(out["fetched_at"], utc=True).astype(
        IMAGES_DTYPES["fetched_at"]
    )
    counts = collections.Counter(out["status"])
    logger.info(
        "fetch batch: %d rows in %.1fs (%s)",
        len(out),
        time.monotonic() - started,
        ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
    )
    return out
