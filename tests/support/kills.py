"""SIGKILL a kale process group at a chosen point, found by polling, never by sleeping.

A kill point is a predicate over what the process has done so far: a line of its log
(its stderr, written to a file) or a file under the lake (a checkpoint). The driver
polls it every POLL_S and kills the whole process group (the driver JVM, the Python
workers, TorchDistributor's ranks) the moment it holds. What tests/reliability/ and
`make chaos` (tests/reliability/chaos.py) share, with the lake checks they make after.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

POLL_S = 0.05

# The keys no table may hold twice (kale_spark/schema.py), by table.
TABLE_KEYS = {
    "samples": ("uid",),
    "images": ("uid",),
    "dense_captions": ("uid", "model", "model_revision", "prompt_id"),
    "stage1_captions": ("uid", "model", "model_revision", "prompt_id"),
    "stage2_captions": ("uid", "model", "model_revision", "prompt_id"),
    "filtered_captions": ("uid", "stage", "model", "model_revision", "prompt_id"),
    "kale": ("uid",),
    "quarantine": ("stage", "source_file", "source_row"),
    "releases": ("release",),
    "runs": ("run_id",),
}
# Columns of `kale` that name runs: equal content, other runs.
RUN_COLUMNS = ("caption_run_id", "filter_run_id")


@dataclass
class Outcome:
    killed: bool  # False: the process ended by itself first
    returncode: int | None
    seconds: float
    log: str


def kale_cmd(command: Sequence[str], overrides: Sequence[str]) -> list[str]:
    cmd = [sys.executable, "-m", "kale_spark.cli.commands", *command]
    return cmd + [a for o in overrides for a in ("--set", o)]


def log_has(pattern: str) -> Callable[[str], bool]:
    """A kill point: the log has a line matching `pattern`."""
    rx = re.compile(pattern)
    return lambda text: rx.search(text) is not None


def committed(table_dir: Path, version: int) -> Callable[[str], bool]:
    """A kill point: the Delta table at `table_dir` has committed `version`."""
    commit = table_dir / "_delta_log" / f"{version:020d}.json"
    return lambda _log: commit.exists()


def run_and_kill(
    cmd: Sequence[str],
    log_path: Path,
    point: Callable[[str], bool] | None,
    timeout_s: float = 900,
    env: dict[str, str] | None = None,
) -> Outcome:  # env: added to this process's environment
    """Run `cmd` in its own process group with stderr to `log_path`; SIGKILL the group
    as soon as `point(log text)` holds (None: let it finish)."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, **(env or {})}
    start = time.monotonic()
    with log_path.open("wb") as err:
        proc = subprocess.Popen(
            list(cmd), env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=err
        )
    killed = False
    try:
        while time.monotonic() - start < timeout_s:
            if proc.poll() is not None:
                break
            if point is not None and point(log_path.read_text(errors="replace")):
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(POLL_S)
        else:
            raise AssertionError(f"{cmd[3:5]} neither ended nor reached its kill point")
    finally:
        if proc.poll() is None and not killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=120)
    _reap(proc.pid)
    text = log_path.read_text(errors="replace")
    return Outcome(killed, None if killed else proc.returncode, time.monotonic() - start, text)


def _reap(pgid: int) -> None:
    """Wait (bounded) until no process of the killed group is left."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


# ------------------------------------------------------------------ lake checks


def read_table(lake: Path, name: str, version: int | None = None) -> list[dict]:
    """A Delta table's rows through delta-rs (no Spark needed)."""
    from deltalake import DeltaTable

    table = DeltaTable(str(lake / name), version=version)
    return table.to_pyarrow_table().to_pylist()


def duplicate_keys(lake: Path) -> dict[str, int]:
    """Table → how many keys it holds more than once (only tables with some)."""
    found = {}
    for name, key in TABLE_KEYS.items():
        if not (lake / name / "_delta_log").is_dir():
            continue
        counts = Counter(tuple(r[c] for c in key) for r in read_table(lake, name))
        extra = sum(n - 1 for n in counts.values() if n > 1)
        if extra:
            found[name] = extra
    return found


def gold(lake: Path, version: int | None = None, root: Path | None = None) -> dict[str, tuple]:
    """uid → the gold row without its run ids (what two equal runs must agree on).

    `root`: the run's folder, written `<root>` in every value (the sample's file URLs,
    the student checkpoint's path as the stage-2 model id). A stage-2 row's
    model_revision is the checkpoint's content hash, which covers the base models'
    local paths in its config.json: left out here; compare the weights instead
    (`student_weights`)."""
    out = {}
    for row in read_table(lake, "kale", version):
        items = []
        for k, v in sorted(row.items()):
            if k in RUN_COLUMNS or (k == "model_revision" and row["stage"] == "stage2"):
                continue
            if isinstance(v, list):
                v = tuple(v)
            elif isinstance(v, str) and root is not None:
                v = v.replace(str(root), "<root>")
            items.append((k, v))
        out[row["uid"]] = tuple(items)
    return out


def student_weights(lake: Path) -> dict[str, bytes]:
    """Run dir → the bytes of its final student's weights."""
    return {
        f.parent.parent.name: f.read_bytes()
        for f in sorted((lake / "student").glob("*/final/model.safetensors"))
    }


def gold_mismatches(got: dict[str, tuple], want: dict[str, tuple]) -> list[str]:
    """What differs between two gold tables, one line per uid (empty: equal)."""
    lines = [f"missing {u}" for u in sorted(set(want) - set(got))]
    lines += [f"extra {u}" for u in sorted(set(got) - set(want))]
    for uid in sorted(set(got) & set(want)):
        if got[uid] != want[uid]:
            diff = [k for (k, a), (_, b) in zip(got[uid], want[uid], strict=True) if a != b]
            lines.append(f"{uid}: {', '.join(diff)} differ")
    return lines
