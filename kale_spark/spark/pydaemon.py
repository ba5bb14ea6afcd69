"""pyspark's Python daemon, run from the installed pyspark package instead of the zip.

Spark starts its Python workers as ``python -m <spark.python.daemon.module>`` with
``$SPARK_HOME/python/lib/pyspark.zip`` (and py4j's zip) first on ``PYTHONPATH``. With
pip-installed pyspark the same modules are in site-packages, but the zip wins, and a
zip import has no bytecode cache: each forked worker compiles ``pyspark.worker`` and
the SQL modules it pulls in from source, and a task that adds its files directory to
the path re-reads the directories of those zips and of the Spark jar also on the path
(``importlib.invalidate_caches``). That is CPU on the critical path of every worker
start.

Local sessions that kale starts (spark/session.py, quick start) name this module as
the daemon: it drops the zips from ``sys.path`` and runs pyspark's own daemon, which
then imports pyspark from the environment's site-packages (same version: the zips
ship inside that very package). Forked workers inherit the cleaned path. Nothing else
changes: the daemon and worker code are pyspark's.

The daemon also imports what every kale task's worker imports (pyspark's worker, its
Arrow serializers, pandas, pyarrow: about half a second of CPU) before it forks: each
forked worker then starts with them, instead of each paying for them again while
the driver plans on the same cores.

Kept free of module-level imports beyond the standard library: it runs before
pyspark is imported, and the path must be cleaned first.
"""

from __future__ import annotations

import os
import runpy
import sys


def _is_spark_zip(entry: str) -> bool:
    name = os.path.basename(entry)
    return (
        name == "pyspark.zip"
        or (name.startswith("py4j-") and name.endswith("-src.zip"))
        # Spark also appends its core jar (once the home of pyspark's code, now no
        # Python at all): a zip of thousands of entries that each importer reset re-reads.
        or (name.startswith("spark-core_") and name.endswith(".jar"))
    )


def drop_spark_zips(path: list[str]) -> list[str]:
    """``path`` without the zips Spark prepends for its workers."""
    return [entry for entry in path if not _is_spark_zip(entry)]


# Imported once by the daemon, inherited by every worker it forks. Nothing that
# starts threads or holds a device (torch, CUDA) belongs here: a fork keeps neither.
PRELOAD = ("pyspark.worker", "pyspark.sql.pandas.serializers", "pandas", "pyarrow")
# "<daemon pid>:<module,...>" of what the daemon imported; its workers inherit it
# (tests read it in a worker to tell that the imports happened before the fork).
PRELOADED_ENV = "KALE_WORKER_PRELOADED"


def preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    """Import ``modules``; the names imported. One that fails is skipped: this is an
    optimisation, and a worker that needs it reports the import error itself."""
    import importlib

    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            continue
        loaded.append(name)
    os.environ[PRELOADED_ENV] = f"{os.getpid()}:{','.join(loaded)}"
    return loaded


def main() -> None:
    sys.path[:] = drop_spark_zips(sys.path)
    for entry in [e for e in sys.path_importer_cache if _is_spark_zip(e)]:
        del sys.path_importer_cache[entry]
    preload()
    runpy.run_module("pyspark.daemon", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
