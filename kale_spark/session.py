"""The SparkSession: reuse the active one (notebooks, spark-submit), else build one.

A session built here has Delta's SQL extension and catalog, Arrow for pandas UDFs,
Python worker reuse (so a model loaded in a worker survives across tasks) and the
project's interpreter for those workers, so they import the same packages as the
driver.
"""

from __future__ import annotations

import logging
import os
import sys

from kale_spark.config import SparkConfig

log = logging.getLogger(__name__)

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def session_conf(cfg: SparkConfig) -> dict[str, str]:
    """Every Spark property a kale-spark session sets, in the order they apply."""
    from kale_spark.jars import SPARK_PROVIDED_EXCLUDES, delta_packages

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
    }
    if cfg.delta_packages:
        conf["spark.jars.packages"] = delta_packages()
        conf["spark.jars.excludes"] = ",".join(SPARK_PROVIDED_EXCLUDES)
    conf.update(cfg.conf)
    return conf


def get_session(cfg: SparkConfig):
    """The active SparkSession if there is one, else a new one built from `cfg`."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        log.debug("reusing the active Spark session")
        return active
    # Python workers must run this interpreter, whatever PATH says.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.master(cfg.master).appName(cfg.app_name)
    for key, value in session_conf(cfg).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.log_level.upper())
    log.info("Spark %s session started (%s)", spark.version, cfg.master)
    return spark
