"""The fetch stage's task sizing and its status counts (pure functions; no Spark)."""

from __future__ import annotations

from collections import Counter

import pytest

from kale_spark.lake.tables import WriteResult
from kale_spark.stages.fetch import _written_statuses, task_count


@pytest.mark.parametrize(
    ("rows", "rows_per_task", "cores", "tasks"),
    [
        (3000, 1000, 2, 4),  # 3 tasks would leave a core idle while the third runs
        (3000, 1500, 2, 2),
        (10, 1000, 2, 2),  # every core busy even for a few rows
        (1, 1000, 4, 4),
        (8001, 1000, 8, 16),  # a multiple of the cores, none over rows_per_task
        (5, 1, 1, 5),
        (5, 1, 0, 5),  # no parallelism reported: one core
    ],
)
def test_task_count_is_a_multiple_of_the_cores(rows, rows_per_task, cores, tasks) -> None:
    assert task_count(rows, rows_per_task, cores) == tasks


def test_written_statuses_when_the_tasks_account_for_every_appended_row() -> None:
    counted = Counter(ok=7, timeout=2, http_error=0)
    appended = WriteResult("images", 3, rows_inserted=9)
    assert _written_statuses(counted, appended) == {"ok": 7, "timeout": 2}


@pytest.mark.parametrize(
    "written",
    [
        WriteResult("images", 3, rows_inserted=10),  # a task's rows counted twice or lost
        WriteResult("images", 3, rows_inserted=5, rows_updated=4),  # a MERGE replaced rows
        WriteResult("images", 2, rows_inserted=0, committed=False),
    ],
)
def test_written_statuses_none_when_the_counts_cannot_be_trusted(written) -> None:
    assert _written_statuses(Counter(ok=7, timeout=2), written) is None
