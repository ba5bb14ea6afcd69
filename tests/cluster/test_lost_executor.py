"""Lose an executor, not the driver: on the standalone cluster, SIGKILL the executor
JVM while fetch is fetching, and again (its replacement) while caption is mid-chunk.

The application finishes through Spark's task retry (the master starts a new
executor each time); `images` and `dense_captions` hold every uid once; the model
work redone is at most the chunks in flight (the model's batch log counts every row
the model generated, retries included) and the fetches redone at most the rows of
the lost tasks (the server's request log). Kill moments are found by polling the
server's requests and the batch log, never by sleeping.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from kale_spark.sources.sample import generate_sample
from kale_spark.spark.udf import BATCH_LOG_ENV, read_batch_log
from kale_spark.stages.chunks import LANES
from tests.support import kills
from tests.support.http_server import LocalHTTPServer, Route
from tests.support.standalone import submit_cmd

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
ROWS = 12
ROWS_PER_COMMIT = 3
SERVE_DELAY_S = 1.0  # each image answer waits: a fetch task is in flight for seconds


def _executors(work_dir: Path) -> list[psutil.Process]:
    """Live executor JVMs of this cluster (their working dir is under its work dir)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            if "CoarseGrainedExecutorBackend" in cmd and str(work_dir) in proc.cwd():
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _kill_executor_when(ready, work_dir: Path, submit: subprocess.Popen, what: str) -> int:
    """SIGKILL the live executor JVM once `ready()` holds; its pid."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if submit.poll() is not None:
            raise AssertionError(f"the application ended before the {what} kill")
        live = _executors(work_dir) if ready() else []
        if live:
            # Normally one; a replaced executor may still be exiting beside its
            # successor (seen once in CI). Kill every one; the newest is the app's.
            for executor in live:
                executor.send_signal(signal.SIGKILL)
            return max(live, key=lambda p: p.create_time()).pid
        time.sleep(kills.POLL_S)
    raise AssertionError(f"never reached the {what} kill point")


def _submit_cmd(cluster, dist_zip: Path, overrides: list[str]) -> list[str]:
    job = Path(__file__).with_name("lost_executor_job.py")
    return [*submit_cmd(cluster, dist_zip, "kale-lost-executor-test", job), *overrides]


def _overrides(tmp: Path) -> list[str]:
    return [
        f"lake.root={tmp / 'lake'}",
        f"ingest.input={tmp / 'sample' / 'metadata'}",
        f"models.cache_dir={tmp / 'models'}",
        "fetch.allow_networks=[127.0.0.0/8]",
        "split.teacher_fraction=1.0",
        "caption.batch_size=1",
        f"caption.rows_per_commit={ROWS_PER_COMMIT}",
        "caption.generation.max_new_tokens=16",
        "caption.generation.min_new_tokens=16",
    ]


def _serve_sample(server: LocalHTTPServer, tmp: Path) -> list[str]:
    """The sample's images, each answered after SERVE_DELAY_S; their paths."""
    generate_sample(
        tmp / "sample", ROWS, bad_fraction=0.0, seed=3, max_side=120, base_url=server.url("/")
    )
    paths = []
    for f in sorted((tmp / "sample" / "images").iterdir()):
        server.add(f"/images/{f.name}", Route(body=f.read_bytes(), delay_s=SERVE_DELAY_S))
        paths.append(f"/images/{f.name}")
    return paths


def _drive(cluster, submit: subprocess.Popen, server, paths: list[str], batch_log: Path) -> dict:
    """Both kills; what was done at each (answered fetches, generated rows)."""
    at: dict = {}

    def fetch_in_flight() -> bool:
        with server._lock:  # answers finished (their spans) at the kill
            at["fetch_answered"] = sum(p.startswith("/images/") for p, *_ in server.spans)
        return sum(server.requests_to(p) for p in paths) >= 1

    def chunk_in_flight() -> bool:
        at["caption_rows"] = sum(b["rows"] for b in read_batch_log(batch_log))
        return at["caption_rows"] >= 1

    at["pids"] = (
        _kill_executor_when(fetch_in_flight, cluster.work_dir, submit, "fetch"),
        _kill_executor_when(chunk_in_flight, cluster.work_dir, submit, "caption"),
    )
    return at


@pytest.fixture(scope="module")
def lost_executors(standalone_cluster, dist_zip, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lost-executor")
    server = LocalHTTPServer().start()
    batch_log = tmp / "batches.jsonl"
    env = {**standalone_cluster.env, BATCH_LOG_ENV: str(batch_log)}
    try:
        paths = _serve_sample(server, tmp)
        cmd = _submit_cmd(standalone_cluster, dist_zip, _overrides(tmp))
        with (tmp / "submit.log").open("wb") as out:
            submit = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            at = _drive(standalone_cluster, submit, server, paths, batch_log)
            rc = submit.wait(timeout=900)
        finally:
            if submit.poll() is None:
                submit.kill()
                submit.wait(timeout=60)
            log = (tmp / "submit.log").read_text(errors="replace")
            print(log[-6000:])  # shown when the fixture fails
        assert rc == 0, log[-5000:]
        (line,) = [ln for ln in log.splitlines() if ln.startswith("RESULT ")]
        (app,) = [ln.split()[1] for ln in log.splitlines() if ln.startswith("APP ")]
        return {
            **at,
            "tmp": tmp,
            "app": app,
            "result": json.loads(line[len("RESULT ") :]),
            "requests": {p: server.requests_to(p) for p in paths},
            "model_rows": sum(b["rows"] for b in read_batch_log(batch_log)),
        }
    finally:
        server.stop()


def test_the_application_finishes_on_new_executors(lost_executors, standalone_cluster):
    (app,) = [
        a for a in standalone_cluster.state()["completedapps"] if a["id"] == lost_executors["app"]
    ]
    assert app["state"] == "FINISHED"
    # Two executors were lost, each replaced: three executor dirs for the app.
    executor_dirs = list((standalone_cluster.work_dir / app["id"]).iterdir())
    assert len(executor_dirs) >= 3
    assert len(set(lost_executors["pids"])) == 2
    result = lost_executors["result"]
    assert {r["status"] for r in result.values()} == {"ok"}


def test_fetch_lost_nothing_and_duplicated_nothing(lost_executors):
    lake = lost_executors["tmp"] / "lake"
    rows = kills.read_table(lake, "images")
    uids = [r["uid"] for r in rows]
    assert len(uids) == len(set(uids)) == ROWS
    assert {r["status"] for r in rows} == {"ok"}
    # Killed mid-fetch: requests made, not all answered; the redone fetches are at
    # most the lost tasks' rows (every row once more at worst).
    assert lost_executors["fetch_answered"] < ROWS
    requests = lost_executors["requests"]
    assert all(n >= 1 for n in requests.values())
    assert sum(requests.values()) <= 2 * ROWS


def test_caption_redoes_at_most_the_chunks_in_flight(lost_executors):
    lake = lost_executors["tmp"] / "lake"
    keys = [
        (r["uid"], r["model"], r["prompt_id"]) for r in kills.read_table(lake, "dense_captions")
    ]
    assert len(keys) == len(set(keys)) == ROWS
    result = lost_executors["result"]["caption"]
    assert result["generated"] == ROWS and result["failed"] == 0
    assert lost_executors["caption_rows"] < ROWS  # killed mid-stage
    model_rows = lost_executors["model_rows"]
    redone = model_rows - ROWS
    # Work redone: the rows of the chunks the lost executor held, at most LANES chunks.
    assert 0 <= redone <= LANES * ROWS_PER_COMMIT, model_rows
