"""One writer per lake: the run lock that `kale run` and the stage commands take at start.

Two runs on one lake at once would race on every table (Delta refuses the second
writer's conflicting commit with a ConcurrentAppendException half-way through a
stage). So a run takes the lake's lock before it starts Spark, and a second run fails
at once with `LakeBusy`, whose message names the holder's run id, pid and host.

    with lake_lock(cfg.lake, run_id, "kale run"):
        ...

On a local lake (a path, or `file:`) the lock is an OS file lock (`fcntl.flock`) on
`<lake root>/_kale.lock`: the kernel releases it when its holder dies, SIGKILL
included, so a crashed run never blocks the next one. The file also holds the
holder's run id, pid and host (JSON), which the refused run reports. The file is
never deleted (a deletion would race with a run opening it).

A lake on an object store (s3://, abfss://, gs://, dbfs:/) has no such lock: there
the lock is skipped with a warning, and the scheduler must run one job per lake at
a time (e.g. a Databricks job's `max_concurrent_runs = 1`). Delta's optimistic
concurrency still keeps every table consistent; a concurrent writer's commit fails.
flock is only as good as the file system's: on NFS it depends on the mount.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from kale_spark.config import LakeConfig

log = logging.getLogger(__name__)

LOCK_FILE = "_kale.lock"
HOLDER_WAIT_S = 2.0  # how long a refused run waits for the holder's details to appear


class LakeBusy(RuntimeError):
    """Another run holds the lake's lock. `holder`: its run id, pid, host, command."""

    def __init__(self, root: str, holder: dict) -> None:
        self.root = root
        self.holder = holder
        run_id = holder.get("run_id", "an unknown run")
        where = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
        since = holder.get("started_at", "?")
        super().__init__(
            f"the lake {root} is in use by run {run_id} ({holder.get('command', 'kale')}, "
            f"{where}, since {since}); wait for it to end or stop it, then rerun "
            "(a killed run releases the lake at once)"
        )


def local_root(cfg: LakeConfig) -> Path | None:
    """The lake root as a local directory, or None for an object store URI."""
    root = cfg.root
    if root.startswith("file:"):
        return Path(root.removeprefix("file://").removeprefix("file:"))
    if "://" in root or root.startswith("dbfs:"):
        return None
    return Path(root)


@contextlib.contextmanager
def lake_lock(cfg: LakeConfig, run_id: str, command: str) -> Iterator[None]:
    """Hold the lake's run lock for the block; LakeBusy when another run holds it."""
    root = local_root(cfg)
    if root is None:
        log.warning("lake %s is not local: no run lock (run one job per lake at a time)", cfg.root)
        yield
        return
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LakeBusy(str(root.resolve()), _holder(path)) from None
        _write_holder(fd, run_id, command)
        log.info("run %s holds the lake lock %s", run_id, path)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _write_holder(fd: int, run_id: str, command: str) -> None:
    holder = {
        "run_id": run_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    os.fsync(fd)


def _holder(path: Path) -> dict:
    """The holder's details. The holder writes them just after it takes the lock, so a
    file still naming a dead process (the last holder) is read again for a moment."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    holder: dict = {}
    while True:
        try:
            holder = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            holder = {}
        if _alive_here(holder) or time.monotonic() >= deadline:
            return holder
        time.sleep(0.05)


def _alive_here(holder: dict) -> bool:
    """Whether `holder` names a live process of this host (another host: assume so)."""
    if not holder.get("pid"):
        return False
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
