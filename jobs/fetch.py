"""spark-submit entry point: samples → images: download, decode, resize.

    spark-submit --properties-file conf/spark/gpu-cluster.conf jobs/fetch.py \
        --config conf/paper.yaml --set lake.root=s3://bucket/kale

kale_spark must be importable on the driver and the executors (installed in their
Python environment, or shipped with --py-files).
"""

from kale_spark.cli.jobmain import job_main
from kale_spark.stages import fetch

if __name__ == "__main__":
    raise SystemExit(job_main(fetch))
