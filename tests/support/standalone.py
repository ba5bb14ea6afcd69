"""A real Spark standalone cluster on 127.0.0.1: one master, one worker, stopped after.

Both daemons come from pyspark's own distribution (`bin/spark-class`), so it needs
nothing but the project's virtual environment and a JDK. The worker keeps its
executors' work dirs. With ``fake_gpu`` it also advertises one GPU, found by a
stand-in discovery script (this machine has none), so stage-level scheduling can be
exercised: Spark hands the address to the tasks that ask for a GPU, as it would a real
one. Used by the cluster tests (tests/cluster/conftest.py) and by bench/scale.py,
whose driver-memory figures need a driver JVM that runs no tasks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Cluster:
    url: str  # spark://127.0.0.1:PORT
    webui: str  # http://127.0.0.1:PORT
    work_dir: Path
    env: dict[str, str]

    def state(self) -> dict:
        with urllib.request.urlopen(f"{self.webui}/json", timeout=10) as resp:
            return json.load(resp)


FAKE_GPUS = '#!/usr/bin/env bash\necho \'{"name": "gpu", "addresses": ["0"]}\'\n'


def _daemon_env(tmp: Path, fake_gpu: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the cluster ships kale_spark itself (--py-files)
    conf_dir = tmp / "conf"
    conf_dir.mkdir(exist_ok=True)
    env.update(
        SPARK_HOME=str(spark_home()),
        SPARK_CONF_DIR=str(conf_dir),  # no stray spark-defaults.conf
        SPARK_LOG_DIR=str(tmp / "logs"),
        SPARK_DAEMON_MEMORY="256m",
        SPARK_LOCAL_IP="127.0.0.1",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    if fake_gpu:
        script = tmp / "fake_gpus.sh"
        script.write_text(FAKE_GPUS)
        script.chmod(0o755)
        env["SPARK_WORKER_OPTS"] = (
            "-Dspark.worker.resource.gpu.amount=1 "
            f"-Dspark.worker.resource.gpu.discoveryScript={script}"
        )
    return env


def _start(cls: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    spark_class = spark_home() / "bin" / "spark-class"
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(spark_class), cls, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one below
        )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _wait_for_worker(cluster: Cluster, procs: list[subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        try:
            if any(w["state"] == "ALIVE" for w in cluster.state().get("workers", [])):
                return
        except (OSError, ValueError):  # not up yet, or a half-started web UI
            pass
        time.sleep(1)
    text = "\n".join(p.read_text()[-2000:] for p in sorted(logs.glob("*.log")))
    raise RuntimeError(f"standalone cluster did not come up:\n{text}")


@contextlib.contextmanager
def standalone(
    tmp: Path, cores: int = 2, memory: str = "2g", fake_gpu: bool = False
) -> Iterator[Cluster]:
    """A master and one worker of `cores` and `memory` under `tmp`, up until the exit."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = _daemon_env(tmp, fake_gpu)
    port, webui_port = free_port(), free_port()
    cluster = Cluster(
        url=f"spark://127.0.0.1:{port}",
        webui=f"http://127.0.0.1:{webui_port}",
        work_dir=tmp / "work",
        env=env,
    )
    master_args = ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(webui_port)]
    worker_args = ["--host", "127.0.0.1", "--cores", str(cores), "--memory", memory]
    worker_args += ["--webui-port", str(free_port()), "--work-dir", str(cluster.work_dir)]
    procs: list[subprocess.Popen] = []
    try:
        procs.append(
            _start("org.apache.spark.deploy.master.Master", master_args, env, tmp / "master.log")
        )
        procs.append(
            _start(
                "org.apache.spark.deploy.worker.Worker",
                [*worker_args, cluster.url],
                env,
                tmp / "worker.log",
            )
        )
        _wait_for_worker(cluster, procs, tmp)
        yield cluster
    finally:
        for proc in reversed(procs):
            _stop(proc)


def submit_cmd(cluster: Cluster, dist_zip: Path, name: str, script: Path) -> list[str]:
    """spark-submit of `script` to `cluster` as a cluster user runs kale: the library
    from `make dist`'s zip, Delta's jars from conf/spark/local.conf, one executor of
    the worker's 2 cores, this interpreter for the Python workers. Append the
    script's own arguments."""
    repo = Path(__file__).resolve().parents[2]
    return [
        str(Path(cluster.env["SPARK_HOME"]) / "bin" / "spark-submit"),
        "--master", cluster.url,
        "--properties-file", str(repo / "conf" / "spark" / "local.conf"),  # Delta's jars
        "--py-files", str(dist_zip),
        "--name", name,
        "--driver-memory", "1g",
        "--executor-memory", "1g",
        "--conf", "spark.cores.max=2",
        "--conf", "spark.executor.cores=2",
        "--conf", f"spark.pyspark.python={sys.executable}",
        "--conf", f"spark.pyspark.driver.python={sys.executable}",
        "--conf", "spark.sql.shuffle.partitions=2",
        "--conf", "spark.default.parallelism=2",
        "--conf", "spark.ui.enabled=false",
        # Tens of rows: Delta's log replay and file listing need no 50-way parallelism.
        "--conf", "spark.databricks.delta.snapshotPartitions=2",
        "--conf", "spark.sql.sources.parallelPartitionDiscovery.parallelism=2",
        str(script),
    ]  # fmt: skip
