# Databricks notebook source
# MAGIC %md
# MAGIC # kale-spark 03 — filter leaked prompts, publish the `kale` release, compare versions
# MAGIC
# MAGIC Runs the same `stages.filter.run` / `stages.publish.run` as `kale filter` and
# MAGIC `kale publish`, on this notebook's Spark session. Exports are written with pyarrow
# MAGIC on the driver, so on Databricks set the lake root to a path the driver can also
# MAGIC reach as a local file path (a Unity Catalog volume under `/Volumes/...`, or `/dbfs/...`).

# COMMAND ----------

import logging

from kale_spark import schema
from kale_spark.config import load_config
from kale_spark.lake.tables import Lake
from kale_spark.lake.versioning import diff_versions
from kale_spark.release.export import export_release
from kale_spark.stages import filter as filter_stage
from kale_spark.stages import publish

logging.basicConfig(level=logging.INFO)

# Widgets: the pipeline profile (a path relative to this notebook, or absolute), the lake
# root, and any further settings as `key=value` pairs separated by `;`.
dbutils.widgets.text("profile", "../conf/paper.yaml", "Pipeline profile")  # noqa: F821
dbutils.widgets.text("lake_root", "/Volumes/main/kale/lake", "Lake root")  # noqa: F821
dbutils.widgets.text("overrides", "", "More settings (key=value; ...)")  # noqa: F821


def widget_overrides() -> list[str]:
    extra = dbutils.widgets.get("overrides")  # noqa: F821 - Databricks builtin
    return [f"lake.root={dbutils.widgets.get('lake_root')}"] + [  # noqa: F821
        s.strip() for s in extra.split(";") if s.strip()
    ]


cfg = load_config(dbutils.widgets.get("profile"), widget_overrides())  # noqa: F821
lake = Lake(spark, cfg.lake)  # noqa: F821 - `spark` is the notebook's session

# COMMAND ----------

run = filter_stage.run(spark, cfg)  # noqa: F821
print(run.summary())

# COMMAND ----------

# MAGIC %sql
# MAGIC -- Why captions were rejected, and which sentences were removed most often
# MAGIC SELECT coalesce(reject_reason, 'kept') AS outcome, count(*) AS n,
# MAGIC        round(avg(word_count), 1) AS mean_words,
# MAGIC        round(avg(knowledge_retention), 3) AS retention
# MAGIC FROM kale.filtered_captions GROUP BY 1 ORDER BY n DESC

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT reason, count(*) AS sentences
# MAGIC FROM kale.filtered_captions LATERAL VIEW explode(removal_reasons) r AS reason
# MAGIC GROUP BY reason ORDER BY sentences DESC

# COMMAND ----------

run = publish.run(spark, cfg)  # noqa: F821
print(run.summary())

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT release, version, published_at, rows,
# MAGIC        rows_added, rows_updated, rows_removed, export_path
# MAGIC FROM kale.releases ORDER BY release

# COMMAND ----------

releases = lake.read(schema.RELEASES).orderBy("release").collect()
first = releases[0]["version"]
spark.sql(  # noqa: F821
    f"SELECT uid, caption, word_count, knowledge_retention FROM kale.kale VERSION AS OF {first} "
    "ORDER BY uid LIMIT 20"
).show(truncate=100)

# COMMAND ----------

# Rows added, removed and changed between the two latest releases (change data feed).
if len(releases) >= 2:
    diff = diff_versions(lake, schema.KALE, releases[-2]["version"], releases[-1]["version"])
    print(diff.summary(limit=10))

# COMMAND ----------

# MAGIC %sql
# MAGIC DESCRIBE HISTORY kale.kale

# COMMAND ----------

# Re-export the first release exactly as it was published (same rows, same bytes).
print(export_release(lake, cfg, first, out=f"{lake.root}/exports/kale/v{first}-again"))
