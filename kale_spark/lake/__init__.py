"""The Delta layer: the only code that reads or writes Delta tables directly.

    tables.py      ``Lake``: table paths, the catalog database, reads, appends, MERGE,
                   commit metadata (``from kale_spark.lake import Lake, WriteResult``)
    contracts.py   each stage's declared reads and writes, checked on every write
    runs.py        the ``runs`` table and ``stage_run`` (one row per stage run)
    progress.py    the one progress reporter of long stages
    versioning.py  table versions, ``VERSION AS OF`` diffs
    connect.py     Spark Connect refused at start (``Lake`` needs a driver JVM)
    lock.py        the lake's run lock: one run per lake (``LakeBusy`` names the holder)
    frames.py      small driver-side rows as local relations (no Spark job to convert them)
    checksum.py    a small plain table's files from its version checksum (``Lake.read_latest``:
                   no log replay in Spark jobs)

May import: the core modules (config, schema, hashing). Stages, release and the CLI
import it; it imports none of them.

``Lake`` and ``WriteResult`` load on first use: files.py (atomic directory writes) is
used by the model code too, which runs where there is no pyspark (a GPU machine).
"""

from typing import Any

__all__ = ["Lake", "WriteResult"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kale_spark.lake import tables

        return getattr(tables, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
