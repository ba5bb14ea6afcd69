"""The fault hooks. Each takes the run's `FaultsConfig` and does nothing unless it names
a fault; each injected fault appends a JSON line to `faults.log` when that is set, so a
test can count what was injected against what the pipeline recovered."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kale_spark.config import FaultsConfig

__all__ = [
    "KILL_EXIT_CODE",
    "InjectedFault",
    "byte_corrupter",
    "fail_commit_once",
    "inject_oom",
    "read_fault_log",
    "record",
    "task_faults",
]

# The exit code of a Python worker killed by `faults.kill_worker_uids`.
KILL_EXIT_CODE = 97
MARKER_DIR = "_faults"  # under the lake root: the commit faults already spent


class InjectedFault(RuntimeError):
    """A failure `faults.*` asked for; its message says so and names the key."""


def record(cfg: FaultsConfig, kind: str, **fields: Any) -> None:
    """Append one injected fault to `cfg.log` (one write: lines from many workers stay whole)."""
    if not cfg.log:
        return
    line = json.dumps({"fault": kind, "pid": os.getpid(), **fields}, sort_keys=True)
    fd = os.open(cfg.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def read_fault_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The faults a `faults.log` file recorded (`[]` if there is none)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _attempt() -> int:
    from pyspark import TaskContext

    ctx = TaskContext.get()
    return ctx.attemptNumber() if ctx is not None else 0


def task_faults(cfg: FaultsConfig | None, uids: Iterable[Any], stage: str) -> None:
    """In a model task, on its first attempt: exit the Python worker if `uids` hold one
    of `faults.kill_worker_uids`, raise if they hold one of `faults.udf_raise_uids`."""
    if cfg is None or not (cfg.udf_raise_uids or cfg.kill_worker_uids):
        return
    present = {str(u) for u in uids}
    kill = present & set(cfg.kill_worker_uids)
    hit = present & set(cfg.udf_raise_uids)
    if not (kill or hit) or _attempt() > 0:
        return
    if kill:
        record(cfg, "kill_worker", uid=min(kill), stage=stage)
        os._exit(KILL_EXIT_CODE)  # no cleanup, as a crash or the OOM killer would
    record(cfg, "udf_raise", uid=min(hit), stage=stage)
    raise InjectedFault(f"kale fault injected (faults.udf_raise_uids): uid {min(hit)} in {stage}")


def _oom_error() -> BaseException:
    import torch

    return torch.cuda.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 2.00 GiB "
        "(kale fault injected: faults.udf_oom_batches)"
    )


def inject_oom(cfg: FaultsConfig | None, model: Any, stage: str) -> None:
    """Make `model.generate` (one tokenized batch in, one result per row out) raise a
    CUDA out-of-memory error on its first `faults.udf_oom_batches` calls with more than
    one row, in this process. The batch-split logic (models.batching) must recover."""
    if cfg is None or not cfg.udf_oom_batches or getattr(model, "_kale_oom_fault", False):
        return
    inner = model.generate
    left = [cfg.udf_oom_batches]

    def generate(inputs: dict[str, Any]) -> Any:
        rows = len(inputs["input_ids"])
        if rows > 1 and left[0] > 0:
            left[0] -= 1
            record(cfg, "udf_oom", rows=rows, stage=stage)
            raise _oom_error()
        return inner(inputs)

    model.generate = generate
    model._kale_oom_fault = True


def byte_corrupter(cfg: FaultsConfig | None) -> Callable[[str, bytes], bytes] | None:
    """For fetch: `(uid, bytes) -> bytes` that corrupts the rows of
    `faults.corrupt_image_uids` (header zeroed, tail cut), or None when off."""
    if cfg is None or not cfg.corrupt_image_uids:
        return None
    chosen = frozenset(cfg.corrupt_image_uids)

    def corrupt(uid: str, data: bytes) -> bytes:
        if uid not in chosen:
            return data
        record(cfg, "corrupt_image", uid=uid, bytes=len(data))
        return b"\0" * 16 + data[16 : max(16, len(data) // 2)]

    return corrupt


def fail_commit_once(cfg: FaultsConfig | None, lake: Any, table: str, stage: str) -> None:
    """Raise before the first commit of generated rows to `table` when
    `faults.fail_commit_tables` names it; once per lake (a marker file records it)."""
    if cfg is None or table not in cfg.fail_commit_tables:
        return
    marker = f"{lake.path(MARKER_DIR)}/commit-{table}"
    if lake.read_text(marker) is not None:
        return
    lake.write_text(marker, stage)
    record(cfg, "fail_commit", table=table, stage=stage)
    raise InjectedFault(
        f"kale fault injected (faults.fail_commit_tables): the commit to {table} failed; "
        "rerun the stage to resume"
    )
