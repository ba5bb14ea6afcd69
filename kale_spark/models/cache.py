"""Per-Python-worker model cache: load a model once, reuse it for every batch.

Spark runs pandas UDFs in long-lived Python workers (``spark.python.worker.reuse``);
module state survives between tasks, so a module-level dict keeps the loaded
model. Loads are counted per key (``load_count``) and, when ``KALE_MODEL_LOAD_LOG``
names a file, appended to it as one JSON line per load (pid, key, seconds), so a
test can count loads across worker processes (``read_load_log``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "LOAD_LOG_ENV",
    "clear",
    "get_or_load",
    "load_count",
    "read_load_log",
]

log = logging.getLogger(__name__)

LOAD_LOG_ENV = "KALE_MODEL_LOAD_LOG"

V = TypeVar("V")

_lock = threading.Lock()  # guards the three dicts below
_entries: dict[Hashable, Any] = {}
_key_locks: dict[Hashable, threading.Lock] = {}
_load_counts: Counter[Hashable] = Counter()


def get_or_load(key: Hashable, factory: Callable[[], V]) -> V:
    """The value cached under ``key``; on a miss, ``factory()`` is called once.

    Concurrent callers with the same key wait for the one load; different keys
    load in parallel. A failing factory caches nothing (the next call retries).
    """
    with _lock:
        if key in _entries:
            return _entries[key]
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        with _lock:
            if key in _entries:
                return _entries[key]
        start = time.monotonic()
        value = factory()
        seconds = time.monotonic() - start
        with _lock:
            _entries[key] = value
            _load_counts[key] += 1
        log.info("loaded %s in %.1fs (pid %d)", key, seconds, os.getpid())
        _append_load_log(key, seconds)
        return value


def load_count(key: Hashable | None = None) -> int:
    """How many times ``key`` (or, with ``None``, anything) was loaded in this process."""
    with _lock:
        return sum(_load_counts.values()) if key is None else _load_counts[key]


def clear(reset_counts: bool = True) -> None:
    """Drop every cached value (and, by default, the load counts)."""
    with _lock:
        _entries.clear()
        _key_locks.clear()
        if reset_counts:
            _load_counts.clear()


def _append_load_log(key: Hashable, seconds: float) -> None:
    path = os.environ.get(LOAD_LOG_ENV)
    if not path:
        return
    line = json.dumps(
        {"pid": os.getpid(), "key": str(key), "seconds": round(seconds, 3), "time": time.time()}
    )
    # One O_APPEND write per line: lines from concurrent processes do not interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_load_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The load events in a ``KALE_MODEL_LOAD_LOG`` file (``[]`` if it does not exist)."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
