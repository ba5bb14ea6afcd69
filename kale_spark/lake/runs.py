"""Run bookkeeping: a run id per stage run, and one row per run in the `runs` table.

    with stage_run(lake, cfg, "ingest") as run:
        ...
        run.counts["inserted"] = n
        run.output_versions["samples"] = v

A failed stage still logs its row (status `failed`, the error) before re-raising.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from kale_spark import __version__, schema
from kale_spark.config import Config
from kale_spark.lake.contracts import check_reads
from kale_spark.lake.frames import local_frame
from kale_spark.lake.tables import Lake

log = logging.getLogger(__name__)


def new_run_id(stage: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stage}-{stamp}-{uuid.uuid4().hex[:8]}"


@dataclass
class StageRun:
    """What one stage run did; filled in by the stage, logged on exit."""

    stage: str
    run_id: str
    config_hash: str
    started_at: dt.datetime
    counts: dict[str, int] = field(default_factory=dict)
    input_versions: dict[str, int] = field(default_factory=dict)
    output_versions: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    status: str = "running"
    error: str | None = None
    duration_s: float = 0.0

    def commit(self) -> dict[str, str]:
        """Delta commit user metadata for this run's writes."""
        return {"run_id": self.run_id, "stage": self.stage}

    def summary(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts.items())
        metrics = ", ".join(f"{k}={v:g}" for k, v in self.metrics.items())
        versions = ", ".join(f"{k}@v{v}" for k, v in self.output_versions.items())
        lines = [
            f"[{self.stage}] {self.status} in {self.duration_s:.1f}s  run_id={self.run_id}",
            f"  counts: {counts or '-'}",
            *([f"  metrics: {metrics}"] if metrics else []),
            f"  tables: {versions or '-'}",
        ]
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)


@contextlib.contextmanager
def stage_run(lake: Lake, cfg: Config, stage: str) -> Iterator[StageRun]:
    run = StageRun(
        stage=stage,
        run_id=new_run_id(stage),
        config_hash=cfg.config_hash(),
        started_at=dt.datetime.now(dt.timezone.utc),
    )
    start = time.monotonic()
    log.info("[%s] run %s started", stage, run.run_id)
    try:
        yield run
        check_reads(stage, run.input_versions)
        run.status = "ok"
    except BaseException as exc:
        run.status = "failed"
        run.error = f"{type(exc).__name__}: {exc}"[:4000]
        raise
    finally:
        run.duration_s = time.monotonic() - start
        try:
            _log_run(lake, run)
        except Exception:  # logging the run must never hide the stage's own error
            log.exception("could not write the runs row for %s", run.run_id)
        log.info("[%s] %s in %.1fs", stage, run.status, run.duration_s)


def _log_run(lake: Lake, run: StageRun) -> None:
    lake.ensure_table(schema.RUNS, schema.RUNS_SCHEMA)
    row = (
        run.run_id,
        run.stage,
        run.status,
        run.started_at,
        dt.datetime.now(dt.timezone.utc),
        float(run.duration_s),
        run.config_hash,
        {k: int(v) for k, v in run.input_versions.items()},
        {k: int(v) for k, v in run.output_versions.items()},
        {k: int(v) for k, v in run.counts.items()},
        run.error,
        __version__,
        {k: float(v) for k, v in run.metrics.items()},
    )
    df = local_frame(lake.spark, [row], schema.RUNS_SCHEMA)  # no Spark job (lake/frames.py)
    # mergeSchema: a `runs` table from before a column was added gains it.
    lake.append(schema.RUNS, df, run.commit(), merge_schema=True)
