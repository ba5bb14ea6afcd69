"""The Python-worker warm-up a stage starts while its driver plans (kale_spark/spark/warmup.py)."""

from __future__ import annotations

from kale_spark.spark.warmup import warm_python_workers


def _worker_state(spark, module: str) -> list[tuple[int, bool]]:
    """(pid, module already imported?) from each task of a mapInPandas job.

    Spark hands out idle workers oldest first and puts a finished one at the back, so
    16 tasks on 2 slots cycle through the idle workers (other tests leave some) and
    reach the ones the warm-up started."""

    def probe(batches):
        import os
        import sys

        import pandas as pd

        for _ in batches:
            pass
        yield pd.DataFrame({"pid": [os.getpid()], "loaded": [module in sys.modules]})

    rows = spark.range(0, 16, 1, 16).mapInPandas(probe, "pid long, loaded boolean").collect()
    return [(r["pid"], r["loaded"]) for r in rows]


def test_warmed_workers_are_reused_with_the_modules_already_imported(spark):
    # A module no other test imports in a worker: its presence proves the warm-up did it.
    module = "kale_spark.release.card"
    warm = warm_python_workers(spark, (module,))
    assert warm is not None
    assert warm.join(timeout=120)
    assert warm.error is None
    assert len(warm.pids) >= 1
    state = _worker_state(spark, module)
    # Idle workers are reused: a task that lands on a warmed worker finds the module.
    assert any(pid in warm.pids and loaded for pid, loaded in state), (state, warm.pids)


def test_a_failing_warm_up_is_recorded_never_raised(spark):
    warm = warm_python_workers(spark, ("kale_spark.no_such_module",))
    assert warm is not None
    assert warm.join(timeout=120)
    assert warm.error is not None and "no_such_module" in warm.error
    assert warm.pids == set()
    # The session is unharmed.
    assert spark.range(3).count() == 3


def test_the_local_driver_jvm_runs_with_the_quick_start_options(spark):
    """The suite's own session was built by get_session on local[2] (kale_spark/spark/jvm.py):
    C1 only, and the class archive `make setup` built when there is one."""
    from kale_spark.spark import jvm

    jvm_ = spark.sparkContext._jvm
    args = list(jvm_.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert jvm.C1_ONLY in args
    archive = jvm.archive_path()
    shared = [a for a in args if a.startswith("-XX:SharedArchiveFile=")]
    if archive is not None and archive.is_file():
        assert shared == [f"-XX:SharedArchiveFile={archive}"]
    else:
        assert shared == []


def test_workers_import_pyspark_from_the_package_not_from_sparks_zips(spark):
    # kale's local sessions name kale_spark.spark.pydaemon as the Python daemon: the
    # workers' path holds none of the zips or the jar Spark prepends, so pyspark's worker
    # and SQL modules come from site-packages (with their bytecode cache).
    def probe(batches):
        import sys

        import pandas as pd
        import pyspark.worker

        for _ in batches:
            pass
        # (Jars of spark.jars.packages may follow, added per task as Python includes.)
        dropped = ("pyspark.zip", "-src.zip", "/spark-core_")
        zips = [p for p in sys.path if any(name in p for name in dropped)]
        yield pd.DataFrame({"worker": [pyspark.worker.__file__], "zips": [repr(zips)]})

    assert spark.sparkContext.getConf().get("spark.python.daemon.module") == (
        "kale_spark.spark.pydaemon"
    )
    for row in spark.range(0, 2, 1, 2).mapInPandas(probe, "worker string, zips string").collect():
        assert row["worker"].endswith("site-packages/pyspark/worker.py"), row["worker"]
        assert row["zips"] == "[]"


def test_workers_start_with_the_daemons_imports(spark):
    # The daemon imports pandas, pyarrow and pyspark's worker once, before it forks:
    # a worker's own pid is not the importer's, its parent's is.
    def probe(batches):
        import os

        import pandas as pd

        for _ in batches:
            pass
        marker = os.environ.get("KALE_WORKER_PRELOADED", "")
        yield pd.DataFrame({"marker": [marker], "pid": [os.getpid()], "ppid": [os.getppid()]})

    rows = spark.range(0, 2, 1, 2).mapInPandas(probe, "marker string, pid long, ppid long")
    for row in rows.collect():
        importer, _, modules = row["marker"].partition(":")
        assert int(importer) == row["ppid"] != row["pid"], row
        assert {"pandas", "pyarrow", "pyspark.worker"} <= set(modules.split(",")), row
