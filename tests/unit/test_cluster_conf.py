"""Cluster-facing configuration: Spark properties files, the Databricks job, resources.

No Spark session: these read the files and call the pure functions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kale_spark.spark import jars
from kale_spark.spark.resources import (
    ModelTaskResources,
    model_task_resources,
    student_task_resources,
)
from kale_spark.spark.session import _master_in_defaults, _master_in_submit_args, given_master

REPO = Path(__file__).resolve().parents[2]
SPARK_CONFS = sorted((REPO / "conf" / "spark").glob("*.conf"))
JOB = REPO / "conf" / "databricks" / "kale_job.json"


def _props(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split(None, 1)
            out[key] = value.strip()
    return out


# --- Spark properties files -------------------------------------------------------


def test_jar_coordinates_in_conf_files_come_from_jars_py():
    """`make conf` output is committed: a stale coordinate fails here."""
    assert jars.stale_conf_files(SPARK_CONFS) == []
    gpu = _props(REPO / "conf" / "spark" / "gpu-cluster.conf")
    delta = jars.delta_packages()
    assert gpu["spark.jars.packages"] == f"{delta},com.nvidia:rapids-4-spark_2.13:26.08.1"
    assert _props(REPO / "conf" / "spark" / "local.conf")["spark.jars.packages"] == delta
    # Databricks runtimes bring Delta: no jar lines there.
    assert not any(k.startswith("spark.jars") for k in _props(REPO / "conf/spark/databricks.conf"))
    # Written once: no other line of any conf file names a coordinate.
    for path in SPARK_CONFS:
        body = [ln for ln in path.read_text().splitlines() if not ln.startswith("spark.jars.")]
        assert not re.search(r"io\.delta:|com\.nvidia:rapids", "\n".join(body)), path.name


def test_delta_session_settings_live_only_in_session_py():
    """session_conf is the one home of Delta's extension and catalog: kale applies them
    when it builds the session (spark-submit included), so no conf file repeats them."""
    from kale_spark.config import SparkConfig
    from kale_spark.spark.session import session_conf

    conf = session_conf(SparkConfig())
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.sql.catalog.spark_catalog"] == (
        "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    )
    for path in SPARK_CONFS:
        props = _props(path)
        assert "spark.sql.extensions" not in props, path.name
        assert "spark.sql.catalog.spark_catalog" not in props, path.name


def test_render_conf_rewrites_stale_jar_lines_only():
    stale = (
        "spark.plugins  com.nvidia.spark.SQLPlugin\n"
        "spark.jars.packages  io.delta:old:1\n"
        "spark.jars.excludes     x:y\n"
    )
    out = jars.render_conf(stale).splitlines()
    assert out[0] == "spark.plugins  com.nvidia.spark.SQLPlugin"
    assert out[1] == f"spark.jars.packages  {jars.packages(rapids=True)}"
    assert out[2] == f"spark.jars.excludes     {','.join(jars.SPARK_PROVIDED_EXCLUDES)}"
    local = jars.render_conf("spark.jars.packages x\n")
    assert local == f"spark.jars.packages {jars.delta_packages()}\n"
    assert jars.render_conf("spark.master local\n") == "spark.master local\n"


def test_gpu_cluster_conf_is_complete():
    conf = _props(REPO / "conf" / "spark" / "gpu-cluster.conf")
    text = (REPO / "conf" / "spark" / "gpu-cluster.conf").read_text()
    assert not re.search(r"<|TODO|FIXME|CHANGEME|your-", text)  # no placeholders
    assert conf["spark.plugins"] == "com.nvidia.spark.SQLPlugin"
    assert conf["spark.executor.resource.gpu.discoveryScript"] == "./getGpusResources.sh"
    assert conf["spark.files"] == "conf/spark/getGpusResources.sh"
    assert (REPO / conf["spark.files"]).stat().st_mode & 0o111  # executable
    cores = int(conf["spark.executor.cores"])
    # Fetch runs wide: one core per default task, not one task per executor.
    assert int(conf["spark.task.cpus"]) == 1 < cores
    assert float(conf["spark.task.resource.gpu.amount"]) == 1 / cores
    # RAPIDS leaves torch most of the GPU.
    assert float(conf["spark.rapids.memory.gpu.maxAllocFraction"]) <= 0.25
    assert float(conf["spark.rapids.memory.gpu.allocFraction"]) <= float(
        conf["spark.rapids.memory.gpu.maxAllocFraction"]
    )
    assert float(conf["spark.rapids.memory.gpu.minAllocFraction"]) <= float(
        conf["spark.rapids.memory.gpu.allocFraction"]
    )
    assert int(conf["spark.rapids.sql.concurrentGpuTasks"]) >= 1
    assert conf["spark.python.worker.reuse"] == "true"
    assert int(conf["spark.sql.execution.arrow.maxRecordsPerBatch"]) > 0
    # One model per GPU for the model stages, through the stage-level resource profile.
    assert model_task_resources({**conf, "spark.master": "yarn"}) == ModelTaskResources(
        gpus=1.0, cpus=cores
    )
    # Student training: one whole GPU per rank, whatever the default task's fraction.
    assert student_task_resources({**conf, "spark.master": "yarn"}) == ModelTaskResources(
        gpus=1.0, cpus=cores
    )


def test_the_cluster_page_explains_every_gpu_cluster_setting():
    readme = (REPO / "docs" / "cluster.md").read_text()
    section = readme.split("### GPU cluster settings", 1)[1].split("\n## ", 1)[0]
    for key in _props(REPO / "conf" / "spark" / "gpu-cluster.conf"):
        assert f"`{key}`" in section, key
    assert "`spark.executor.pyspark.memory`" in section


# --- stage-level resources ----------------------------------------------------------


def test_model_task_resources():
    assert model_task_resources({"spark.master": "local[2]"}) is None
    gpu = {"spark.master": "spark://h:7077", "spark.executor.resource.gpu.amount": "1"}
    assert model_task_resources({**gpu, "spark.master": "local[*]"}) is None
    assert model_task_resources(gpu) == ModelTaskResources(gpus=1.0, cpus=1)
    shared = {**gpu, "spark.kale.model.task.gpu.amount": "0.5", "spark.executor.cores": "8"}
    assert model_task_resources(shared) == ModelTaskResources(gpus=0.5, cpus=8)
    with pytest.raises(ValueError, match="more than an executor has"):
        model_task_resources({**gpu, "spark.kale.model.task.gpu.amount": "2"})
    with pytest.raises(ValueError, match="must be whole"):
        ModelTaskResources(gpus=1.5, cpus=1)
    with pytest.raises(ValueError, match="expected a number"):
        model_task_resources({**gpu, "spark.kale.model.task.cpus": "many"})


# --- the master: the launcher wins ---------------------------------------------------


def test_master_given_outside_the_profile(tmp_path, monkeypatch):
    for var in ("SPARK_MASTER", "MASTER", "PYSPARK_SUBMIT_ARGS", "PYSPARK_GATEWAY_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    assert given_master() is None  # the profile's master applies
    assert given_master({"spark.master": "yarn"}) == "yarn"  # spark-submit's SparkConf
    (tmp_path / "spark-defaults.conf").write_text("# c\nspark.master   spark://h:7077\n")
    assert given_master() == "spark://h:7077"
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--master k8s://https://api:6443 pyspark-shell")
    assert given_master() == "k8s://https://api:6443"
    monkeypatch.setenv("SPARK_MASTER", "spark://env:7077")
    assert given_master() == "spark://env:7077"
    assert _master_in_submit_args("--conf spark.master=local[3] x") == "local[3]"
    assert _master_in_submit_args("--master=yarn") == "yarn"
    assert _master_in_submit_args("--name x pyspark-shell") is None
    assert _master_in_defaults(tmp_path / "missing.conf") is None


# --- the Databricks job ---------------------------------------------------------------


def test_databricks_job_has_the_fields_jobs_api_2_1_requires():
    job = json.loads(JOB.read_text())
    assert isinstance(job["name"], str) and job["name"]
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    for cluster in clusters.values():
        assert cluster["spark_version"] and cluster["node_type_id"]
        assert ("num_workers" in cluster) != ("autoscale" in cluster)
    gpu_versions = [
        c["spark_version"] for c in clusters.values() if "-gpu-ml-" in c["spark_version"]
    ]
    assert gpu_versions, "a GPU job cluster (an ML GPU runtime)"
    params = {p["name"] for p in job["parameters"]}
    assert {"profile", "lake_root"} <= params

    tasks = job["tasks"]
    keys = [t["task_key"] for t in tasks]
    assert len(set(keys)) == len(keys)
    wheel = f"kale_spark-{_version()}-py3-none-any.whl"
    for i, task in enumerate(tasks):
        kinds = [k for k in task if k.endswith("_task")]
        assert kinds == ["python_wheel_task"], task["task_key"]
        deps = [d["task_key"] for d in task.get("depends_on", [])]
        assert deps == ([] if i == 0 else [keys[i - 1]])  # the pipeline's order
        assert task["job_cluster_key"] in clusters
        (lib,) = task["libraries"]
        assert lib["whl"].endswith("/" + wheel)
        wt = task["python_wheel_task"]
        assert wt["package_name"] == "kale_spark" and wt["entry_point"] == "kale"
        assert task["task_key"].startswith(wt["parameters"][0])  # `kale <stage>`
        refs = set(re.findall(r"\{\{job\.parameters\.(\w+)\}\}", " ".join(wt["parameters"])))
        assert refs <= params
        assert "spark.delta_packages=false" in wt["parameters"]  # Delta is built in
    gpu_commands = {
        t["python_wheel_task"]["parameters"][0]
        for t in tasks
        if "gpu-ml" in clusters[t["job_cluster_key"]]["spark_version"]
    }
    assert gpu_commands == {"caption", "augment", "train-student", "student-caption"}


def test_databricks_job_has_a_task_for_every_stage_of_kale_run():
    """`kale run` (pipeline.stages) and the job run the same commands in the same order:
    both KALE stages, the second filter included, so publish sees the student's rows."""
    from kale_spark.cli.pipeline import stages

    expected = [m.__name__.rsplit(".", 1)[-1].replace("_", "-") for m in stages()]
    tasks = json.loads(JOB.read_text())["tasks"]
    assert [t["python_wheel_task"]["parameters"][0] for t in tasks] == expected
    assert "train-student" in expected and "student-caption" in expected


def test_databricks_gpu_cluster_holds_the_paper_students_ranks():
    """train-student's barrier stage needs student.train.num_processes GPUs at once."""
    from kale_spark.config import load_config
    from kale_spark.spark.resources import student_task_resources

    job = json.loads(JOB.read_text())
    (task,) = [t for t in job["tasks"] if t["task_key"] == "train-student"]
    cluster = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}[
        task["job_cluster_key"]
    ]
    conf = {**cluster["spark_conf"], "spark.master": "databricks"}
    resources = student_task_resources(conf)
    assert resources is not None and resources.gpus == 1.0
    gpus = cluster["num_workers"] * float(conf["spark.executor.resource.gpu.amount"])
    assert gpus >= load_config(REPO / "conf" / "paper.yaml").student.train.num_processes


def test_databricks_job_runs_the_cli_commands_that_exist():
    from kale_spark.cli.commands import build_parser

    parser = build_parser()
    for task in json.loads(JOB.read_text())["tasks"]:
        args = [
            a.replace("{{job.parameters.", "").replace("}}", "")
            for a in task["python_wheel_task"]["parameters"]
        ]
        ns = parser.parse_args(args)
        assert ns.command == args[0] and task["task_key"].startswith(ns.command)


def _version() -> str:
    text = (REPO / "pyproject.toml").read_text()
    return re.search(r'^version = "(.+)"', text, re.M).group(1)
