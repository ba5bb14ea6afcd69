"""`spark-submit` to a real standalone cluster: the whole pipeline, executors in their own JVMs.

The library travels as a cluster user ships it: `make dist` builds the zip and
`--py-files` hands it to the driver and the executors (PYTHONPATH is cleared, so
nothing imports the checkout). The profile (conf/local.yaml) says `local[2]`; the
`--master` given to spark-submit must win, and the master's application list and
the worker's work dir must show that the executors ran on the worker.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kale_spark.config import load_config
from kale_spark.split import is_teacher
from tests.support.standalone import submit_cmd

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "conf" / "local.yaml"
ROWS = 12


def _read_delta(path: Path):
    from deltalake import DeltaTable

    return DeltaTable(str(path)).to_pyarrow_table()


@pytest.fixture(scope="module")
def submitted(standalone_cluster, dist_zip, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("submit")
    lake, sample = tmp / "lake", tmp / "sample"
    cmd = [
        *submit_cmd(
            standalone_cluster, dist_zip, "kale-cluster-test", REPO / "jobs" / "run_all.py"
        ),
        "--config", str(LOCAL),
        "--sample-rows", str(ROWS),
        "--set", f"lake.root={lake}",
        "--set", f"sample.out={sample}",
        "--set", "sample.bad_fraction=0.0",
        "--set", f"ingest.input={sample / 'metadata'}",
        "--set", f"models.cache_dir={tmp / 'models'}",
        "--set", f"fetch.file_root={sample}",  # the sample's images are local files
        "--set", "filter.min_words=1",  # the tiny teacher's noise must reach the student
        "--set", "spark.master=local[2]",  # the profile's master: must lose to --master
    ]  # fmt: skip
    proc = subprocess.run(
        cmd,
        cwd=tmp,  # not the checkout: kale_spark must come from the zip
        env=standalone_cluster.env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    (tmp / "submit.log").write_text(proc.stdout + "\n" + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return {"lake": lake, "sample": sample, "out": proc.stdout, "err": proc.stderr}


def test_whole_pipeline_runs_through_spark_submit(submitted):
    uids = set(pq.read_table(submitted["sample"] / "metadata").column("uid").to_pylist())
    assert len(uids) == ROWS
    lake = submitted["lake"]
    # Both stages: the teacher's share by the uid-hash split, the student the rest.
    teacher = {u for u in uids if is_teacher(u, load_config(LOCAL).split.teacher_fraction)}
    assert teacher and teacher != uids
    for table, expected in (
        ("samples", uids),
        ("images", uids),
        ("dense_captions", teacher),
        ("stage1_captions", teacher),
        ("stage2_captions", uids - teacher),
        ("filtered_captions", uids),
    ):
        rows = _read_delta(lake / table)
        assert set(rows.column("uid").to_pylist()) == expected, table
    images = _read_delta(lake / "images")
    assert set(images.column("status").to_pylist()) == {"ok"}
    filtered = _read_delta(lake / "filtered_captions").to_pylist()
    kept = {r["uid"] for r in filtered if not r["rejected"]}
    assert set(_read_delta(lake / "kale").column("uid").to_pylist()) == kept
    for stage in (
        "ingest",
        "fetch",
        "caption",
        "augment",
        "filter",
        "train-student",
        "student-caption",
        "publish",
    ):
        assert f"[{stage}] ok" in submitted["out"]


def test_submitted_master_wins_and_executors_ran_on_the_worker(submitted, standalone_cluster):
    # The driver ran against the cluster, not the profile's local[2].
    logs = submitted["out"] + submitted["err"]
    assert f"Spark 4.2.0 session started ({standalone_cluster.url})" in logs
    assert "the profile's local[2] is not used" in logs
    apps = standalone_cluster.state()["completedapps"]
    (app,) = [a for a in apps if a["name"] == "kale-cluster-test"]
    assert app["state"] == "FINISHED"
    # The worker launched the app's executors in its work dir: one dir per executor,
    # each holding the zip it fetched and the executor JVM's log.
    executor_dirs = sorted((standalone_cluster.work_dir / app["id"]).iterdir())
    assert executor_dirs
    for d in executor_dirs:
        assert (d / "stderr").is_file()
        assert sorted(p.name for p in d.glob("*.zip")) == ["kale_spark-0.1.0.zip"]
    executor_logs = "".join((d / "stderr").read_text() for d in executor_dirs)
    assert "CoarseGrainedExecutorBackend" in executor_logs


def test_model_stage_profile_gets_one_gpu_per_task_on_the_cluster(
    standalone_cluster, dist_zip, tmp_path
):
    """kale_spark.spark.resources.model_stage_profile on a real cluster: tasks of the profiled
    stage each get the worker's GPU and the configured CPUs; default tasks get one CPU and
    no GPU, so they run two at a time beside it."""
    import json

    cmd = [
        str(Path(standalone_cluster.env["SPARK_HOME"]) / "bin" / "spark-submit"),
        "--master", standalone_cluster.url,
        "--py-files", str(dist_zip),
        "--name", "kale-profile-test",
        "--driver-memory", "512m",
        "--executor-memory", "512m",
        "--conf", "spark.executor.cores=2",
        "--conf", "spark.cores.max=2",
        "--conf", "spark.executor.resource.gpu.amount=1",
        "--conf", "spark.kale.model.task.cpus=2",
        "--conf", f"spark.pyspark.python={sys.executable}",
        "--conf", f"spark.pyspark.driver.python={sys.executable}",
        "--conf", "spark.ui.enabled=false",
        str(Path(__file__).with_name("profile_job.py")),
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=standalone_cluster.env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    result = json.loads(line[len("RESULT ") :])
    assert result["profile_id"] not in (None, 0)  # not the default profile (id 0)
    assert result["model"] == [[i, "0", 2] for i in range(8)]
    assert result["default"] == [[i, "", 1] for i in range(8)]


def test_student_training_ranks_get_a_whole_gpu_on_the_cluster(
    standalone_cluster, dist_zip, tmp_path
):
    """TorchDistributor's barrier stage under train-student's own profile, on a real
    cluster whose default task holds half a GPU (stock TorchDistributor refuses that):
    the rank runs in a barrier task given the worker's whole GPU."""
    import json

    cmd = [
        str(Path(standalone_cluster.env["SPARK_HOME"]) / "bin" / "spark-submit"),
        "--master", standalone_cluster.url,
        "--py-files", str(dist_zip),
        "--name", "kale-student-distributor-test",
        "--driver-memory", "512m",
        "--executor-memory", "512m",
        "--conf", "spark.executor.cores=2",
        "--conf", "spark.cores.max=2",
        "--conf", "spark.executor.resource.gpu.amount=1",
        "--conf", "spark.task.resource.gpu.amount=0.5",
        "--conf", "spark.kale.student.task.cpus=2",
        "--conf", f"spark.pyspark.python={sys.executable}",
        "--conf", f"spark.pyspark.driver.python={sys.executable}",
        "--conf", "spark.ui.port=0",  # the job reads its stages from the status API
        str(Path(__file__).with_name("student_distributor_job.py")),
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=standalone_cluster.env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    result = json.loads(line[len("RESULT ") :])
    assert result["num_tasks"] == 1
    assert result["profile_id"] not in (None, 0)  # not the default profile (id 0)
    # the barrier stage, the app's only one, ran under that profile
    assert result["stages"] == [
        {"resourceProfileId": result["profile_id"], "numTasks": 1, "status": "COMPLETE"}
    ]
    assert result["rank0"] == {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "CUDA_VISIBLE_DEVICES": "0",  # the worker's (only) GPU, whole
    }
