"""A spark-submit app for tests/cluster: TorchDistributor through
kale_spark.spark.resources.student_distributor (local_mode false, use_gpu true) while the
default task holds a fraction of a GPU; prints, as JSON, what the rank was given."""

from __future__ import annotations

import json


def report() -> dict:
    """What one training rank sees (runs under torchrun in the barrier task)."""
    import os

    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "CUDA_VISIBLE_DEVICES")
    return {k: os.environ.get(k) for k in keys}


def main() -> None:
    from pyspark.sql import SparkSession

    from kale_spark.config import load_config
    from kale_spark.spark.resources import student_distributor

    spark = SparkSession.builder.getOrCreate()
    overrides = [
        "student.train.use_gpu=true",
        "student.train.local_mode=false",
        "student.train.num_processes=1",
    ]
    scfg = load_config(None, overrides).student.train
    distributor = student_distributor(spark, scfg)
    rank0 = distributor.run(report)
    result = {"num_tasks": distributor.num_tasks, "profile_id": distributor.profile.id}
    print("RESULT " + json.dumps({**result, "rank0": rank0, "stages": _stages(spark)}))
    spark.stop()


def _stages(spark) -> list[dict]:
    """The app's stages as Spark's status API reports them (profile, tasks)."""
    import urllib.request

    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/stages"
    with urllib.request.urlopen(url, timeout=30) as resp:
        stages = json.load(resp)
    keys = ("resourceProfileId", "numTasks", "status")
    return [{k: s[k] for k in keys} for s in stages]


if __name__ == "__main__":
    main()
