"""Training examples streamed from a Parquet snapshot, batch by batch, per rank.

train-student writes the training rows (uid, image, alt_text, caption) as a Parquet
snapshot of pinned Delta versions, in a fixed order, in several files. A training
process reads only its own files (``files[rank::world]``; with fewer files than
ranks, every rank reads all files and takes every world-th batch), a record batch
at a time through ``pyarrow.dataset``: memory holds one batch, never the table.

The stream is deterministic: batch ``k`` of a rank is the same on every run, so a
resumed run continues with the batch after its checkpoint (``skip_batches``).
Epochs repeat the same order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COLUMNS", "Example", "batches", "count_rows", "snapshot_files"]

COLUMNS = ("uid", "image", "alt_text", "caption")


@dataclass(frozen=True)
class Example:
    uid: str
    image: bytes
    alt_text: str
    caption: str


def snapshot_files(path: str | os.PathLike) -> list[str]:
    """The snapshot's Parquet files in name order (Spark's part-NNNNN order)."""
    return sorted(str(p) for p in Path(path).glob("*.parquet"))


def _rank_files(path: str | os.PathLike, rank: int, world: int) -> tuple[list[str], bool]:
    files = snapshot_files(path)
    if len(files) >= world:
        return files[rank::world], False
    return files, True


def count_rows(path: str | os.PathLike, rank: int = 0, world: int = 1) -> int:
    """Rows this rank sees per epoch (from the Parquet footers; no data read)."""
    import pyarrow.dataset as ds

    files, strided = _rank_files(path, rank, world)
    if not files:
        return 0
    n = ds.dataset(files, format="parquet").count_rows()
    return n // world + (1 if rank < n % world else 0) if strided else n


def _rows(files: list[str], rank: int, world: int, strided: bool, start: int) -> Iterator[Example]:
    """This rank's rows from its ``start``-th on; record batches wholly before it are
    skipped without converting them."""
    import pyarrow.dataset as ds

    dataset = ds.dataset(files, format="parquet")
    first = start * world if strided else start  # index over the files' rows
    index = 0
    for record_batch in dataset.to_batches(columns=list(COLUMNS), batch_size=256):
        n = record_batch.num_rows
        if index + n <= first:
            index += n
            continue
        for j, row in enumerate(record_batch.to_pylist()):
            g = index + j
            if g < first or (strided and g % world != rank):
                continue
            yield Example(row["uid"], row["image"], row["alt_text"] or "", row["caption"])
        index += n


def batches(
    path: str | os.PathLike,
    batch_size: int,
    *,
    rank: int = 0,
    world: int = 1,
    skip_batches: int = 0,
    epochs: int | None = None,
) -> Iterator[list[Example]]:
    """Batches of this rank's rows, epoch after epoch (``epochs=None``: forever),
    starting after ``skip_batches`` batches. An epoch's short last batch is kept, so
    an epoch is ``ceil(rows / batch_size)`` batches."""
    files, strided = _rank_files(path, rank, world)
    n = count_rows(path, rank, world) if files else 0
    if n == 0:
        return
    per_epoch = -(-n // batch_size)
    epoch, within = divmod(skip_batches, per_epoch)
    start = within * batch_size
    while epochs is None or epoch < epochs:
        batch: list[Example] = []
        for example in _rows(files, rank, world, strided, start):
            batch.append(example)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
        start = 0
        epoch += 1
