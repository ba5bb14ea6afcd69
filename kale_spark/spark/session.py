"""The SparkSession: reuse the active one (notebooks, spark-submit), else build one.

A session built here has Delta's SQL extension and catalog, Arrow for pandas UDFs,
Python worker reuse (so a model loaded in a worker survives across tasks) and, when
it runs locally, the project's interpreter for those workers.

What the launcher says wins over the profile. Under ``spark-submit`` the master
(``--master``), the resources and every property given with ``--conf``,
``--properties-file`` or ``spark-defaults.conf`` are already in the JVM's SparkConf:
the profile only fills in what they leave unset. Launched from a plain ``python``,
the profile's ``spark.master`` applies unless a master was given some other way
(``PYSPARK_SUBMIT_ARGS --master``, ``spark.master`` in spark-defaults.conf, or the
``SPARK_MASTER`` / ``MASTER`` environment variables).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path

from kale_spark.config import SparkConfig
from kale_spark.lake.connect import refuse_connect
from kale_spark.spark.jars import remember_resolved_jars, use_resolved_jars
from kale_spark.spark.jvm import archive_path, driver_java_options
from kale_spark.spark.warmup import WARM_WORKERS_KEY

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
# Set by spark-submit (and notebook kernels) when the JVM was started before Python.
GATEWAY_ENV = "PYSPARK_GATEWAY_PORT"
JAVA_OPTIONS = "spark.driver.extraJavaOptions"
PYTHON_DAEMON_KEY = "spark.python.daemon.module"
PYTHON_DAEMON = "kale_spark.spark.pydaemon"
# Which Python the workers run is the launcher's business on a cluster
# (--archives venv + spark.pyspark.python, or the nodes' image); in local mode they
# run this interpreter.
_LOCAL_ONLY = ("spark.pyspark.python", "spark.pyspark.driver.python")


def session_conf(cfg: SparkConfig) -> dict[str, str]:
    """Every Spark property a kale-spark session sets, in the order they apply."""
    from kale_spark.spark.jars import SPARK_PROVIDED_EXCLUDES, delta_packages

    conf = {
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(cfg.arrow_batch_size),
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.python.worker.reuse": "true",
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.ui.enabled": str(cfg.ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        # Schema changes are explicit in kale (schema.py); never merge silently.
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        # Delta replays a table's log with this many tasks (default 50): on a small
        # cluster that is 50 tasks per log read, seconds of overhead per stage.
        "spark.databricks.delta.snapshotPartitions": str(min(cfg.shuffle_partitions, 50)),
        WARM_WORKERS_KEY: str(cfg.warm_workers).lower(),
    }
    if cfg.delta_packages:
        conf["spark.jars.packages"] = delta_packages()
        conf["spark.jars.excludes"] = ",".join(SPARK_PROVIDED_EXCLUDES)
    conf.update(cfg.conf)
    return conf


def _defaults_file() -> Path | None:
    conf_dir = os.environ.get("SPARK_CONF_DIR")
    if conf_dir:
        return Path(conf_dir) / "spark-defaults.conf"
    home = os.environ.get("SPARK_HOME")
    if not home:
        try:
            import pyspark

            home = str(Path(pyspark.__file__).parent)
        except ImportError:  # pragma: no cover - pyspark is a dependency
            return None
    return Path(home) / "conf" / "spark-defaults.conf"


def _master_in_defaults(path: Path | None) -> str | None:
    if path is None or not path.is_file():
        return None
    for line in path.read_text().splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and parts[0] == "spark.master":
            return parts[1].strip()
    return None


def _master_in_submit_args(args: str) -> str | None:
    words = shlex.split(args)
    for i, word in enumerate(words):
        if word == "--master" and i + 1 < len(words):
            return words[i + 1]
        if word.startswith("--master="):
            return word.split("=", 1)[1]
        if word == "--conf" and i + 1 < len(words) and words[i + 1].startswith("spark.master="):
            return words[i + 1].split("=", 1)[1]
    return None


def _submitted_conf() -> dict[str, str]:
    """The JVM's SparkConf when spark-submit (or a notebook) started it, else ``{}``."""
    if not os.environ.get(GATEWAY_ENV):
        return {}
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # connects to the launcher's JVM
    return dict(SparkConf().getAll())


def given_master(submitted: dict[str, str] | None = None) -> str | None:
    """The master chosen outside the profile (launcher, defaults file, env), or None."""
    submitted = _submitted_conf() if submitted is None else submitted
    if submitted.get("spark.master"):
        return submitted["spark.master"]
    for var in ("SPARK_MASTER", "MASTER"):
        if os.environ.get(var):
            return os.environ[var]
    from_args = _master_in_submit_args(os.environ.get("PYSPARK_SUBMIT_ARGS", ""))
    return from_args or _master_in_defaults(_defaults_file())


def _launches_local_jvm(
    cfg: SparkConfig, submitted: dict[str, str], master: str, jvm_running: bool
) -> bool:
    """True when this call starts the driver JVM itself, in local mode, with
    ``spark.jvm_quick_start``: only then do kale's JVM options apply."""
    return (
        cfg.jvm_quick_start
        and not submitted
        and not jvm_running
        and master.startswith("local")
        and "--driver-java-options" not in os.environ.get("PYSPARK_SUBMIT_ARGS", "")
    )


def get_session(cfg: SparkConfig):
    """The active SparkSession if there is one, else a new one built from `cfg`."""
    from pyspark.sql import SparkSession

    refuse_connect()  # SPARK_REMOTE would make the builder below a Connect client
    active = SparkSession.getActiveSession()
    if active is not None:
        refuse_connect(active)
        log.debug("reusing the active Spark session")
        return active
    submitted = _submitted_conf()
    master = given_master(submitted)
    builder = SparkSession.builder
    if master is None:
        master = cfg.master
        builder = builder.master(master)
    elif os.environ.get("SPARK_MASTER") and not submitted.get("spark.master"):
        builder = builder.master(master)  # Spark itself does not read SPARK_MASTER
    if cfg.master != master:
        log.info(
            "master %s given by the launcher; the profile's %s is not used", master, cfg.master
        )
    if not submitted:
        # Python workers must run this interpreter, whatever PATH says.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if "spark.app.name" not in submitted:
        builder = builder.appName(cfg.app_name)
    remote_workers = bool(submitted) and not master.startswith("local")
    conf = session_conf(cfg)
    from pyspark import SparkContext

    quick = _launches_local_jvm(cfg, submitted, master, SparkContext._gateway is not None)
    asked = conf
    if quick:
        conf[JAVA_OPTIONS] = driver_java_options(conf.get(JAVA_OPTIONS, ""), archive_path())
        # Workers import pyspark from site-packages, not from Spark's zips (spark/pydaemon.py).
        conf.setdefault(PYTHON_DAEMON_KEY, PYTHON_DAEMON)
        conf = use_resolved_jars(conf)  # the jars an earlier session resolved: no Ivy
    for key, value in conf.items():
        if key in submitted or (remote_workers and key in _LOCAL_ONLY):
            continue  # spark-submit / spark-defaults / --conf win
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if quick and conf is asked:
        remember_resolved_jars(asked, spark.sparkContext.getConf().get("spark.jars", None))
    spark.sparkContext.setLogLevel(cfg.log_level.upper())
    log.info("Spark %s session started (%s)", spark.version, spark.sparkContext.master)
    return spark
