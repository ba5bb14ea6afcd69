"""A spark-submit app for tests/cluster: a mapInPandas stage under the model-stage
ResourceProfile; prints, as JSON, what each task was given."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pandas as pd


def given(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    from pyspark import TaskContext

    ctx = TaskContext.get()
    gpus = ",".join(ctx.resources()["gpu"].addresses) if "gpu" in ctx.resources() else ""
    for pdf in batches:
        yield pd.DataFrame({"id": pdf["id"], "gpus": gpus, "cpus": ctx.cpus()})


def main() -> None:
    from pyspark.sql import SparkSession

    from kale_spark.spark.resources import model_stage_profile

    spark = SparkSession.builder.getOrCreate()
    profile = model_stage_profile(spark)
    df = spark.range(0, 8, numPartitions=4)
    schema = "id long, gpus string, cpus int"
    model_rows = df.mapInPandas(given, schema, profile=profile).collect()
    default_rows = df.mapInPandas(given, schema).collect()
    print(
        "RESULT "
        + json.dumps(
            {
                "profile_id": None if profile is None else profile.id,
                "model": sorted(list(r) for r in model_rows),
                "default": sorted(list(r) for r in default_rows),
            },
            default=list,
        )
    )
    spark.stop()


if __name__ == "__main__":
    main()
