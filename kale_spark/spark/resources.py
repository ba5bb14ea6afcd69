"""Stage-level scheduling: what one model task asks of an executor.

Fetch and decode run wide on CPUs under the session's default resource profile
(`spark.task.cpus` = 1, a sliver of the executor's GPU so RAPIDS SQL tasks can share
it). The model stages (caption, augment, student-caption) run under the profile
built here: one GPU per model task (one loaded model per GPU) and the CPUs for
torch's threads. It is a task-only profile, so it reuses the running executors
(Spark standalone 3.4+, YARN and Kubernetes 3.5+, dynamic allocation off).

Both amounts are Spark properties, set in conf/spark/gpu-cluster.conf (or with
`--conf`), so one place holds a cluster's resources:

    spark.kale.model.task.gpu.amount   GPUs per model task (default 1; 0.5 lets two
                                       small-model tasks share a GPU)
    spark.kale.model.task.cpus         CPUs per model task (default spark.executor.cores)

Without GPU resources on the executors (local mode, CPU clusters) there is no
profile: the model stages run under the default one.

    profile = model_stage_profile(spark)
    df.mapInPandas(fn, schema, profile=profile)   # profile=None is the default profile

Student training (train-student) has a setting of its own: TorchDistributor's
barrier stage runs under a task-only profile of one whole GPU and
`spark.kale.student.task.cpus` CPUs (default spark.executor.cores: the DataLoader's
workers) per task, so `student.train.num_processes` ranks get one GPU each whatever the
fractional `spark.task.resource.gpu.amount` of the CPU stages is. Stock
TorchDistributor reads that fraction as the GPUs per rank (and refuses it below 1);
`student_distributor` builds one that uses the profile instead. XGBoost's Spark
estimators schedule their barrier stage the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MODEL_TASK_CPUS_KEY",
    "MODEL_TASK_GPUS_KEY",
    "STUDENT_TASK_CPUS_KEY",
    "ModelTaskResources",
    "model_slots",
    "model_stage_profile",
    "model_task_resources",
    "student_distributor",
    "student_task_resources",
]

log = logging.getLogger(__name__)

MODEL_TASK_GPUS_KEY = "spark.kale.model.task.gpu.amount"
MODEL_TASK_CPUS_KEY = "spark.kale.model.task.cpus"
EXECUTOR_GPUS_KEY = "spark.executor.resource.gpu.amount"
STUDENT_TASK_CPUS_KEY = "spark.kale.student.task.cpus"


@dataclass(frozen=True)
class ModelTaskResources:
    """GPUs and CPUs one model task needs."""

    gpus: float
    cpus: int

    def __post_init__(self) -> None:
        if not self.gpus > 0:
            raise ValueError(f"{MODEL_TASK_GPUS_KEY} must be > 0, got {self.gpus}")
        # Spark's rule: a fraction shares one GPU between 1/amount tasks; above 1,
        # whole GPUs only.
        if self.gpus > 1 and not float(self.gpus).is_integer():
            raise ValueError(f"{MODEL_TASK_GPUS_KEY} above 1 must be whole, got {self.gpus}")
        if self.cpus < 1:
            raise ValueError(f"{MODEL_TASK_CPUS_KEY} must be >= 1, got {self.cpus}")


def _number(conf: Mapping[str, str], key: str, default: str, kind: type) -> Any:
    raw = conf.get(key, default)
    try:
        return kind(float(raw)) if kind is int else kind(raw)
    except ValueError:
        raise ValueError(f"{key}: expected a number, got {raw!r}") from None


def model_task_resources(conf: Mapping[str, str]) -> ModelTaskResources | None:
    """A model task's resources from Spark properties; None without executor GPUs."""
    master = conf.get("spark.master", "")
    executor_gpus = _number(conf, EXECUTOR_GPUS_KEY, "0", float)
    if master.startswith("local") or executor_gpus <= 0:
        return None
    gpus = _number(conf, MODEL_TASK_GPUS_KEY, "1", float)
    if gpus > executor_gpus:
        raise ValueError(
            f"{MODEL_TASK_GPUS_KEY}={gpus} is more than an executor has "
            f"({EXECUTOR_GPUS_KEY}={executor_gpus}); no model task could ever run"
        )
    cpus = _number(conf, MODEL_TASK_CPUS_KEY, conf.get("spark.executor.cores", "1"), int)
    return ModelTaskResources(gpus=gpus, cpus=cpus)


def model_stage_profile(spark: Any):
    """The ``pyspark.resource.ResourceProfile`` for model stages, or None (no GPUs)."""
    conf = dict(spark.sparkContext.getConf().getAll())
    resources = model_task_resources(conf)
    if resources is None:
        log.info("no executor GPUs configured: model stages use the default resource profile")
        return None
    from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

    requests = TaskResourceRequests().cpus(resources.cpus).resource("gpu", resources.gpus)
    profile = ResourceProfileBuilder().require(requests).build
    log.info("model stages: %s GPU and %d CPUs per task", resources.gpus, resources.cpus)
    return profile


def model_slots(spark: Any) -> int:
    """Model tasks the cluster runs at once: its cores (Spark's default parallelism)
    over the CPUs one model task takes (1 without a model profile). A chunk gives each
    slot work (stages/chunks.py)."""
    try:
        sc = spark.sparkContext
        cores = int(sc.defaultParallelism)
        resources = model_task_resources(dict(sc.getConf().getAll()))
    except Exception:  # Spark Connect: no SparkContext on the driver
        return max(1, int(spark.conf.get("spark.default.parallelism", "1") or 1))
    cpus = resources.cpus if resources is not None else 1
    return max(1, cores // cpus)


def student_task_resources(conf: Mapping[str, str]) -> ModelTaskResources | None:
    """One training rank's resources: a whole GPU and ``spark.kale.student.task.cpus``
    CPUs; None without executor GPUs (local mode, CPU clusters)."""
    master = conf.get("spark.master", "")
    executor_gpus = _number(conf, EXECUTOR_GPUS_KEY, "0", float)
    if master.startswith("local") or executor_gpus <= 0:
        return None
    if executor_gpus < 1:
        raise ValueError(f"{EXECUTOR_GPUS_KEY}={executor_gpus}: a training rank needs a whole GPU")
    cpus = _number(conf, STUDENT_TASK_CPUS_KEY, conf.get("spark.executor.cores", "1"), int)
    return ModelTaskResources(gpus=1.0, cpus=cpus)


def _task_profile(resources: ModelTaskResources) -> Any:
    from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

    requests = TaskResourceRequests().cpus(resources.cpus).resource("gpu", resources.gpus)
    return ResourceProfileBuilder().require(requests).build


class _UnderProfile:
    """TorchDistributor's barrier input whose ``mapInArrow`` runs under ``profile``."""

    def __init__(self, df: Any, profile: Any) -> None:
        self._df, self._profile = df, profile

    @property
    def schema(self) -> Any:
        return self._df.schema

    def mapInArrow(self, func: Any, schema: Any, barrier: bool = False) -> Any:  # noqa: N802
        return self._df.mapInArrow(func, schema, barrier=barrier, profile=self._profile)


def student_distributor(spark: Any, scfg: Any, conf: Mapping[str, str] | None = None) -> Any:
    """A ``TorchDistributor`` for ``student.train.num_processes`` ranks (``scfg``: the
    StudentTrainConfig), one whole GPU each on a GPU cluster (``student_task_resources``),
    ``conf`` the Spark properties (default: the session's). Its ``profile`` is the
    barrier stage's ResourceProfile, None where the stock behaviour applies (local
    mode, CPUs)."""
    from pyspark.ml.torch.distributor import TorchDistributor

    conf = dict(spark.sparkContext.getConf().getAll()) if conf is None else conf
    cluster_gpus = scfg.use_gpu and not scfg.local_mode
    resources = student_task_resources(conf) if cluster_gpus else None
    if cluster_gpus and resources is None:
        raise ValueError(
            "student.train.use_gpu with student.train.local_mode false needs GPUs on the executors "
            f"({EXECUTOR_GPUS_KEY}, e.g. conf/spark/gpu-cluster.conf)"
        )
    profile = _task_profile(resources) if resources else None

    class StudentDistributor(TorchDistributor):
        def _get_num_tasks(self) -> int:
            # One rank per task, each holding the whole GPU the profile asks for.
            return self.num_processes if profile is not None else super()._get_num_tasks()

        def _run_distributed_training(self, wrapper, train, run_file, df, *args, **kwargs):
            if profile is not None:
                n = self.num_tasks
                df = _UnderProfile(self.spark.range(0, n, 1, n) if df is None else df, profile)
            return super()._run_distributed_training(wrapper, train, run_file, df, *args, **kwargs)

    distributor = StudentDistributor(
        num_processes=scfg.num_processes, local_mode=scfg.local_mode, use_gpu=scfg.use_gpu
    )
    distributor.profile = profile
    if resources is not None:
        log.info(
            "student training: %d ranks, each 1 GPU and %d CPUs (barrier stage profile)",
            scfg.num_processes,
            resources.cpus,
        )
    return distributor
