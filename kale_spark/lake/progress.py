"""One progress reporter for every long stage: rows done/total, rate, ETA, outcomes.

    with Progress("caption", total=n, interval_s=10) as progress:
        ...
        progress.add({"generated": 30, "failed": 2})   # from the driver, after a commit
    run.counts.update(progress.counts())                # the same figures in `runs`
    run.metrics.update(progress.metrics())

Figures come either from the driver (`add`, e.g. after each chunk commits) or from a
`poll` callable read on every tick (e.g. a Spark accumulator that executors add to as
their batches finish). A daemon thread logs one line every `interval_s` seconds and,
when the driver's stderr is a terminal, keeps a live tqdm bar. Logging never raises
into the stage.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from kale_spark.config import MAX_INTERVAL_S  # a long stage logs at least this often

log = logging.getLogger(__name__)

__all__ = ["Progress", "counter_accumulator", "format_eta"]


def format_eta(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12s``; ``?`` when unknown.

    >>> format_eta(3725), format_eta(185), format_eta(12.4), format_eta(None)
    ('1h02m', '3m05s', '12s', '?')
    """
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Counts outcomes of one long step and reports them at a steady interval.

    ``done`` is the sum of all outcome counts; ``total`` may be unknown (``None``) or
    set later with ``set_total``. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        stage: str,
        total: int | None = None,
        *,
        interval_s: float = 10.0,
        poll: Callable[[], Mapping[str, int]] | None = None,
        bar: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < interval_s <= MAX_INTERVAL_S:
            raise ValueError(f"interval_s must be in (0, {MAX_INTERVAL_S}], got {interval_s}")
        self.stage = stage
        self.total = total
        self.interval_s = interval_s
        self._poll = poll
        self._clock = clock
        self._lock = threading.Lock()
        self._added: Counter[str] = Counter()
        self._polled: Counter[str] = Counter()
        self._start = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: Any = None
        self._want_bar = sys.stderr.isatty() if bar is None else bar
        self.lines_logged = 0

    # ------------------------------------------------------------------ figures

    def add(self, counts: Mapping[str, int]) -> None:
        with self._lock:
            self._added.update({k: int(v) for k, v in counts.items() if v})

    def set_total(self, total: int | None) -> None:
        self.total = total

    def outcomes(self) -> Counter[str]:
        """Counts by outcome: what was added plus the latest poll."""
        if self._poll is not None:
            try:
                polled = Counter({k: int(v) for k, v in self._poll().items()})
            except Exception:  # a poll that fails must not stop the stage
                log.debug("progress poll failed", exc_info=True)
            else:
                with self._lock:
                    self._polled = polled
        with self._lock:
            return self._added + self._polled

    @property
    def done(self) -> int:
        return sum(self.outcomes().values())

    def elapsed_s(self) -> float:
        return max(self._clock() - self._start, 1e-9)

    def snapshot(self) -> dict[str, Any]:
        outcomes = self.outcomes()
        done = sum(outcomes.values())
        elapsed = self.elapsed_s()
        rate = done / elapsed
        eta = None
        if self.total is not None and rate > 0:
            eta = max(self.total - done, 0) / rate
        return {
            "done": done,
            "total": self.total,
            "rate": rate,
            "eta_s": eta,
            "elapsed_s": elapsed,
            "outcomes": dict(sorted(outcomes.items())),
        }

    def line(self) -> str:
        s = self.snapshot()
        total = "?" if s["total"] is None else s["total"]
        pct = ""
        if s["total"]:
            pct = f" ({100.0 * s['done'] / s['total']:.0f}%)"
        outcomes = " ".join(f"{k}={v}" for k, v in s["outcomes"].items())
        return (
            f"[{self.stage}] {s['done']}/{total} rows{pct}, {s['rate']:.2f} rows/s, "
            f"eta {format_eta(s['eta_s'])}, elapsed {format_eta(s['elapsed_s'])}"
            + (f"  {outcomes}" if outcomes else "")
        )

    def counts(self) -> dict[str, int]:
        """Integer figures for `runs.counts`: ``progress.done``, ``progress.total``, outcomes."""
        s = self.snapshot()
        out = {"progress.done": s["done"]}
        if s["total"] is not None:
            out["progress.total"] = int(s["total"])
        out.update({f"progress.{k}": v for k, v in s["outcomes"].items()})
        return out

    def metrics(self) -> dict[str, float]:
        """Float figures for `runs.metrics`: rate and elapsed seconds."""
        s = self.snapshot()
        return {"rows_per_s": round(s["rate"], 4), "elapsed_s": round(s["elapsed_s"], 3)}

    # ------------------------------------------------------------------ reporting

    def report(self) -> None:
        """Log one line now (and refresh the bar)."""
        try:
            log.info("%s", self.line())
            self.lines_logged += 1
            self._refresh_bar()
        except Exception:  # reporting must never break the stage
            log.debug("progress report failed", exc_info=True)

    def _refresh_bar(self) -> None:
        if not self._want_bar:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=self.stage, unit="row", leave=True)
        s = self.snapshot()
        if self.total is not None and self._bar.total != self.total:
            self._bar.total = self.total
        self._bar.n = s["done"]
        self._bar.set_postfix_str(" ".join(f"{k}={v}" for k, v in s["outcomes"].items()))
        self._bar.refresh()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.report()

    def __enter__(self) -> Progress:
        self._start = self._clock()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"progress-{self.stage}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.report()  # the final figures, always
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def counter_accumulator(spark: Any) -> Any:
    """A Spark accumulator of ``Counter``s: executors ``add(Counter(...))``; the driver
    reads ``.value`` (updated as tasks finish). Use as ``Progress(poll=lambda: acc.value)``."""
    from pyspark.accumulators import AccumulatorParam

    class CounterParam(AccumulatorParam):
        def zero(self, value: Counter) -> Counter:
            return Counter()

        def addInPlace(self, a: Counter, b: Counter) -> Counter:
            a.update(b)
            return a

    return spark.sparkContext.accumulator(Counter(), CounterParam())
