"""Training examples from a Parquet snapshot: equal row shares per rank, a seeded
reshuffle every epoch, worker processes that prepare batches, positions to resume at.

The snapshot (train-student writes one per data key) has a manifest beside its files:
for each split, the row groups of its Parquet files and their row counts, read from
the footers once when the snapshot is written. Everything a rank plans comes from the
manifest: deciding what to read never reads data.

Epoch order. Epoch ``e`` puts the split's row groups in an order seeded with
``(seed, e)`` and the rows of each group in an order seeded with ``(seed, e, group)``;
the epoch is that sequence of rows. Rank ``r`` of ``W`` takes the ``r``-th of ``W``
equal contiguous ranges of it: ``rows // W`` rows each, so every rank trains on the
same number of rows; the ``rows % W`` rows at the end of the order sit the epoch out,
a different few each epoch. A contiguous range means a rank reads about ``1/W`` of
the row groups, never every row. Batches are consecutive ``batch_size`` slices of the
range; an epoch's short last batch is kept, so all ranks take the same number of
steps per epoch.

Position. After ``b`` batches a rank is at ``(epoch, index)`` of its range, which is
``(file, row group, offset)`` in that epoch's order. A checkpoint stores each rank's
position; a resume plans from it (``RankPlan.seek``) and reads nothing before it.

Loader. ``loader()`` is a torch DataLoader over batch numbers ``b, b + 1, ...``:
worker processes read the row groups a batch needs (each keeps its last two), decode,
preprocess and tokenize it (``encode``), and prepare ``prefetch`` batches ahead; on
CUDA the batches come in pinned memory. Batch ``b`` is the same whatever the worker
count, so the order does not depend on ``student.train.loader_workers``.
"""

from __future__ import annotations

import bisect
import functools
import json
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "COLUMNS",
    "MANIFEST",
    "Example",
    "Position",
    "RankPlan",
    "RowGroup",
    "SnapshotBatches",
    "arrow_location",
    "build_manifest",
    "loader",
    "read_manifest",
    "split_groups",
    "write_manifest",
    "write_snapshot",
]

COLUMNS = ("uid", "image", "alt_text", "caption")
MANIFEST = "manifest.json"
SPLITS = ("train", "val")
# Schemes Spark (Hadoop) names differently from pyarrow: the same store.
_ARROW_ALIASES = {"s3a": "s3", "s3n": "s3"}


@dataclass(frozen=True)
class Example:
    uid: str
    image: bytes
    alt_text: str
    caption: str


@dataclass(frozen=True)
class RowGroup:
    file: str  # relative to the snapshot's root
    index: int  # row group within the file
    rows: int


@dataclass(frozen=True)
class Position:
    """Where a rank's next batch starts: epoch, rows of its range already taken, and
    the same point as (file, row group, offset in that group's epoch order)."""

    epoch: int
    index: int
    file: str
    row_group: int
    offset: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------- the location


def arrow_location(uri: str) -> tuple[Any, str]:
    """``(pyarrow filesystem, path)`` for a snapshot URI (``file://``, ``s3://`` or
    Spark's ``s3a://``, ``gs://``, ``hdfs://``, ``abfs://`` ...). ``ValueError`` naming
    the URI when pyarrow cannot open it: the trainers read through pyarrow."""
    from pyarrow import fs

    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"snapshot location {uri!r} has no scheme (file://, s3://, ...)")
    arrow_uri = f"{_ARROW_ALIASES.get(scheme, scheme)}://{rest}"
    try:
        return fs.FileSystem.from_uri(arrow_uri)
    except Exception as exc:
        raise ValueError(
            f"the trainers cannot open the snapshot location {uri!r} ({exc}); use a URI "
            "pyarrow opens that Spark can write too, e.g. file:///dbfs/... or s3://..."
        ) from exc


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


def write_manifest(uri: str, manifest: dict[str, Any]) -> None:
    filesystem, root = arrow_location(uri)
    with filesystem.open_output_stream(_join(root, MANIFEST)) as out:
        out.write(json.dumps(manifest, indent=1, sort_keys=True).encode())


def read_manifest(uri: str) -> dict[str, Any] | None:
    """The snapshot's manifest, or None where there is none (yet)."""
    from pyarrow import fs

    filesystem, root = arrow_location(uri)
    path = _join(root, MANIFEST)
    if filesystem.get_file_info(path).type != fs.FileType.File:
        return None
    with filesystem.open_input_stream(path) as f:
        return json.loads(f.read())


def split_groups(manifest: dict[str, Any], split: str) -> list[RowGroup]:
    return [RowGroup(*g) for g in manifest["splits"][split]["groups"]]


def _footer_groups(filesystem: Any, path: str, name: str) -> list[list[Any]]:
    import pyarrow.parquet as pq

    with filesystem.open_input_file(path) as f:
        meta = pq.ParquetFile(f).metadata
    rows = (meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    return [[name, i, n] for i, n in enumerate(rows) if n]


def build_manifest(uri: str, splits: Iterable[str] = SPLITS, **info: Any) -> dict[str, Any]:
    """The manifest of the Parquet files under ``<uri>/split=<name>/``: each split's row
    groups in file-name order and its rows, read from the footers; ``info`` is kept."""
    from concurrent.futures import ThreadPoolExecutor

    from pyarrow import fs

    filesystem, root = arrow_location(uri)
    out: dict[str, Any] = {"format": 1, **info, "splits": {}}
    for split in splits:
        selector = fs.FileSelector(_join(root, f"split={split}"), allow_not_found=True)
        paths = sorted(
            i.path for i in filesystem.get_file_info(selector) if i.path.endswith(".parquet")
        )
        names = [p[len(root.rstrip("/")) + 1 :] for p in paths]
        with ThreadPoolExecutor(16) as pool:  # footers of remote stores: latency-bound
            per_file = list(
                pool.map(lambda a: _footer_groups(filesystem, *a), zip(paths, names, strict=True))
            )
        groups = [g for file_groups in per_file for g in file_groups]
        out["splits"][split] = {"rows": sum(g[2] for g in groups), "groups": groups}
    return out


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("uid", pa.string()),
            ("image", pa.binary()),
            ("alt_text", pa.string()),
            ("caption", pa.string()),
        ]
    )


def write_snapshot(
    uri: str, splits: dict[str, list[Example]], rows_per_group: int, **info: Any
) -> dict[str, Any]:
    """A snapshot of examples held in memory (tests, benches), laid out as Spark's
    writer lays it out, with its manifest; returns the manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    filesystem, root = arrow_location(uri)
    for split, examples in splits.items():
        filesystem.create_dir(_join(root, f"split={split}"))
        table = pa.Table.from_pylist([asdict(e) for e in examples], schema=_schema())
        with filesystem.open_output_stream(_join(root, f"split={split}/part-00000.parquet")) as f:
            pq.write_table(table, f, row_group_size=rows_per_group)
    manifest = build_manifest(uri, splits, **info)
    write_manifest(uri, manifest)
    return manifest


# ------------------------------------------------------------------------- the plan


@functools.lru_cache(maxsize=256)
def _order(n: int, seed: str) -> tuple[int, ...]:
    """A permutation of range(n) from a string seed (the same in every process)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return tuple(order)


class RankPlan:
    """Which rows one rank reads, batch by batch, epoch after epoch (module docstring).

    ``equal=False`` (validation) splits the rows into ``W`` near-equal ranges that
    together hold every row, instead of equal ranges that may leave a few out.
    """

    def __init__(
        self,
        groups: list[RowGroup],
        rank: int,
        world: int,
        batch_size: int,
        seed: int,
        *,
        shuffle: bool = True,
        equal: bool = True,
    ) -> None:
        self.groups, self.batch_size, self.seed, self.shuffle = groups, batch_size, seed, shuffle
        total = sum(g.rows for g in groups)
        if equal:
            self.share = total // world
            self.first = rank * self.share
        else:
            self.first = rank * total // world
            self.share = (rank + 1) * total // world - self.first
        self.batches_per_epoch = -(-self.share // batch_size)
        self._epochs: OrderedDict[int, tuple[tuple[int, ...], list[int]]] = OrderedDict()

    def _epoch(self, epoch: int) -> tuple[tuple[int, ...], list[int]]:
        """(group order, cumulative rows before each group in that order)."""
        if epoch not in self._epochs:
            n = len(self.groups)
            order = _order(n, f"{self.seed}:{epoch}") if self.shuffle else tuple(range(n))
            starts, total = [], 0
            for gi in order:
                starts.append(total)
                total += self.groups[gi].rows
            self._epochs[epoch] = (order, starts)
            while len(self._epochs) > 2:
                self._epochs.popitem(last=False)
        return self._epochs[epoch]

    def _locate(self, epoch: int, row: int) -> tuple[int, int]:
        """Row ``row`` of the epoch's order → (group, offset in the group's order)."""
        order, starts = self._epoch(epoch)
        j = bisect.bisect_right(starts, row) - 1  # manifests hold no empty groups
        return order[j], row - starts[j]

    def row_in_group(self, epoch: int, group: int, offset: int) -> int:
        """The stored row of ``group`` that sits at ``offset`` in the epoch's order."""
        if not self.shuffle:
            return offset
        return _order(self.groups[group].rows, f"{self.seed}:{epoch}:{group}")[offset]

    def _split(self, b: int) -> tuple[int, int]:
        if self.batches_per_epoch == 0:
            raise ValueError("this rank has no rows to read")
        epoch, k = divmod(b, self.batches_per_epoch)
        return epoch, k * self.batch_size

    def batch_rows(self, b: int) -> list[tuple[int, int]]:
        """Batch ``b`` of this rank: ``(group, stored row)`` per example, in order."""
        epoch, lo = self._split(b)
        hi = min(lo + self.batch_size, self.share)
        out = []
        for i in range(lo, hi):
            group, offset = self._locate(epoch, self.first + i)
            out.append((group, self.row_in_group(epoch, group, offset)))
        return out

    def position(self, b: int) -> Position:
        """Where this rank stands after ``b`` batches."""
        epoch, index = self._split(b)
        group, offset = self._locate(epoch, self.first + index)
        g = self.groups[group]
        return Position(epoch, index, g.file, g.index, offset)

    def seek(self, position: dict[str, Any]) -> int:
        """The batch number a checkpointed position resumes at; ``ValueError`` when the
        position is not one this plan reaches (another snapshot, world or batch size)."""
        b = position["epoch"] * self.batches_per_epoch + position["index"] // self.batch_size
        if self.position(b).to_dict() != dict(position):
            raise ValueError(
                f"checkpoint position {position} is not on this rank's plan "
                f"({self.position(b).to_dict()}): the snapshot or the ranks changed"
            )
        return b


# ----------------------------------------------------------------------- the reader


class SnapshotBatches:
    """Map-style dataset: batch number → ``encode(examples)`` (what the loader's workers
    run). Reads whole row groups (columns ``COLUMNS`` only) and keeps the last two."""

    def __init__(
        self, uri: str, plan: RankPlan, encode: Callable[[list[Example]], dict[str, Any]]
    ) -> None:
        self.uri, self.plan, self.encode = uri, plan, encode
        self._fs: Any = None
        self._root = ""
        self._tables: OrderedDict[int, Any] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        # A worker opens its own filesystem and starts with an empty cache.
        return {**self.__dict__, "_fs": None, "_tables": OrderedDict()}

    def _table(self, group: int) -> Any:
        import pyarrow.parquet as pq

        if group in self._tables:
            self._tables.move_to_end(group)
            return self._tables[group]
        if self._fs is None:
            self._fs, self._root = arrow_location(self.uri)
        g = self.plan.groups[group]
        with self._fs.open_input_file(_join(self._root, g.file)) as f:
            table = pq.ParquetFile(f).read_row_group(g.index, columns=list(COLUMNS))
        self._tables[group] = table
        while len(self._tables) > 2:
            self._tables.popitem(last=False)
        return table

    def examples(self, b: int) -> list[Example]:
        out = []
        for group, row in self.plan.batch_rows(b):
            r = self._table(group).slice(row, 1).to_pylist()[0]
            out.append(Example(r["uid"], r["image"], r["alt_text"] or "", r["caption"]))
        return out

    def __getitem__(self, b: int) -> dict[str, Any]:
        return self.encode(self.examples(b))


def loader(
    batches: SnapshotBatches,
    start: int,
    *,
    workers: int,
    prefetch: int,
    pin_memory: bool,
    seed: int,
    stop: int | None = None,
) -> Iterable[dict[str, Any]]:
    """Batches ``start, start + 1, ...`` (up to ``stop``, else without end) through a
    DataLoader with ``workers`` processes (0: in this thread)."""
    import itertools

    import torch
    from torch.utils.data import DataLoader

    numbers: Iterable[int] = itertools.count(start) if stop is None else range(start, stop)
    extra = {"prefetch_factor": prefetch} if workers else {}
    return DataLoader(
        batches,
        batch_size=None,  # an item is a whole encoded batch
        sampler=numbers,
        num_workers=workers,
        pin_memory=pin_memory,
        # Its own generator: making the iterator must not draw from torch's global RNG,
        # or a resumed run's random stream would drift from an uninterrupted one's.
        generator=torch.Generator().manual_seed(seed),
        **extra,
    )
