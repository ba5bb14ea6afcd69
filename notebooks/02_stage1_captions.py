# Databricks notebook source
# MAGIC %md
# MAGIC # kale-spark 02 — Stage 1: dense captions and knowledge fusion
# MAGIC
# MAGIC `images` → **caption** (the VLM: Qwen2-VL-7B; the paper's CogVLM-17B) →
# MAGIC `dense_captions` →
# MAGIC **augment** (alt-text + dense caption → Mistral-7B-Instruct, CapsFusion prompt) →
# MAGIC `stage1_captions`. The same `stages.*.run` as `spark-submit jobs/<stage>.py`, on
# MAGIC this notebook's session. Use a GPU cluster (one GPU per task:
# MAGIC `spark.task.resource.gpu.amount 1`, see conf/spark/databricks.conf) and run
# MAGIC notebook 01 first.

# COMMAND ----------

import logging

from kale_spark.config import load_config
from kale_spark.spark.udf import register_sql_functions
from kale_spark.stages import augment, caption

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

# COMMAND ----------

run = caption.run(spark, cfg)  # noqa: F821 - `spark` is the notebook's session
print(run.summary())

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT model, model_revision, prompt_id, gen_params, count(*) AS n,
# MAGIC        avg(new_tokens) AS avg_new_tokens
# MAGIC FROM kale.dense_captions GROUP BY ALL

# COMMAND ----------

run = augment.run(spark, cfg)  # noqa: F821
print(run.summary())

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT uid, alt_text, dense_caption, caption_raw FROM kale.stage1_captions LIMIT 20

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT stage, reason, count(*) AS n FROM kale.quarantine
# MAGIC WHERE stage IN ('caption', 'augment') GROUP BY ALL

# COMMAND ----------

# The models as SQL functions: kale_caption(image) and kale_fuse(alt_text, dense_caption).
# Each Python worker loads the model once, on the first batch it gets.
register_sql_functions(spark, cfg)  # noqa: F821
display(  # noqa: F821 - Databricks builtin
    spark.sql(  # noqa: F821
        """
        SELECT uid, s.text AS alt_text, kale_fuse(s.text, d.dense_caption) AS fused
        FROM kale.samples s JOIN kale.dense_captions d USING (uid)
        LIMIT 10
        """
    )
)
