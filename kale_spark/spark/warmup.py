"""Start a stage's Python workers while the driver plans.

A Spark task's first Python worker forks, then imports pyspark's worker, pandas,
pyarrow and the stage's own modules: about a second of CPU before its first row,
paid by every core's first task. With ``spark.python.worker.reuse`` (every kale
profile sets it) a worker that finished a task waits for the next one, so a tiny
mapInPandas job that imports the stage's modules, started in a thread at the
stage's start, leaves one ready worker per core by the time the driver has
planned the stage's own job (Delta snapshots, counts: seconds on a fresh JVM).

It is an optimisation only: a warm-up that fails or is still running never fails
or blocks the stage. The job uses mapInPandas, as the stages do: an RDD job's
Python workers come from another daemon and would not be reused.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# The session property `spark.warm_workers` sets (spark/session.py).
WARM_WORKERS_KEY = "spark.kale.warmWorkers"


def _import_fn(modules: tuple[str, ...], then: Callable[[], object] | None = None):
    def warm(batches):
        import importlib
        import os

        import pandas as pd

        for name in modules:
            importlib.import_module(name)
        if then is not None:
            then()
        for _ in batches:
            pass
        yield pd.DataFrame({"pid": [os.getpid()]})

    return warm


class Warmup:
    """The warm-up job's thread; ``pids`` (the workers it started) or ``error`` once done."""

    def __init__(
        self,
        spark: SparkSession,
        modules: tuple[str, ...],
        tasks: int,
        then: Callable[[], object] | None = None,
    ) -> None:
        self.pids: set[int] = set()
        self.error: str | None = None
        self._thread = threading.Thread(
            target=self._run, args=(spark, modules, tasks, then), name="kale-warmup", daemon=True
        )
        self._thread.start()

    def _run(self, spark: SparkSession, modules: tuple[str, ...], tasks: int, then) -> None:
        try:
            spark.sparkContext.setJobDescription("warm-up: start the Python workers")
            warm = _import_fn(modules, then)
            frame = spark.range(0, tasks, 1, tasks).mapInPandas(warm, "pid long")
            self.pids = {r["pid"] for r in frame.collect()}
            log.debug("warmed %d Python workers (%s)", len(self.pids), ", ".join(modules))
        except Exception as exc:  # an optimisation: never the stage's failure
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("Python worker warm-up failed (the tasks start them): %s", self.error)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job; True once it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


def warm_python_workers(
    spark: SparkSession, modules: tuple[str, ...], then: Callable[[], object] | None = None
) -> Warmup | None:
    """Start the warm-up job (one task per core) in a daemon thread; each task imports
    `modules` and calls `then` (a model stage loads its model into the worker's cache).
    None where there is nothing to warm: no SparkContext (Spark Connect: workers live
    server-side), no worker reuse (a finished worker exits) or `spark.warm_workers` off."""
    try:
        sc = spark.sparkContext
    except Exception:  # Spark Connect
        return None
    conf = sc.getConf()
    if conf.get("spark.python.worker.reuse", "true").lower() != "true":
        return None
    if conf.get(WARM_WORKERS_KEY, "true").lower() == "false":
        return None
    return Warmup(spark, modules, max(1, sc.defaultParallelism), then)
