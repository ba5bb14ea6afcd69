# Databricks notebook source
# MAGIC %md
# MAGIC # kale-spark 01 — ingest DataComp metadata and fetch images
# MAGIC
# MAGIC Runs the same `stages.*.run` as `spark-submit jobs/<stage>.py`, on this notebook's
# MAGIC active Spark session. Install the project on the cluster first
# MAGIC (`%pip install /Workspace/Repos/.../kale-spark`), and set the lake root to a path the
# MAGIC cluster can write (DBFS, a Unity Catalog volume, or s3://...).

# COMMAND ----------

import logging

from kale_spark.config import load_config
from kale_spark.stages import fetch, ingest

logging.basicConfig(level=logging.INFO)

# Delta ships with Databricks runtimes: do not resolve it from Maven.
cfg = load_config(
    "conf/paper.yaml",
    [
        "lake.root=/Volumes/main/kale/lake",
        "ingest.input=/Volumes/main/kale/datacomp/metadata",
        "spark.delta_packages=false",
    ],
)

# COMMAND ----------

run = ingest.run(spark, cfg)  # noqa: F821 - `spark` is the notebook's session
print(run.summary())

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT reason, count(*) AS n FROM kale.quarantine GROUP BY reason ORDER BY n DESC

# COMMAND ----------

run = fetch.run(spark, cfg)  # noqa: F821
print(run.summary())

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT status, count(*) AS n FROM kale.images GROUP BY status ORDER BY n DESC

# COMMAND ----------

# MAGIC %sql
# MAGIC -- Delta time travel: the samples table as of its first ingest
# MAGIC SELECT count(*) FROM kale.samples VERSION AS OF 1
