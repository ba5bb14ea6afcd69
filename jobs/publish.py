"""spark-submit entry point: filtered captions → the gold table kale, a release, exports.

    spark-submit --properties-file conf/spark/gpu-cluster.conf jobs/publish.py \
        --config conf/paper.yaml --set lake.root=s3://bucket/kale

kale_spark must be importable on the driver and the executors (installed in their
Python environment, or shipped with --py-files).
"""

from kale_spark.cli.jobmain import job_main
from kale_spark.stages import publish

if __name__ == "__main__":
    raise SystemExit(job_main(publish))
