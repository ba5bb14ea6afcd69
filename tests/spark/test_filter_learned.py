"""`filter.learned_leaks` through Spark: the flag reaches the pandas batches the Python
workers run, and the workers read the classifier's weights from the package."""

from __future__ import annotations

from kale_spark.prompts import FUSE_CAPSFUSION_V1
from kale_spark.stages.filter import filtered_rows

LEAD = "A red bridge spans the bay under a pale morning sky."
# A leak that the hand rules keep and the shipped step removes
# (STEP_LEAKS in tests/unit/test_leak_learned.py).
LEAK = "Those details mention the designer."


def test_the_learned_step_runs_in_the_workers_only_when_asked(spark) -> None:
    from pyspark.sql import functions as F

    rows = [(str(i), caption) for i, caption in enumerate([f"{LEAD} {LEAK}", LEAD])]
    source = (
        spark.createDataFrame(rows, "uid string, caption_raw string")
        .withColumn("stage", F.lit("stage1"))
        .withColumn("alt_text", F.lit("Golden Gate Bridge at dawn, San Francisco"))
        .withColumn("dense_caption", F.lit("a red bridge over water under a pale sky"))
        .withColumn("dense_model", F.lit("tiny"))
        .withColumn("model", F.lit("m"))
        .withColumn("model_revision", F.lit("r"))
        .withColumn("prompt_id", F.lit(FUSE_CAPSFUSION_V1.id))
        .withColumn("gen_params", F.lit("{}"))
        .withColumn("caption_run_id", F.lit("c"))
        .withColumn(
            "source_versions", F.create_map(F.lit("stage1_captions"), F.lit(0).cast("bigint"))
        )
    )
    for learned, reasons in ((True, {"0": ["learned"], "1": []}), (False, {"0": [], "1": []})):
        out = filtered_rows(source, 3, "run", learned=learned).select(
            "uid", "caption", "removal_reasons"
        )
        collected = out.collect()
        assert {r["uid"]: list(r["removal_reasons"]) for r in collected} == reasons, learned
        captions = {r["uid"]: r["caption"] for r in collected}
        assert captions == {"0": LEAD if learned else f"{LEAD} {LEAK}", "1": LEAD}
