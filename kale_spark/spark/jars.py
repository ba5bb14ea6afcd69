"""Delta Lake's JVM side: its Maven coordinate and the offline-friendly jar cache.

The coordinate is read from the installed delta-spark package (the same function
`configure_spark_with_delta_pip` uses), never written by hand, so upgrading the
pip package upgrades the jar. Spark resolves `spark.jars.packages` with Ivy, which
looks in the local Maven cache (~/.m2/repository) first; `ensure()` fills that cache
with `mvn dependency:get`.

The RAPIDS Accelerator's coordinate (the GPU SQL plugin of conf/spark/gpu-cluster.conf)
is the one other jar the project names; it is written here once. The Spark properties
files under conf/spark/ carry both coordinates in a `spark.jars.packages` line that
`sync_conf` writes from this module (`python -m kale_spark.spark.jars sync-conf FILE...`,
`make conf`); a test fails when a file is stale.

Delta's pom drags in libraries that Spark already ships (Hadoop, Parquet, Jackson,
log4j, ...) at older versions. Those are excluded: Spark's own copies are the ones
that must be on the classpath, and Maven never downloads their jars anyway.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

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


# RAPIDS Accelerator for Apache Spark, Scala 2.13 build (the Spark 4 line is Scala 2.13
# only). One jar carries the shims for every supported Spark version; 26.08.1 was the
# latest release on Maven Central when this was written (2026-11). Check NVIDIA's
# support matrix for the exact Spark patch version before upgrading Spark.
RAPIDS_VERSION = "26.08.1"
RAPIDS_COORDINATE = f"com.nvidia:rapids-4-spark_2.13:{RAPIDS_VERSION}"


def delta_packages() -> str:
    """The `spark.jars.packages` value delta-spark itself asks for."""
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    builder = configure_spark_with_delta_pip(SparkSession.Builder())
    return builder._options["spark.jars.packages"]


def packages(*, rapids: bool = False) -> str:
    """The `spark.jars.packages` value: Delta, plus the RAPIDS plugin for GPU clusters."""
    coords = [delta_packages()]
    if rapids:
        coords.append(RAPIDS_COORDINATE)
    return ",".join(coords)


def managed_conf(*, rapids: bool) -> dict[str, str]:
    """The jar properties a Spark properties file must carry, from this module."""
    return {
        "spark.jars.packages": packages(rapids=rapids),
        "spark.jars.excludes": ",".join(SPARK_PROVIDED_EXCLUDES),
    }


def _conf_wants_rapids(lines: list[str]) -> bool:
    return any(
        line.split()[:2] == ["spark.plugins", "com.nvidia.spark.SQLPlugin"] for line in lines
    )


def render_conf(text: str) -> str:
    """``text`` (a properties file) with its jar lines rewritten from this module.

    Only the ``spark.jars.*`` lines a file already has are rewritten (a Databricks
    file has none: the runtime brings Delta). A file whose ``spark.plugins`` is the
    RAPIDS SQL plugin gets the RAPIDS jar too. Lines keep their value column.
    """
    lines = text.splitlines()
    wanted = managed_conf(rapids=_conf_wants_rapids(lines))
    out = []
    for line in lines:
        parts = line.split(None, 1)
        if parts and parts[0] in wanted:
            key = parts[0]
            width = max(len(key) + 1, len(line) - len(line[len(key) :].lstrip()))
            out.append(f"{key.ljust(width)}{wanted[key]}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def stale_conf_files(paths: list[Path]) -> list[Path]:
    """The properties files whose jar lines differ from this module's coordinates."""
    return [p for p in paths if render_conf(p.read_text()) != p.read_text()]


def sync_conf(paths: list[Path]) -> list[Path]:
    """Rewrite the jar lines of ``paths``; return the files that changed."""
    changed = stale_conf_files(paths)
    for p in changed:
        p.write_text(render_conf(p.read_text()))
    return changed


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
        print(packages(rapids="--rapids" in args[1:]))
        return 0
    if args[:1] == ["sync-conf"] and len(args) > 1:
        for path in sync_conf([Path(a) for a in args[1:]]):
            print(f"updated {path}")
        return 0
    print(
        "usage: python -m kale_spark.spark.jars ensure | coordinate [--rapids] | sync-conf FILE...",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())


# ---------------------------------------------------------------- resolved jars, reused

PACKAGES = "spark.jars.packages"
EXCLUDES = "spark.jars.excludes"
JARS = "spark.jars"


def _resolved_record(conf: dict[str, str]) -> Path:
    from kale_spark.spark.jvm import cache_dir

    key = hashlib.sha256(f"{conf.get(PACKAGES)}\0{conf.get(EXCLUDES)}".encode()).hexdigest()
    return cache_dir() / f"jars-{key[:16]}.txt"


def use_resolved_jars(conf: dict[str, str]) -> dict[str, str]:
    """``conf`` with its `spark.jars.packages` replaced by the jar files an earlier local
    session resolved them to, when that session recorded them and every file is still
    there: a local driver then starts without Ivy (its settings, its resolution and
    its retrieve cost a second or more per command). Otherwise ``conf`` unchanged."""
    if not conf.get(PACKAGES) or conf.get(JARS):
        return conf
    record = _resolved_record(conf)
    try:
        jars = [j for j in record.read_text().split(",") if j]
    except OSError:
        return conf
    if not jars or not all(Path(urlparse(j).path).is_file() for j in jars):
        return conf
    out = {k: v for k, v in conf.items() if k not in (PACKAGES, EXCLUDES)}
    out[JARS] = ",".join(jars)
    return out


def remember_resolved_jars(conf: dict[str, str], resolved: str | None) -> None:
    """Record the jar files Ivy resolved ``conf``'s packages to (`spark.jars` of the
    started session) for :func:`use_resolved_jars`. Never raises."""
    if not conf.get(PACKAGES) or not resolved:
        return
    try:
        record = _resolved_record(conf)
        record.parent.mkdir(parents=True, exist_ok=True)
        partial = record.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(resolved)
        os.replace(partial, record)
    except OSError as exc:
        log.debug("resolved jars not recorded: %s", exc)
