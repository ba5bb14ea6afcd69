"""The Spark glue of the model layer: the model stages' mapInPandas function, and the
iterator pandas UDFs behind the SQL functions ``kale_caption`` / ``kale_fuse``.

The stages run ``model_partition_fn(ctx, kind)`` with ``DataFrame.mapInPandas``: it
regroups the partition's rows into model batches by token budget (whatever the
Arrow batch size) and decodes / tokenizes the next batch in a thread while the
model generates (models/inference.py). Tasks x ``torch_threads`` = executor cores
(``auto_torch_threads``).

Spark streams a task's rows into one Python worker as Arrow batches of
``spark.sql.execution.arrow.maxRecordsPerBatch`` rows (``cfg.spark.arrow_batch_size``,
set when the session is built, never changed by a stage).
Each SQL UDF is an *iterator* pandas UDF: on its first batch the worker takes the model
from ``models.cache.get_or_load`` (loaded once per Python worker process; with
``spark.python.worker.reuse=true`` the worker and its model survive across tasks and
stages), then runs every batch through the same engine as the stages
(``models.inference``: token budgets, prefetch, row-by-row retry, batches halved on a
CUDA out-of-memory), rows back in their order. On a GPU, ``pick_device`` takes the GPU
Spark assigned to the task.

A row never fails the task. Each UDF returns a struct per row (``RESULT_TYPE``:
text, token counts, and a ``reason`` + ``error`` when the row produced nothing);
the stages keep the good rows and quarantine the others. When a batch raises, its
rows are retried one by one so only the rows that fail are lost to quarantine.

Closures capture a ``UdfContext`` only (the ``ModelSpec``, cache dir, thread count
and log paths: small and picklable), never a model.

Load and batch logs. ``KALE_MODEL_LOAD_LOG`` (models/cache.py) and
``KALE_UDF_BATCH_LOG`` are read *on the driver when a UDF is built* and travel in
the closure; the worker sets them in its own environment before loading. An
environment variable set on the driver later does not reach the Python workers of
a running session: in local mode they fork from a daemon whose environment was
fixed when it started, and ``spark.executorEnv.*`` is only read at SparkContext
start.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from kale_spark import schema
from kale_spark.config import Config, FaultsConfig
from kale_spark.models.cache import LOAD_LOG_ENV, load_count
from kale_spark.models.inference import (
    ERROR_CHARS,
    KINDS,
    RESULT_COLUMNS,
    RESULT_FIELDS,
    CaptionEngine,
)
from kale_spark.models.spec import ModelSpec
from kale_spark.spark.resources import model_task_resources

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "BATCH_LOG_ENV",
    "DROPPED_INPUTS",
    "ERROR_CHARS",
    "MODEL_INPUTS",
    "RESULT_COLUMNS",
    "RESULT_TYPE",
    "UdfContext",
    "auto_torch_threads",
    "caption_udf",
    "fuse_udf",
    "model_partition_fn",
    "read_batch_log",
    "register_sql_functions",
    "udf_context",
]

log = logging.getLogger(__name__)

BATCH_LOG_ENV = "KALE_UDF_BATCH_LOG"


def _result_type():
    """The Spark struct of ``RESULT_FIELDS`` (every field nullable)."""
    from pyspark.sql.types import IntegerType, StringType, StructField, StructType

    types = {"string": StringType(), "int": IntegerType()}
    return StructType([StructField(name, types[kind], True) for name, kind in RESULT_FIELDS])


RESULT_TYPE = _result_type()


# ----------------------------------------------------------------------- worker context


@dataclass(frozen=True)
class UdfContext:
    """Everything a model UDF needs in the worker; small and picklable."""

    spec: ModelSpec
    cache_dir: str | None = None
    torch_threads: int = 1
    prepare_threads: int = 1  # batches decoded/tokenized at once (GPU: the task's cpus)
    load_log: str | None = None
    batch_log: str | None = None
    faults: FaultsConfig | None = None  # injected faults (tests only; None: off)

    def enter_worker(self) -> None:
        """Per task: log paths into the worker's environment, torch threads capped."""
        from kale_spark.models.device import set_torch_threads

        if self.load_log:
            os.environ[LOAD_LOG_ENV] = self.load_log
        set_torch_threads(self.torch_threads)

    def log_batch(self, udf: str, rows: int, seconds: float) -> None:
        log.info("%s: %d rows in %.2fs (pid %d)", udf, rows, seconds, os.getpid())
        if not self.batch_log:
            return
        line = json.dumps(
            {
                "pid": os.getpid(),
                "udf": udf,
                "model": self.spec.id,
                "rows": rows,
                "seconds": round(seconds, 3),
            }
        )
        fd = os.open(self.batch_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def read_batch_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The batch events in a ``KALE_UDF_BATCH_LOG`` file (``[]`` if it does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


_LOCAL_MASTER = re.compile(r"^local\[(\d+|\*)(?:,\d+)?\]$")
_LOCAL_CLUSTER = re.compile(r"^local-cluster\[\d+,\s*(\d+),\s*\d+\]$")


def _executor_cores(master: str, conf: Mapping[str, str]) -> int | None:
    if master == "local":
        return 1
    m = _LOCAL_MASTER.match(master)
    if m:
        return (os.cpu_count() or 1) if m.group(1) == "*" else int(m.group(1))
    m = _LOCAL_CLUSTER.match(master)
    if m:
        return int(m.group(1))
    cores = conf.get("spark.executor.cores")
    return int(cores) if cores else None


def auto_torch_threads(master: str, conf: Mapping[str, str]) -> int:
    """torch threads per task so that concurrent tasks × threads <= executor cores.

    An executor runs ``cores // spark.task.cpus`` tasks at once; each gets an equal
    share of the cores. Unknown executor cores (e.g. YARN without
    ``spark.executor.cores``) fall back to ``spark.task.cpus``.

    >>> auto_torch_threads("local[2]", {})
    1
    >>> auto_torch_threads("yarn", {"spark.executor.cores": "8", "spark.task.cpus": "8"})
    8
    """
    task_cpus = max(1, int(conf.get("spark.task.cpus", "1") or 1))
    cores = _executor_cores(master, conf)
    if cores is None:
        return task_cpus
    concurrent = max(1, cores // task_cpus)
    return max(1, cores // concurrent)


def _spark_conf(spark: SparkSession) -> tuple[str, dict[str, str]]:
    try:
        sc = spark.sparkContext
        return sc.master, dict(sc.getConf().getAll())
    except Exception:  # Spark Connect / serverless: no SparkContext on the driver
        keys = ("spark.master", "spark.executor.cores", "spark.task.cpus")
        conf = {k: v for k in keys if (v := spark.conf.get(k, None)) is not None}
        return conf.get("spark.master", ""), conf


def udf_context(spark: SparkSession, cfg: Config, spec: ModelSpec) -> UdfContext:
    """The context a model UDF for ``spec`` captures (threads resolved, logs read)."""
    threads = cfg.models.torch_threads
    if threads == 0:
        master, conf = _spark_conf(spark)
        resources = model_task_resources({"spark.master": master, **conf})
        # Under a model resource profile a task holds its profile's CPUs.
        threads = resources.cpus if resources is not None else auto_torch_threads(master, conf)
    return UdfContext(
        spec=spec,
        cache_dir=cfg.models.cache_dir or None,
        torch_threads=threads,
        # On a CPU the task's cores run torch; on a GPU they are free to decode.
        prepare_threads=1 if spec.device == "cpu" else threads,
        load_log=os.environ.get(LOAD_LOG_ENV) or None,
        batch_log=os.environ.get(BATCH_LOG_ENV) or None,
        faults=cfg.faults if cfg.faults.active else None,
    )


# ------------------------------------------------------------------------ mapInPandas


# Input columns each model kind reads from a mapInPandas frame (the rest pass through).
MODEL_INPUTS = {
    "caption": ("image",),
    "student": ("image", "alt_text"),
    "fuse": ("alt_text", "dense_caption"),
}
# Inputs too heavy to carry into the output frame: what the image engines drop.
DROPPED_INPUTS = CaptionEngine.drop


def _load_engine(ctx: UdfContext, kind: str, workers: Any = None) -> Any:
    """The engine for ``kind`` in this worker (loaded once per process); with
    ``workers`` (a Counter accumulator) the worker and the loads it caused are counted."""
    from kale_spark.faults import inject_oom
    from kale_spark.models.inference import engine_for

    ctx.enter_worker()
    loads = load_count()
    engine = engine_for(kind, ctx.spec, ctx.cache_dir)
    model = getattr(engine, "captioner", None) or getattr(engine, "rewriter", None)
    inject_oom(ctx.faults, model, kind)
    if workers is not None:
        from collections import Counter

        worker = f"worker:{socket.gethostname()}:{os.getpid()}"
        workers.add(Counter({worker: 1, "loads": load_count() - loads}))
    return engine


def model_warmup_fn(ctx: UdfContext, kind: str, workers: Any = None) -> Callable[[], object]:
    """What a warm-up task runs in each Python worker before the stage's first chunk:
    load the model (warmup.warm_python_workers), counted as the stage's own loads."""
    return lambda: _load_engine(ctx, kind, workers)


def model_partition_fn(
    ctx: UdfContext, kind: str, progress: Any = None, workers: Any = None
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The function a model stage runs with ``DataFrame.mapInPandas``.

    ``kind`` is ``caption`` (input columns uid, image), ``student`` (uid, image,
    alt_text) or ``fuse`` (uid, alt_text, dense_caption); other input columns pass
    through. Output: the input's columns except ``image``, plus ``RESULT_COLUMNS``
    (schema: the input's minus image + ``RESULT_TYPE``), exactly one row per input
    row, in no particular order. Rows are regrouped into model batches by token
    budget whatever the Arrow batch size, and the next batch is decoded/tokenized
    in a thread while the model generates (models/inference.py). The model loads on
    the first row, once per Python worker; an empty partition loads nothing.

    With ``progress`` (a Counter accumulator, progress.counter_accumulator), each
    output frame adds its ``generated``/``failed`` counts so the driver reports them
    live. With ``workers`` (another one), each task adds ``worker:<host>:<pid>`` and
    the model loads it caused (``loads``): loads per worker, for the `runs` row; and
    its rows and milliseconds once the model was loaded (``model_rows``, ``model_ms``).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")

    def partition(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from kale_spark.models.inference import run_partition

        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            return
        schema.require_columns(first.columns, MODEL_INPUTS[kind], f"the {kind} model's input")
        engine = _load_engine(ctx, kind, workers)

        def on_batch(rows: int, seconds: float) -> None:
            ctx.log_batch(kind, rows, seconds)

        started, rows = time.monotonic(), 0
        frames_out = run_partition(
            engine,
            _with_task_faults(ctx, kind, itertools.chain([first], frames)),
            batch_size=ctx.spec.batch_size,
            max_batch_tokens=ctx.spec.max_batch_tokens,
            new_tokens=ctx.spec.generation.max_new_tokens,
            beams=ctx.spec.generation.num_beams,
            prepare_threads=ctx.prepare_threads,
            on_batch=on_batch,
        )
        for out in frames_out:
            _count_outcomes(progress, out)
            rows += len(out)
            yield out
        if workers is not None:  # the slot's rate once loaded, for sizing chunks by time
            from collections import Counter

            ms = int((time.monotonic() - started) * 1000)
            workers.add(Counter(model_rows=rows, model_ms=ms))

    return partition


def _with_task_faults(
    ctx: UdfContext, kind: str, frames: Iterator[pd.DataFrame]
) -> Iterator[pd.DataFrame]:
    """The task's frames, each first shown to the injected task faults (if any)."""
    if ctx.faults is None:
        yield from frames
        return
    from kale_spark.faults import task_faults

    for frame in frames:
        task_faults(ctx.faults, frame[schema.UID], kind)
        yield frame


def _count_outcomes(progress: Any, out: pd.DataFrame) -> None:
    """Add a model frame's ``generated``/``failed`` rows to the progress accumulator."""
    if progress is None:
        return
    from collections import Counter

    failed = int(out["reason"].notna().sum())
    progress.add(Counter(generated=len(out) - failed, failed=failed))


# ------------------------------------------------------------------------ the SQL UDFs


def _batches(ctx: UdfContext, kind: str, batches: Iterator[Sequence[pd.Series]]):
    """The loop every SQL model function runs in a worker: the engine on the first
    batch (loaded once per worker), then each batch through it, rows in order."""
    from kale_spark.models.inference import engine_for, results_in_order

    engine = None
    for columns in batches:
        if engine is None:
            ctx.enter_worker()
            engine = engine_for(kind, ctx.spec, ctx.cache_dir)
        start = time.monotonic()
        names = ("image",) if kind == "caption" else ("alt_text", "dense_caption")
        frame = pd.DataFrame(
            {n: c.reset_index(drop=True) for n, c in zip(names, columns, strict=True)}
        )
        out = results_in_order(engine, frame, ctx.spec, ctx.prepare_threads)
        ctx.log_batch(kind, len(out), time.monotonic() - start)
        yield out


def _text_only(frame: pd.DataFrame) -> pd.Series:
    return frame["text"].where(frame["reason"].isna(), None)


def caption_udf(ctx: UdfContext, *, text_only: bool = False):
    """``image binary -> RESULT_TYPE`` (or ``-> string``, null on failure, with text_only)."""
    from pyspark.sql.functions import pandas_udf

    if text_only:

        def kale_caption(images: Iterator[pd.Series]) -> Iterator[pd.Series]:
            for frame in _batches(ctx, "caption", ((s,) for s in images)):
                yield _text_only(frame)

        return pandas_udf(kale_caption, "string")  # type: ignore[call-overload]

    def caption(images: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        yield from _batches(ctx, "caption", ((s,) for s in images))

    return pandas_udf(caption, RESULT_TYPE)  # type: ignore[call-overload]


def fuse_udf(ctx: UdfContext, *, text_only: bool = False):
    """``(alt_text, dense_caption) -> RESULT_TYPE`` (or ``-> string`` with text_only)."""
    from pyspark.sql.functions import pandas_udf

    if text_only:

        def kale_fuse(pairs: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.Series]:
            for frame in _batches(ctx, "fuse", pairs):
                yield _text_only(frame)

        return pandas_udf(kale_fuse, "string")  # type: ignore[call-overload]

    def fuse(pairs: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        yield from _batches(ctx, "fuse", pairs)

    return pandas_udf(fuse, RESULT_TYPE)  # type: ignore[call-overload]


def register_sql_functions(spark: SparkSession, cfg: Config) -> list[str]:
    """Register ``kale_caption(image)`` and ``kale_fuse(alt_text, dense_caption)`` for SQL.

    Both return the generated text (null where generation failed), with the models
    of ``cfg.caption`` / ``cfg.augment``:

        SELECT kale_fuse(s.text, d.dense_caption)
        FROM kale.samples s JOIN kale.dense_captions d USING (uid)

    Model batches are the session's Arrow batches
    (``spark.sql.execution.arrow.maxRecordsPerBatch``), split to ``batch_size``.
    """
    spark.udf.register(
        "kale_caption", caption_udf(udf_context(spark, cfg, cfg.caption), text_only=True)
    )
    spark.udf.register("kale_fuse", fuse_udf(udf_context(spark, cfg, cfg.augment), text_only=True))
    return ["kale_caption", "kale_fuse"]
