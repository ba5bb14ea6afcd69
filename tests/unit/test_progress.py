"""The progress reporter every long stage shares (kale_spark/lake/progress.py)."""

from __future__ import annotations

import logging
import time

import pytest

from kale_spark.config import ConfigError, load_config
from kale_spark.lake.progress import Progress, format_eta


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_line_has_done_total_rate_eta_and_outcomes() -> None:
    clock = FakeClock()
    p = Progress("caption", 100, clock=clock, bar=False)
    clock.now += 16.0
    p.add({"generated": 30, "failed": 2})
    # 32 rows in 16 s = 2 rows/s; 68 left → 34 s.
    assert p.line() == (
        "[caption] 32/100 rows (32%), 2.00 rows/s, eta 34s, elapsed 16s  failed=2 generated=30"
    )
    assert p.counts() == {
        "progress.done": 32,
        "progress.total": 100,
        "progress.failed": 2,
        "progress.generated": 30,
    }
    assert p.metrics() == {"rows_per_s": 2.0, "elapsed_s": 16.0}


def test_poll_is_read_on_every_snapshot_and_added_to_driver_counts() -> None:
    clock = FakeClock()
    polled = {"ok": 5}
    p = Progress("fetch", None, clock=clock, poll=lambda: polled, bar=False)
    p.add({"ok": 1})
    assert p.done == 6
    polled = {"ok": 9, "timeout": 1}
    assert p.outcomes() == {"ok": 10, "timeout": 1}
    clock.now += 5
    assert p.line().startswith("[fetch] 11/? rows, 2.20 rows/s, eta ?")


def test_a_failing_poll_keeps_the_last_figures() -> None:
    values = iter([{"ok": 3}])

    def poll():
        return next(values)  # raises StopIteration the second time

    p = Progress("fetch", 10, poll=poll, bar=False)
    assert p.done == 3
    assert p.done == 3


def test_eta_format() -> None:
    assert [format_eta(s) for s in (0, 59.6, 61, 3600, 7322)] == [
        "0s",
        "1m00s",
        "1m01s",
        "1h00m",
        "2h02m",
    ]


def test_interval_is_bounded_so_long_stages_log_at_least_every_30s() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        Progress("x", 1, interval_s=31)
    with pytest.raises(ConfigError, match="progress.interval_s"):
        load_config(None, ["progress.interval_s=45"])
    assert load_config(None, []).progress.interval_s <= 30


def test_the_reporter_thread_logs_at_its_interval(caplog) -> None:
    caplog.set_level(logging.INFO, logger="kale_spark.lake.progress")
    p = Progress("caption", 10, interval_s=0.02, bar=False)
    with p:
        p.add({"generated": 4})
        deadline = time.monotonic() + 30  # generous: waits for lines, never times them
        while p.lines_logged < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p.lines_logged >= 3
    lines = [r.getMessage() for r in caplog.records if r.name == "kale_spark.lake.progress"]
    assert len(lines) >= 4  # the ticks plus the final line on exit
    assert all(line.startswith("[caption] 4/10 rows (40%)") for line in lines)
