"""How a model stage cuts its work into commits: sizes by time, cuts a replay repeats.

A chunk is what the model slots produce in about ``<stage>.commit_interval_s``
(``ChunkSizer``), from the rate measured in this run, else the rate the last run of
the same checkpoint saved (``kale-rate.json`` beside the checkpoint), else a warm-up
chunk of MIN_BATCHES_PER_TASK batches per slot. ``<stage>.rows_per_commit`` > 0
fixes the size instead. A chunk never holds fewer rows than every slot's
MIN_BATCHES_PER_TASK batches (so prefetch overlaps generation), except the last.

Chunks are ranges of a uid hash (``_h`` in [0, HASH_SPACE)): a micro-batch's cut is
a list of bounds, written to ``kale-chunks/<batch id>.json`` under the checkpoint
before the first chunk runs, so a replayed micro-batch is cut the same way whatever
the rate says then (``ChunkPlans``). Without a rate the cut is recorded in two steps:
the warm-up chunk, then (once it has run) the rest.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kale_spark.lake.tables import Lake

log = logging.getLogger(__name__)

LANES = 2  # chunks in flight: one commits while the next one's model runs
CHUNKS_PER_BATCH = 4  # a micro-batch holds about this many chunks
MIN_BATCHES_PER_TASK = 2
HASH_SPACE = 2**31 - 1
# A chunk's Delta transaction version: micro-batch id x this + chunk index.
CHUNKS_PER_VERSION = 1_000_000
RATE_FILE = "kale-rate.json"


def chunk_txn(app_id: str | None, batch_id: int, k: int) -> tuple[str, int] | None:
    """(txnAppId, txnVersion) of chunk `k` of micro-batch `batch_id`: one app id per
    lane, so each lane's versions rise in the order it commits them."""
    if app_id is None:
        return None
    return f"{app_id}:{k % LANES}", batch_id * CHUNKS_PER_VERSION + k


def files_for(nbytes: float, file_bytes: int) -> int:
    """Files for about `nbytes` of output: one up to `file_bytes`, then one per `file_bytes`."""
    return max(1, math.ceil(nbytes / file_bytes))


def even_bounds(parts: int) -> list[int]:
    """`parts` equal ranges of the hash space, as bounds [0, ..., HASH_SPACE]."""
    return [HASH_SPACE * i // parts for i in range(parts + 1)]


class ChunkSizer:
    """Rows per chunk and source files per micro-batch for one run of a model stage."""

    def __init__(
        self,
        *,
        slots: int,
        batch_size: int,
        interval_s: float,
        rows_per_commit: int = 0,
        files_per_trigger: int = 0,
        rows_per_file: float = 1.0,
        slot_rate: float | None = None,
    ) -> None:
        self.slots = max(1, slots)
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.rows_per_commit = rows_per_commit
        self.fixed_files = files_per_trigger
        self.rows_per_file = max(1.0, rows_per_file)
        self.prior_slot_rate = slot_rate  # rows/s per slot the last run measured
        self.files = 0  # files per micro-batch of the running query
        self._lock = threading.Lock()
        self._rows = 0
        self._first: float | None = None
        self._last: float | None = None
        self._checkpoint: str | None = None
        self._lake: Lake | None = None
        self._asked = False  # resize_after_first_batch answers once
        self._model_rows = 0
        self._model_ms = 0

    @classmethod
    def for_stage(cls, lake: Lake, stage: Any, checkpoint: str, n_candidates: int) -> ChunkSizer:
        spec = stage.spec
        saved = lake.read_text(f"{checkpoint}/{RATE_FILE}")
        rate = json.loads(saved).get("rows_per_s_per_slot") if saved else None
        sizer = cls(
            slots=stage.slots,
            batch_size=spec.batch_size,
            interval_s=spec.commit_interval_s,
            rows_per_commit=spec.rows_per_commit,
            files_per_trigger=spec.files_per_trigger,
            rows_per_file=n_candidates / max(1, lake.file_count(stage.source)),
            slot_rate=rate,
        )
        sizer._lake, sizer._checkpoint = lake, checkpoint
        return sizer

    # ------------------------------------------------------------ sizes

    @property
    def min_rows(self) -> int:
        return self.slots * MIN_BATCHES_PER_TASK * self.batch_size

    def rate(self) -> float | None:
        """Rows/s of the whole cluster: the slots' own rate in this run (rows over the
        seconds their tasks ran once the model was loaded, times the slots: Python
        worker starts and model loads do not count), else the last run's, else the wall
        rate of chunks."""
        with self._lock:
            if self._model_ms:
                return self._model_rows / (self._model_ms / 1000) * self.slots
        if self.prior_slot_rate:
            return self.prior_slot_rate * self.slots
        with self._lock:
            if self._rows and self._last is not None and self._last > self._first:
                return self._rows / (self._last - self._first)
        return None

    def observe(self, model_rows: int, model_ms: int) -> None:
        """What the model tasks did so far in this run (the workers' accumulator)."""
        with self._lock:
            self._model_rows, self._model_ms = model_rows, model_ms

    def chunk_rows(self) -> int:
        if self.rows_per_commit:
            return self.rows_per_commit
        rate = self.rate()
        if rate is None:
            return self.min_rows
        return max(self.min_rows, int(rate * self.interval_s))

    def chunks_for(self, rows: int) -> list[int]:
        """Hash bounds cutting a micro-batch of `rows` candidates into chunks. Without a
        rate yet, only a warm-up chunk of `min_rows`: bounds that end below HASH_SPACE,
        the rest to be cut by ``cut_rest`` once the warm-up chunk has given a rate."""
        if self.rows_per_commit or self.rate() is not None:
            return self.cut_rest(0, rows)
        if rows <= self.min_rows:
            return even_bounds(1)
        return [0, HASH_SPACE * self.min_rows // rows]

    def cut_rest(self, lo: int, rows: int) -> list[int]:
        """Bounds from `lo` to HASH_SPACE cutting about `rows` rows into chunks (one
        chunk while there is still no rate: a replay whose warm-up chunk was skipped)."""
        if self.rows_per_commit or self.rate() is not None:
            parts = max(1, math.ceil(max(rows, 1) / self.chunk_rows()))
        else:
            parts = 1
        return [lo + (HASH_SPACE - lo) * i // parts for i in range(parts + 1)]

    def files_per_trigger(self) -> int:
        if self.fixed_files:
            self.files = self.fixed_files
        elif not self.files:
            self.files = self._files_for(self.chunk_rows())
        return self.files

    def _files_for(self, chunk_rows: int) -> int:
        return max(1, math.ceil(CHUNKS_PER_BATCH * chunk_rows / self.rows_per_file))

    def resize_after_first_batch(self) -> int | None:
        """Files per micro-batch a restart should use, when the query was sized without
        a rate and the rate now asks for at least twice as many; else None."""
        if not self.may_resize():
            return None
        self._asked = True
        wanted = self._files_for(self.chunk_rows())
        return wanted if wanted >= 2 * self.files else None

    def may_resize(self) -> bool:
        """Whether the next query may end in the planned restart (a first run's)."""
        return not (self.fixed_files or self.rows_per_commit or self.prior_slot_rate or self._asked)

    def use_files(self, files: int) -> None:
        self.files = files
        self.prior_slot_rate = self.prior_slot_rate or (self.rate() or 0) / self.slots or None

    # ------------------------------------------------------------ measuring

    def record(self, rows: int, seconds: float) -> None:
        """A chunk of `rows` ended now after `seconds` (lanes overlap: the rate is rows
        over the span from the first chunk's start to the last one's end)."""
        now = time.monotonic()
        with self._lock:
            start = now - seconds
            self._first = start if self._first is None else min(self._first, start)
            self._last = now if self._last is None else max(self._last, now)
            self._rows += rows

    def save(self) -> None:
        """The measured rate beside the checkpoint, for the next run's first chunks."""
        rate = self.rate()
        if self._lake is None or rate is None or not self._rows:
            return
        text = json.dumps({"rows_per_s_per_slot": rate / self.slots, "slots": self.slots})
        self._lake.write_text(f"{self._checkpoint}/{RATE_FILE}", text)

    def describe(self) -> str:
        how = (
            "fixed" if self.rows_per_commit else f"~{self.interval_s:g}s of the {self.slots} slots"
        )
        files = self.files_per_trigger()
        return f"chunks of {self.chunk_rows()} rows ({how}), {files} files per batch"

    def metrics(self) -> dict[str, float]:
        rate = self.rate()
        return {
            "model_slots": float(self.slots),
            "chunk_rows": float(self.chunk_rows()),
            "files_per_batch": float(self.files),
            **({"model_rows_per_s": round(rate, 3)} if rate else {}),
        }


class ChunkPlans:
    """Each micro-batch's cut (hash bounds), kept under the checkpoint until the
    stream has moved past the micro-batch."""

    def __init__(self, lake: Lake, checkpoint: str) -> None:
        self.lake = lake
        self.dir = f"{checkpoint}/kale-chunks"

    def load(self, batch_id: int | None) -> list[int] | None:
        """The recorded cut of `batch_id` (a replay), else None."""
        if batch_id is None:
            return None
        saved = self.lake.read_text(self._path(batch_id))
        if saved is None:
            return None
        bounds = json.loads(saved)["bounds"]
        log.info("micro-batch %d replayed: its chunks as cut before", batch_id)
        return bounds

    def save(self, batch_id: int | None, bounds: list[int]) -> list[int]:
        """Record the cut of `batch_id` before any of its chunks runs; returns it."""
        if batch_id is not None:
            self.lake.write_text(self._path(batch_id), json.dumps({"bounds": bounds}))
        return bounds

    def _path(self, batch_id: int) -> str:
        return f"{self.dir}/{batch_id}.json"

    def forget(self, batch_id: int) -> None:
        if batch_id >= 0:
            self.lake.delete_path(self._path(batch_id))
