"""Delta Lake's JVM side: its Maven coordinate and the offline-friendly jar cache.

The coordinate is read from the installed delta-spark package (the same function
`configure_spark_with_delta_pip` uses), never written by hand, so upgrading the
pip package upgrades the jar. Spark resolves `spark.jars.packages` with Ivy, which
looks in the local Maven cache (~/.m2/repository) first; `ensure()` fills that cache
with `mvn dependency:get`.

Delta's pom drags in libraries that Spark already ships (Hadoop, Parquet, Jackson,
log4j, ...) at older versions. Those are excluded: Spark's own copies are the ones
that must be on the classpath, and Maven never downloads their jars anyway.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

SPARK_PROVIDED_EXCLUDES: tuple[str, ...] = (
    "com.fasterxml.jackson.core:jackson-annotations",
    "com.fasterxml.jackson.core:jackson-core",
    "com.fasterxml.jackson.core:jackson-databind",
    "com.fasterxml.jackson.datatype:jackson-datatype-jdk8",
    "com.github.luben:zstd-jni",
    "com.google.code.findbugs:jsr305",
    "commons-logging:commons-logging",
    "commons-pool:commons-pool",
    "io.airlift:aircompressor",
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.logging.log4j:log4j-api",
    "org.apache.logging.log4j:log4j-core",
    "org.apache.logging.log4j:log4j-slf4j2-impl",
    "org.apache.parquet:parquet-column",
    "org.apache.parquet:parquet-common",
    "org.apache.parquet:parquet-encoding",
    "org.apache.parquet:parquet-format-structures",
    "org.apache.parquet:parquet-hadoop",
    "org.apache.parquet:parquet-jackson",
    "org.roaringbitmap:RoaringBitmap",
    "org.roaringbitmap:shims",
    "org.slf4j:slf4j-api",
    "org.xerial.snappy:snappy-java",
)


def delta_packages() -> str:
    """The `spark.jars.packages` value delta-spark itself asks for."""
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    builder = configure_spark_with_delta_pip(SparkSession.Builder())
    return builder._options["spark.jars.packages"]


def m2_jar_path(coordinate: str, repo: Path | None = None) -> Path:
    group, artifact, version = coordinate.split(":")
    repo = repo or Path.home() / ".m2" / "repository"
    return repo / group.replace(".", "/") / artifact / version / f"{artifact}-{version}.jar"


def ensure() -> str:
    """Make sure Delta's jar is in the local Maven cache; fetch it with mvn if not."""
    coordinate = delta_packages()
    jar = m2_jar_path(coordinate)
    if jar.exists():
        log.info("Delta jar present: %s", jar)
        return coordinate
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SystemExit(
            f"Delta jar {coordinate} is not in ~/.m2 and `mvn` is not installed; "
            "install Maven (apt-get install maven) or give Spark network access."
        )
    log.info("fetching %s with mvn", coordinate)
    subprocess.run(
        [mvn, "-q", "-B", "dependency:get", f"-Dartifact={coordinate}"],
        check=True,
    )
    if not jar.exists():
        raise SystemExit(f"mvn ran but {jar} is still missing")
    return coordinate


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["ensure"]:
        print(ensure())
        return 0
    if args[:1] == ["coordinate"]:
        print(delta_packages())
        return 0
    print("usage: python -m kale_spark.jars ensure|coordinate", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
