"""Compare two versions of a Delta table by key: rows added, removed and changed.

    result = diff_versions(lake, "kale", 3, 5)
    result.added, result.removed, result.changed    # sorted uids

The answer always comes from the two snapshots (Delta time travel): a full outer join
by key comparing a hash of the columns both versions have. When the table records its
change data feed over the whole range, the feed first narrows the comparison to the
keys that some commit in between touched (OPTIMIZE rewrites files but records no
changes), so a small release diff does not hash the whole table. Either way the
result is the net change between the versions: a row inserted and deleted in between
is in neither list, a row updated back to its old values is not "changed".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kale_spark.lake.tables import Lake

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

log = logging.getLogger(__name__)

ADDED = "added"
REMOVED = "removed"
CHANGED = "changed"


@dataclass(frozen=True)
class DiffResult:
    table: str
    from_version: int
    to_version: int
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    method: str  # "cdf" (narrowed by the change data feed) or "snapshot"

    def summary(self, limit: int = 20) -> str:
        lines = [
            f"{self.table}: v{self.from_version} -> v{self.to_version} ({self.method}): "
            f"{len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed"
        ]
        for label, uids in ((ADDED, self.added), (REMOVED, self.removed), (CHANGED, self.changed)):
            for uid in uids[:limit]:
                lines.append(f"  {label:<8} {uid}")
            if len(uids) > limit:
                lines.append(f"  {label:<8} ... {len(uids) - limit} more")
        return "\n".join(lines)


def row_hash(columns: list[str]) -> Column:
    """A hash of `columns` (by name, in the order given): equal rows, equal hashes."""
    from pyspark.sql import functions as F

    return F.sha2(F.to_json(F.struct(*[F.col(c) for c in columns])), 256)


def _touched_keys(lake: Lake, table: str, v1: int, v2: int, key: str) -> DataFrame | None:
    """Keys some commit in (v1, v2] changed, from the change data feed; None when the
    feed does not cover the range (not enabled, or enabled later)."""
    if v2 <= v1:
        return None
    try:
        touched = lake.read_changes(table, v1 + 1, v2).select(key).distinct()
        touched.take(1)  # surfaces "change data not recorded" now, not mid-join
        return touched
    except Exception as exc:  # AnalysisException / DeltaAnalysisException: fall back
        log.info("diff %s: no change data feed for v%d..v%d (%s)", table, v1 + 1, v2, exc)
        return None


def diff_frame(lake: Lake, table: str, v1: int, v2: int, key: str = "uid") -> tuple[DataFrame, str]:
    """(`key`, `change`) rows for every key that differs between versions v1 and v2,
    and the method used. `change` is added / removed / changed."""
    from pyspark.sql import functions as F

    old = lake.read(table, version=v1)
    new = lake.read(table, version=v2)
    common = sorted(set(old.columns) & set(new.columns) - {key})
    method = "snapshot"
    touched = _touched_keys(lake, table, v1, v2, key)
    if touched is not None:
        method = "cdf"
        old = old.join(touched, key, "left_semi")
        new = new.join(touched, key, "left_semi")
    a = old.select(key, row_hash(common).alias("h_old"))
    b = new.select(key, row_hash(common).alias("h_new"))
    change = (
        F.when(F.col("h_old").isNull(), F.lit(ADDED))
        .when(F.col("h_new").isNull(), F.lit(REMOVED))
        .when(F.col("h_old") != F.col("h_new"), F.lit(CHANGED))
    )
    out = a.join(b, key, "full_outer").select(key, change.alias("change"))
    return out.where(F.col("change").isNotNull()), method


def diff_counts(lake: Lake, table: str, v1: int, v2: int, key: str = "uid") -> dict[str, int]:
    """How many keys were added, removed and changed between v1 and v2."""
    frame, _ = diff_frame(lake, table, v1, v2, key)
    counts = {ADDED: 0, REMOVED: 0, CHANGED: 0}
    for row in frame.groupBy("change").count().collect():
        counts[row["change"]] = int(row["count"])
    return counts


def diff_versions(lake: Lake, table: str, v1: int, v2: int, key: str = "uid") -> DiffResult:
    """The keys added, removed and changed from version v1 to version v2 (sorted)."""
    for v in (v1, v2):
        if v < 0:
            raise ValueError(f"table versions are >= 0, got {v}")
    latest = lake.version(table)
    if latest is None:
        raise LookupError(f"no table {table!r} under {lake.root}")
    if max(v1, v2) > latest:
        raise ValueError(f"{table} has versions 0..{latest}, asked for {max(v1, v2)}")
    frame, method = diff_frame(lake, table, v1, v2, key)
    by_change: dict[str, list[str]] = {ADDED: [], REMOVED: [], CHANGED: []}
    for row in frame.orderBy(key).collect():
        by_change[row["change"]].append(row[key])
    return DiffResult(
        table=table,
        from_version=v1,
        to_version=v2,
        added=tuple(by_change[ADDED]),
        removed=tuple(by_change[REMOVED]),
        changed=tuple(by_change[CHANGED]),
        method=method,
    )
