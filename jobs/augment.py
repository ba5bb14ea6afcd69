"""spark-submit entry point: alt-text + dense caption → stage1_captions: the fusion LLM (Stage 1b).

    spark-submit --properties-file conf/spark/gpu-cluster.conf jobs/augment.py \
        --config conf/paper.yaml --set lake.root=s3://bucket/kale

kale_spark must be importable on the driver and the executors (installed in their
Python environment, or shipped with --py-files).
"""

from kale_spark.cli.jobmain import job_main
from kale_spark.stages import augment

if __name__ == "__main__":
    raise SystemExit(job_main(augment))
