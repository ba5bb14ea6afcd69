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

# Widgets: the pipeline profile (a path relative to this notebook, or absolute), the lake
# root, and any further settings as `key=value` pairs separated by `;`.
dbutils.widgets.text("profile", "../conf/paper.yaml", "Pipeline profile")  # noqa: F821
dbutils.widgets.text("lake_root", "/Volumes/main/kale/lake", "Lake root")  # noqa: F821
dbutils.widgets.text(  # noqa: F821
    "ingest_input", "/Volumes/main/kale/datacomp/metadata", "DataComp metadata"
)
dbutils.widgets.text("overrides", "", "More settings (key=value; ...)")  # noqa: F821


def widget_overrides() -> list[str]:
    extra = dbutils.widgets.get("overrides")  # noqa: F821 - Databricks builtin
    return [f"lake.root={dbutils.widgets.get('lake_root')}"] + [  # noqa: F821
        s.strip() for s in extra.split(";") if s.strip()
    ]


cfg = load_config(
    dbutils.widgets.get("profile"),  # noqa: F821
    [f"ingest.input={dbutils.widgets.get('ingest_input')}", *widget_overrides()],  # noqa: F821
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
