"""Start-up options for a driver JVM that kale launches itself (local mode, plain python).

A local stage is short and its heavy work runs in Python (models, image decoding);
a fresh driver JVM spends seconds of it loading and JIT-compiling Spark and Delta
(measured, 3000-URL fetch on 2 cores: stage 17.3 s -> 14.2 s with C1 only, -> 13.2 s
with the class archive too; the CLI's wall time 23.4 s -> 16.3 s). Two standard
HotSpot features cut that cost:

* ``-XX:TieredStopAtLevel=1``: compile with C1 only (and the serial collector on a
  machine of two cores or fewer). C2's optimising compiles cost
  more CPU than a short run gets back, on a machine whose cores the Python workers
  need.
* Class data sharing (AppCDS): the classes a kale session loads are parsed, verified
  and archived once per virtualenv (``python -m kale_spark.spark.jvm archive``, run by
  ``make setup``); later JVMs map the archive instead of loading the jars' classes.
  The archive is keyed by the Java binary and the Spark and Delta jars, so another
  JDK or a Spark upgrade uses (and needs) another archive; without one the JVM
  starts as usual. The JVM itself refuses an archive that does not match its
  class path (``-Xshare:auto``: it then runs without it).

Only ``spark.jvm_quick_start`` (default on) sessions built by kale on a local
master get these options; under spark-submit, Databricks or a cluster manager the
launcher's JVM options stand. Options the profile sets in
``spark.driver.extraJavaOptions`` come after kale's, so they win.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

C1_ONLY = "-XX:TieredStopAtLevel=1"
# On a machine of one or two cores the Python workers need every core: G1's
# concurrent threads compete with them, the serial collector does not (HotSpot
# itself picks it below two processors). Measured on 2 cores, 3000-URL fetch,
# interleaved runs: stage 11.7 s -> 11.2 s.
SERIAL_GC = "-XX:+UseSerialGC"
SMALL_MACHINE_CORES = 2
# The archive's warnings (a class path that changed) are not the user's business:
# the JVM just runs without the archive.
QUIET_CDS = "-Xlog:cds=off,cds+dynamic=off"


def cache_dir() -> Path:
    """``$KALE_JVM_CACHE``, else ``share/kale-spark/jvm`` in this Python environment:
    one archive per virtualenv (its pyspark's jars), gone with it, and a clean-up of
    stale archives never touches another checkout's."""
    env = os.environ.get("KALE_JVM_CACHE")
    return Path(env) if env else Path(sys.prefix) / "share" / "kale-spark" / "jvm"


def java_binary() -> Path | None:
    """The java Spark's launcher runs: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return (Path(home) / "bin" / "java").resolve()
    found = shutil.which("java")
    return Path(found).resolve() if found else None


def _spark_jars() -> list[Path]:
    """The jars on the driver's class path (Spark's own) and Delta's resolved jars."""
    import pyspark

    home = Path(os.environ.get("SPARK_HOME") or Path(pyspark.__file__).parent)
    jars = sorted((home / "jars").glob("*.jar"))
    for ivy in sorted(Path.home().glob(".ivy2*/jars")):
        jars += sorted(ivy.glob("io.delta_*.jar"))
    return jars


def archive_key() -> str | None:
    """What the archive depends on, hashed: the Java binary and every jar (name, size,
    mtime). None without a java binary."""
    java = java_binary()
    if java is None:
        return None
    digest = hashlib.sha256()
    for path in [java, *_spark_jars()]:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{int(stat.st_mtime)}\n".encode())
    return digest.hexdigest()[:16]


def archive_path() -> Path | None:
    key = archive_key()
    return None if key is None else cache_dir() / f"kale-{key}.jsa"


def driver_java_options(
    user_options: str = "", archive: Path | None = None, cores: int | None = None
) -> str:
    """``spark.driver.extraJavaOptions`` for a quick-start local driver: C1 only, the
    serial collector on a machine of ``cores`` <= 2 (default: this one's), the class
    archive when one exists, then ``user_options`` (last, so they win)."""
    cores = (os.cpu_count() or 1) if cores is None else cores
    options = [C1_ONLY]
    if cores <= SMALL_MACHINE_CORES:
        options.append(SERIAL_GC)
    if archive is not None and archive.is_file():
        options += [f"-XX:SharedArchiveFile={archive}", "-Xshare:auto", QUIET_CDS]
    elif archive is not None:
        log.warning(
            "no class archive at %s: the JVM starts without it (`make setup` builds it)", archive
        )
    if user_options.strip():
        options.append(user_options.strip())
    return " ".join(options)


# A short session that loads what the stages load: Delta create / append / MERGE /
# read / history, a shuffle, an Arrow mapInPandas job. Run in a child process whose
# JVM dumps the classes it loaded when it exits.
_TRAINING_RUN = r"""
import sys
from kale_spark.config import SparkConfig
from kale_spark.spark.session import get_session

root = sys.argv[1]
spark = get_session(SparkConfig(master="local[2]", shuffle_partitions=2, jvm_quick_start=False))
from delta.tables import DeltaTable

def double(batches):
    for pdf in batches:
        pdf["v"] = pdf["id"] * 2
        yield pdf

df = spark.range(0, 200, 1, 2).repartition(2, "id").mapInPandas(double, "id long, v long")
df.write.format("delta").save(root + "/t")
spark.range(0, 50).selectExpr("id", "id * 3 as v").write.format("delta").mode("append").save(
    root + "/t"
)
source = spark.range(0, 300).selectExpr("id", "id as v")
(
    DeltaTable.forPath(spark, root + "/t").alias("t")
    .merge(source.alias("s"), "t.id = s.id")
    .whenNotMatchedInsertAll()
    .execute()
)
spark.read.format("delta").load(root + "/t").groupBy("v").count().collect()
assert spark.read.format("delta").load(root + "/t").count() == 350  # 200 + 50 + 100 new
DeltaTable.forPath(spark, root + "/t").history(1).collect()
spark.sql(f"DESCRIBE DETAIL delta.`{root}/t`").collect()
proc = spark.sparkContext._gateway.proc
spark.stop()
proc.stdin.close()  # the gateway JVM exits on EOF, and dumps its classes then
sys.exit(proc.wait(timeout=600))
"""


def build_archive(force: bool = False) -> Path | None:
    """Build this machine's class archive if it has none; its path (None: not built)."""
    target = archive_path()
    if target is not None and target.is_file() and not force:
        log.info("class archive present: %s", target)
        return target
    if java_binary() is None:
        log.warning("no java binary found: no class archive")
        return None
    cache_dir().mkdir(parents=True, exist_ok=True)
    partial = cache_dir() / f"build-{os.getpid()}.jsa.partial"
    with tempfile.TemporaryDirectory(prefix="kale-cds-") as work:
        env = {
            **os.environ,
            # The child's session passes this to its JVM (spark-submit reads it).
            "PYSPARK_SUBMIT_ARGS": (
                f'--driver-java-options "-XX:ArchiveClassesAtExit={partial}" pyspark-shell'
            ),
        }
        log.info("building the class archive (a short Spark session)")
        done = subprocess.run(
            [sys.executable, "-c", _TRAINING_RUN, work],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    # The key is taken after the run: a first session resolves Delta's jars.
    target = archive_path()
    if done.returncode != 0 or not partial.is_file() or target is None:
        partial.unlink(missing_ok=True)
        log.warning(
            "class archive not built (exit %s): %s",
            done.returncode,
            (done.stderr or done.stdout)[-2000:],
        )
        return None
    # The dumping JVM has exited (the child waited for it): the file is whole, and
    # a rename is atomic, so a JVM never maps a partial archive.
    os.replace(partial, target)
    for stale in target.parent.glob("kale-*.jsa"):
        if stale != target:
            stale.unlink(missing_ok=True)  # archives of replaced jars or JDKs
    log.info("class archive built: %s (%d MB)", target, target.stat().st_size >> 20)
    return target


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["archive"]:
        built = build_archive(force="--force" in args[1:])
        print(built or "no archive")
        return 0  # an optimisation: a machine without one still runs everything
    if args[:1] == ["path"]:
        print(archive_path() or "")
        return 0
    print("usage: python -m kale_spark.spark.jvm archive [--force] | path", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
