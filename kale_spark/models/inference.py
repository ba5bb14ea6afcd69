"""Model inference over a stream of pandas frames: rebatched by token budget, prepared ahead.

    frames ─▶ prefetch thread: flag rows with no input, build prompts and count
              their tokens, rebatch by token budget (LLM prompts sorted by length),
              decode + preprocess images / pad token ids ─▶ bounded queue
           ─▶ the caller's thread: ``generate``, result columns ─▶ frames out

The CPU half of the next batch (JPEG decode, resize, tokenization; PIL and the
tokenizers release the GIL) runs while the model generates the current one. The
input frames can have any size: rows are regrouped into model batches of at most
``spec.batch_size`` rows and ``spec.max_batch_tokens`` tokens, carried across
frames. Memory stays bounded whatever the partition size: one input frame, a
window of pending rows and ``prefetch`` prepared batches.

Every input row comes out exactly once (order not kept), with the input's
columns minus the model input (``image``) plus ``RESULT_COLUMNS``. A row never
fails the partition: a row with no input, an image that does not decode or a
batch that raises (retried row by row) yields a row with ``reason`` + ``error``.

Pure pandas + the model classes; no Spark (udf.py wires it into ``mapInPandas``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

from kale_spark import reasons
from kale_spark.models.batching import Generated, PrepareError, token_batches
from kale_spark.models.spec import ModelSpec

__all__ = [
    "KINDS",
    "Engine",
    "RESULT_COLUMNS",
    "RESULT_FIELDS",
    "engine_for",
    "error_row",
    "result_frame",
    "result_row",
    "one_by_one",
    "results_in_order",
    "run_partition",
]

log = logging.getLogger(__name__)

KINDS = ("caption", "student", "fuse")
# What a model returns per row, defined once: (column, Spark SQL type). `reason` is null
# when `text` is a good output (spark/udf.py builds the Spark struct from this).
RESULT_FIELDS = (
    ("text", "string"),
    ("prompt_tokens", "int"),
    ("new_tokens", "int"),
    ("reason", "string"),
    ("error", "string"),
)
RESULT_COLUMNS = [name for name, _ in RESULT_FIELDS]
ERROR_CHARS = 1000  # error messages kept per row
WINDOW_BATCHES = 4  # rows sorted together by length: this many batches' worth


# ------------------------------------------------------------------ result rows


def error_row(reason: str, error: str) -> dict[str, Any]:
    return {
        "text": None,
        "prompt_tokens": None,
        "new_tokens": None,
        "reason": reason,
        "error": error[:ERROR_CHARS],
    }


def result_row(result: Any, clean: Callable[[str], str] = str.strip) -> dict[str, Any]:
    """A ``RESULT_COLUMNS`` row for a ``Generated`` (or the exception that replaced it)."""
    if isinstance(result, PrepareError):
        return error_row(reasons.REASON_PREPARE_ERROR, str(result))
    if isinstance(result, BaseException):
        return error_row(reasons.REASON_GENERATION_ERROR, f"{type(result).__name__}: {result}")
    text = clean(result.text)
    if not text:
        reason = reasons.REASON_EMPTY_OUTPUT
        return error_row(reason, f"no text after {result.new_tokens} new tokens")
    return {
        "text": text,
        "prompt_tokens": int(result.prompt_tokens),
        "new_tokens": int(result.new_tokens),
        "reason": None,
        "error": None,
    }


def result_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    for name in ("prompt_tokens", "new_tokens"):
        frame[name] = frame[name].astype("Int32")
    return frame


def _is_blank(value: Any) -> bool:
    if value is None or (isinstance(value, float) and value != value):
        return True
    return len(value) == 0 if isinstance(value, (bytes, bytearray, memoryview)) else False


# ------------------------------------------------------------------ engines


class Engine(Protocol):
    """What ``run_partition`` drives: a model behind the stages and the SQL functions.

    ``split`` turns a frame into model work (and rows that need no model), ``prepare``
    is the CPU half of a batch (run ahead, in the prefetch thread), ``run`` the model
    half: one ``Generated`` or exception per item, never raising for a bad row.
    """

    drop: tuple[str, ...]  # input columns not carried into the output
    sort: bool  # batch rows of similar length together
    clean: Callable[[str], str]

    def split(self, frame: pd.DataFrame) -> Split: ...

    def prepare(self, items: list[Any]) -> Any: ...

    def run(self, prepared: Any) -> list[Generated | BaseException]: ...


def one_by_one(
    exc: Exception, items: Sequence[Any], run_one: Callable[[Any], list[Any]]
) -> list[Any]:
    """After a batch raised ``exc``: each item alone, an exception standing for a row
    that fails again, so only the rows that fail are lost. The one row-by-row retry."""
    if len(items) == 1:
        return [exc]
    log.warning("a batch of %d failed (%s); retrying row by row", len(items), exc)
    out: list[Any] = []
    for item in items:
        try:
            out.extend(run_one(item))
        except Exception as again:
            out.append(again)
    return out


@dataclass
class Split:
    """A frame's rows as model work: ``items``/``costs`` for positions ``ok``,
    ``errors`` (position -> result row) for the rows that need no model."""

    ok: list[int]
    items: list[Any]
    costs: list[int]
    errors: dict[int, dict[str, Any]]


class CaptionEngine:
    """A VLM over ``image`` bytes (and ``alt_text`` when the prompt has that slot)."""

    drop = ("image",)
    sort = False  # one prompt length (dense) or nearly: keep arrival order

    def __init__(self, captioner: Any) -> None:
        self.captioner = captioner
        self.clean: Callable[[str], str] = str.strip
        self._prompt = None if captioner.needs_alt_text else captioner.prompt_text()

    def split(self, frame: pd.DataFrame) -> Split:
        images = frame["image"].to_numpy(dtype=object)
        alts = frame["alt_text"].to_numpy(dtype=object) if self._prompt is None else None
        ok, items, costs, errors = [], [], [], {}
        for i, data in enumerate(images):
            if _is_blank(data):
                errors[i] = error_row(reasons.REASON_MISSING_INPUT, "no image bytes")
                continue
            try:
                if self._prompt is not None:
                    prompt = self._prompt
                else:
                    alt = alts[i] if isinstance(alts[i], str) else ""
                    prompt = self.captioner.prompt_text(alt)
                cost = self.captioner.prompt_tokens(prompt, data)
            except Exception as exc:  # the processor refuses this row: its row only
                errors[i] = result_row(
                    exc if isinstance(exc, PrepareError) else PrepareError(str(exc))
                )
                continue
            ok.append(i)
            items.append((data, prompt))
            costs.append(cost)
        return Split(ok, items, costs, errors)

    def prepare(self, items: list[Any]) -> Any:
        return self.captioner.prepare([d for d, _ in items], [p for _, p in items])

    def run(self, prepared: Any) -> list[Generated | BaseException]:
        try:
            return self.captioner.run(prepared)
        except Exception as exc:
            return one_by_one(exc, prepared.items, lambda i: self.captioner.run(self.prepare([i])))


class FuseEngine:
    """An LLM over (``alt_text``, ``dense_caption``): prompts tokenized once, sorted by length."""

    drop: tuple[str, ...] = ()
    sort = True

    def __init__(self, rewriter: Any) -> None:
        from kale_spark.models.fusion import postprocess

        self.rewriter = rewriter
        self.clean: Callable[[str], str] = lambda t: postprocess(t).strip()

    def split(self, frame: pd.DataFrame) -> Split:
        alts = frame["alt_text"].to_numpy(dtype=object)
        dense = frame["dense_caption"].to_numpy(dtype=object)
        ok, prompts, errors = [], [], {}
        for i, d in enumerate(dense):
            if not isinstance(d, str) or not d.strip():
                errors[i] = error_row(reasons.REASON_MISSING_INPUT, "no dense caption")
                continue
            alt = alts[i] if isinstance(alts[i], str) else ""
            try:
                prompts.append(self.rewriter.build_prompt(alt, d))
                ok.append(i)
            except Exception as exc:
                errors[i] = result_row(PrepareError(f"{type(exc).__name__}: {exc}"))
        ids = self.rewriter.token_ids(prompts) if prompts else []
        return Split(ok, ids, [len(x) for x in ids], errors)

    def prepare(self, items: list[Any]) -> Any:
        return items, self.rewriter.pad(items)

    def run(self, prepared: Any) -> list[Generated | BaseException]:
        ids, inputs = prepared
        try:
            return self.rewriter.run(ids, inputs)  # halves the batch on OOM
        except Exception as exc:
            return one_by_one(exc, ids, lambda row: self.rewriter.run([row]))


def engine_for(kind: str, spec: ModelSpec, cache_dir: str | None = None) -> Engine:
    """The engine for ``kind`` over the model of ``spec`` (loaded once per process)."""
    if kind == "caption":
        from kale_spark.models.captioner import Captioner

        return CaptionEngine(Captioner.from_spec(spec, cache_dir=cache_dir))
    if kind == "student":
        from kale_spark.student.captioner import StudentCaptioner

        return CaptionEngine(StudentCaptioner.from_spec(spec, cache_dir=cache_dir))
    if kind == "fuse":
        from kale_spark.models.fusion import FusionRewriter

        return FuseEngine(FusionRewriter.from_spec(spec, cache_dir=cache_dir))
    raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")


# ------------------------------------------------------------------ the pipeline


@dataclass
class _Work:
    keep: pd.DataFrame  # the rows' passthrough columns
    items: list[Any] | None = None  # model work; None: ``rows`` are final already
    rows: list[dict[str, Any]] | None = None
    prepared: Any = None
    future: Any = None  # the prepare() running in the pool


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_DONE = object()


def _batches_of(
    engine: Any,
    frames: Iterable[pd.DataFrame],
    *,
    batch_size: int,
    max_batch_tokens: int | None,
    new_tokens: int,
    beams: int = 1,
) -> Iterator[_Work]:
    """The prefetch side: frames in, prepared model batches (and finished rows) out."""
    window = batch_size * (WINDOW_BATCHES if engine.sort else 1)
    budget = {
        "batch_size": batch_size,
        "max_batch_tokens": max_batch_tokens,
        "new_tokens": new_tokens,
        "beams": beams,
    }
    keep_parts: list[pd.DataFrame] = []
    items: list[Any] = []
    costs: list[int] = []
    for frame in frames:
        if len(frame) == 0:
            continue
        keep = frame.drop(columns=[c for c in engine.drop if c in frame.columns])
        keep = keep.reset_index(drop=True)
        split = engine.split(frame)
        if split.errors:
            positions = sorted(split.errors)
            yield _Work(keep.iloc[positions], rows=[split.errors[i] for i in positions])
        if split.ok:
            keep_parts.append(keep.iloc[split.ok])
            items.extend(split.items)
            costs.extend(split.costs)
        if len(items) >= window:
            keep_parts, items, costs = yield from _cut(engine, keep_parts, items, costs, budget)
    if items:
        yield from _cut(engine, keep_parts, items, costs, budget, final=True)


def _cut(engine, keep_parts, items, costs, budget: dict[str, Any], final=False):
    """Prepare the full batches of the pending rows; returns the rows carried over."""
    keep = pd.concat(keep_parts, ignore_index=True)
    batch_size = budget["batch_size"]
    batches = token_batches(costs, sort=engine.sort, **budget)
    carry: list[int] = []
    if not final and len(batches) > 1 and len(batches[-1]) < batch_size:
        carry = batches.pop()
    for batch in batches:
        yield _Work(keep.iloc[batch], items=[items[i] for i in batch])
    return [keep.iloc[carry]], [items[i] for i in carry], [costs[i] for i in carry]


def _finish(engine: Any, work: _Work) -> pd.DataFrame:
    rows = work.rows
    if rows is None:
        if work.future is not None:
            work.prepared = work.future.result()
        rows = [result_row(r, engine.clean) for r in engine.run(work.prepared)]
    keep = work.keep.reset_index(drop=True)
    return pd.concat([keep, result_frame(rows)], axis=1)


class _Prefetcher:
    """The producer thread: batches from ``works`` prepared ahead into a bounded queue."""

    def __init__(self, engine: Any, works: Iterator[_Work], prefetch: int, threads: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.engine = engine
        self.works = works
        self.pool = ThreadPoolExecutor(threads, "kale-prepare") if threads > 1 else None
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch) + max(0, threads - 1))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, name="kale-prefetch", daemon=True)
        self.thread.start()

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for work in self.works:
                if work.items is not None:
                    if self.pool is not None:
                        work.future = self.pool.submit(self.engine.prepare, work.items)
                    else:
                        work.prepared = self.engine.prepare(work.items)
                if not self._put(work):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(_Failed(exc))

    def __iter__(self) -> Iterator[_Work]:
        while True:
            work = self.queue.get()
            if work is _DONE:
                return
            if isinstance(work, _Failed):
                raise work.exc
            yield work

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def run_partition(
    engine: Any,
    frames: Iterable[pd.DataFrame],
    *,
    batch_size: int,
    max_batch_tokens: int | None = None,
    new_tokens: int = 0,
    prefetch: int = 2,
    prepare_threads: int = 1,
    on_batch: Callable[[int, float], None] | None = None,
    beams: int = 1,
) -> Iterator[pd.DataFrame]:
    """Run ``engine`` over ``frames``; preparation runs ``prefetch`` batches ahead in a
    thread. Yields one frame per model batch (and per group of rows with no input).

    ``prepare_threads`` > 1 prepares that many batches at once in a pool (JPEG decode
    and resize release the GIL): on a GPU one thread cannot decode as fast as the
    model captions; on a CPU the cores belong to torch, so 1.
    """
    works = _batches_of(
        engine,
        frames,
        batch_size=batch_size,
        max_batch_tokens=max_batch_tokens,
        new_tokens=new_tokens,
        beams=beams,
    )
    prefetcher = _Prefetcher(engine, works, prefetch, prepare_threads)
    try:
        for work in prefetcher:
            start = time.monotonic()
            frame = _finish(engine, work)
            if on_batch is not None and work.items is not None:
                on_batch(len(frame), time.monotonic() - start)
            yield frame
    finally:
        prefetcher.close()


def results_in_order(
    engine: Engine, frame: pd.DataFrame, spec: ModelSpec, prepare_threads: int = 1
) -> pd.DataFrame:
    """``RESULT_COLUMNS`` for every row of ``frame``, in its order: the frame through
    ``run_partition`` (the stages' token budgets, prefetch, row-by-row retry and OOM
    split), for callers that need rows back in place, like the SQL functions."""
    keyed = frame.reset_index(drop=True).assign(_row=range(len(frame)))
    parts = list(
        run_partition(
            engine,
            [keyed],
            batch_size=spec.batch_size,
            max_batch_tokens=spec.max_batch_tokens,
            new_tokens=spec.generation.max_new_tokens,
            beams=spec.generation.num_beams,
            prepare_threads=prepare_threads,
        )
    )
    if not parts:
        return result_frame([])
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values("_row")[RESULT_COLUMNS].reset_index(drop=True)
