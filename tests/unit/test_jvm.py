"""Quick-start options for a local driver JVM (kale_spark/spark/jvm.py, session.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kale_spark.config import SparkConfig
from kale_spark.spark import jvm
from kale_spark.spark.session import _launches_local_jvm


def test_options_are_c1_then_the_archive_when_it_exists_then_the_users(tmp_path: Path) -> None:
    archive = tmp_path / "kale-x.jsa"
    # No file: no archive flag; a big machine keeps HotSpot's own collector.
    assert jvm.driver_java_options("", archive, cores=16) == jvm.C1_ONLY
    assert jvm.driver_java_options("", archive, cores=2).split() == [jvm.C1_ONLY, jvm.SERIAL_GC]
    archive.write_bytes(b"x")
    options = jvm.driver_java_options("-Dkale.user=1 -XX:TieredStopAtLevel=4", archive, cores=8)
    words = options.split()
    assert words[0] == jvm.C1_ONLY
    assert jvm.SERIAL_GC not in words
    assert f"-XX:SharedArchiveFile={archive}" in words
    # The profile's own options come last, so HotSpot lets them win.
    assert words[-2:] == ["-Dkale.user=1", "-XX:TieredStopAtLevel=4"]


def test_the_archive_key_follows_the_jars(tmp_path: Path, monkeypatch) -> None:
    jars = tmp_path / "spark" / "jars"
    jars.mkdir(parents=True)
    (jars / "spark-core.jar").write_bytes(b"a")
    monkeypatch.setenv("SPARK_HOME", str(tmp_path / "spark"))
    monkeypatch.setenv("KALE_JVM_CACHE", str(tmp_path / "cache"))
    if jvm.java_binary() is None:
        pytest.skip("no java on this machine")
    first = jvm.archive_path()
    assert first is not None and first.parent == tmp_path / "cache"
    assert jvm.archive_path() == first  # stable
    (jars / "spark-core.jar").write_bytes(b"a newer jar")
    assert jvm.archive_path() != first  # an upgraded jar needs another archive


@pytest.mark.parametrize(
    "quick, submitted, master, running, expected",
    [
        (True, {}, "local[2]", False, True),
        (False, {}, "local[2]", False, False),  # spark.jvm_quick_start=false
        (True, {}, "local[2]", True, False),  # the JVM already runs: too late
        (True, {"spark.master": "local[2]"}, "local[2]", False, False),  # spark-submit's JVM
        (True, {}, "spark://host:7077", False, False),  # a cluster's options are its own
    ],
)
def test_only_a_local_jvm_kale_starts_gets_the_options(quick, submitted, master, running, expected):
    cfg = SparkConfig(master=master, jvm_quick_start=quick)
    assert _launches_local_jvm(cfg, submitted, master, running) is expected


def test_packages_resolved_once_are_reused_as_jar_files(tmp_path: Path, monkeypatch) -> None:
    """A later local driver gets the jar files an earlier one resolved (no Ivy), only
    while every one of them is still on disk."""
    from kale_spark.spark.jars import remember_resolved_jars, use_resolved_jars

    monkeypatch.setenv("KALE_JVM_CACHE", str(tmp_path / "cache"))
    conf = {"spark.jars.packages": "io.delta:delta-spark_2.13:4.0.0", "spark.jars.excludes": "x:y"}
    assert use_resolved_jars(conf) == conf  # nothing recorded yet
    jars = [tmp_path / "a.jar", tmp_path / "b.jar"]
    for jar in jars:
        jar.write_bytes(b"PK")
    resolved = f"file://{jars[0]},{jars[1]}"
    remember_resolved_jars(conf, resolved)
    assert use_resolved_jars(conf) == {"spark.jars": resolved}
    other = {**conf, "spark.jars.packages": "io.delta:delta-spark_2.13:4.1.0"}
    assert use_resolved_jars(other) == other  # another coordinate: resolved again
    jars[1].unlink()
    assert use_resolved_jars(conf) == conf  # a jar gone: Ivy again


def test_the_python_daemon_drops_only_sparks_zips_from_the_path() -> None:
    from kale_spark.spark.pydaemon import drop_spark_zips

    home = "/venv/lib/python3.11/site-packages/pyspark"
    path = [
        f"{home}/python/lib/pyspark.zip",
        f"{home}/python/lib/py4j-0.10.9.9-src.zip",
        "/work/repo",
        f"{home}/jars/spark-core_2.13-4.2.0.jar",
        "/usr/lib/python311.zip",
        "/venv/lib/python3.11/site-packages",
        "/data/deps.zip",  # a user's --py-files archive stays
    ]
    assert drop_spark_zips(path) == [
        "/work/repo",
        "/usr/lib/python311.zip",
        "/venv/lib/python3.11/site-packages",
        "/data/deps.zip",
    ]


def test_the_daemons_preload_skips_a_module_that_fails(monkeypatch) -> None:
    from kale_spark.spark import pydaemon

    monkeypatch.setenv(pydaemon.PRELOADED_ENV, "")  # restored after the test
    loaded = pydaemon.preload(("json", "kale_spark_no_such_module", "csv"))
    assert loaded == ["json", "csv"]
    assert os.environ[pydaemon.PRELOADED_ENV] == f"{os.getpid()}:json,csv"
