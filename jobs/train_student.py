"""spark-submit entry point: kept stage-1 captions → the stage-2 student (TorchDistributor).

    spark-submit --properties-file conf/spark/gpu-cluster.conf jobs/train_student.py \
        --config conf/paper.yaml --set lake.root=s3://bucket/kale

kale_spark must be importable on the driver and the executors (installed in their
Python environment, or shipped with --py-files). The training ranks run under their
own resource profile, one whole GPU each (kale_spark/spark/resources.py), whatever the
conf's fractional spark.task.resource.gpu.amount; `--set student.train.clean_snapshots=true`
does what `kale train-student --clean-snapshots` does.
"""

from kale_spark.cli.jobmain import job_main
from kale_spark.stages import train_student

if __name__ == "__main__":
    raise SystemExit(job_main(train_student))
