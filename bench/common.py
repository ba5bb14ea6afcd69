"""What the model benchmarks share: contestants in child processes, peak RSS of a
process tree, test images, and the figures file ``kale plan`` reads.

Each contestant runs in its own child process (``python bench/X.py --child NAME``)
so that no engine's threads, caches or imports leak into another's run; the parent
samples the child's whole process tree (Spark's JVM and Python workers, Ray's
raylet and workers) for peak RSS. The child's last stdout line is its JSON result.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("bench")

REPO = Path(__file__).resolve().parents[1]
FIGURES_DIR = REPO / "bench" / "figures"


def tree_rss(pid: int) -> int:
    """Resident bytes of process ``pid`` and all its descendants (0 once it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_child(script: Path, args: Sequence[str], timeout: float) -> tuple[dict[str, Any], float]:
    """Run ``script args`` in a child; its last stdout line (JSON) and its peak tree RSS (MB)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        env=env,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"{script.name} {' '.join(args)} ran past {timeout:.0f}s") from None
    finally:
        done.set()
        sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} exited with {proc.returncode}")
    lines = [line for line in out.splitlines() if line.strip()]
    return json.loads(lines[-1]), peak / 2**20


def run_timed(
    cmd: Sequence[str], timeout: float, cwd: Path | None = None
) -> tuple[float, float, str]:
    """Run a whole command; (wall seconds from its start to its exit, peak tree RSS in
    MB, its stdout). Raises on a non-zero exit or past ``timeout``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=None, text=True, env=env, cwd=cwd
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(proc.pid))
            done.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        raise RuntimeError(f"{' '.join(cmd)} ran past {timeout:.0f}s") from None
    except BaseException:  # interrupted: no JVM or Ray worker is left behind
        kill_tree(proc)
        raise
    finally:
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    return wall, peak / 2**20, out


def kill_tree(proc: subprocess.Popen) -> None:
    """Kill ``proc`` and every process it started (Spark's JVM, Ray's raylet)."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    proc.kill()
    proc.communicate()


def spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {
        "median": round(median, digits),
        "min": round(ordered[0], digits),
        "max": round(ordered[-1], digits),
    }


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def git_commit() -> str:
    """HEAD's hash, with ``-dirty`` when tracked files outside bench/figures differ."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/figures")
    return f"{head}-dirty" if dirty else head


def machine() -> str:
    """The CPU model and memory, e.g. ``AMD EPYC 7B13, 24 GiB``."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        return f"{cpu}, {mem_kb / 2**20:.0f} GiB, {platform.system()} {platform.release()}"
    except (OSError, ValueError, IndexError):
        return cpu


def stamp(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Provenance every figures file carries (bench/report.py refuses a file without it):
    machine, cores, date, commit, command; plus the load average at the time."""
    args = list(sys.argv if argv is None else argv)
    script = Path(args[0])
    if script.is_absolute() and REPO in script.parents:
        args[0] = str(script.relative_to(REPO))
    return {
        "machine": machine(),
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": git_commit(),
        "command": "python " + " ".join(args),
        "python": platform.python_version(),
        "load_average_1m": load_average(),
    }


def photo_like(size: tuple[int, int], seed: int):
    """Smooth low-frequency colour fields plus fine grain: compresses like a photo."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    coarse = rng.integers(0, 256, size=(h // 100 + 2, w // 100 + 2, 3), dtype=np.uint8)
    base = Image.fromarray(coarse, "RGB").resize(size, Image.Resampling.BICUBIC)
    grain = rng.normal(0, 6, size=(h, w, 1))
    arr = np.clip(np.asarray(base, dtype=np.int16) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def datacomp_like_size(rng: np.random.Generator) -> tuple[int, int]:
    """Sides from a few hundred to ~2000 px, log-uniform, landscape or portrait."""
    long_side = int(np.exp(rng.uniform(np.log(300), np.log(2000))))
    ratio = rng.uniform(0.55, 1.0)
    short = max(200, int(long_side * ratio))
    return (long_side, short) if rng.random() < 0.6 else (short, long_side)


def ensure_images(directory: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` JPEGs ``img00000.jpg``... in ``directory`` (kept between runs: made once)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = directory / f"img{i:05d}.jpg"
        if not path.exists():
            rng = np.random.default_rng(seed * 1_000_003 + i)
            tmp = path.with_suffix(".tmp")
            photo_like(datacomp_like_size(rng), seed + i).save(tmp, format="JPEG", quality=88)
            tmp.rename(path)
        paths.append(path)
    return paths


def device_name() -> str:
    """``cpu``, or the GPU's name in lower-case dashes (``nvidia-h200``)."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0).lower().replace(" ", "-")
    except ImportError:
        pass
    return "cpu"


def write_figures(device: str, stage: str, figures: dict[str, Any]) -> Path:
    """Merge ``figures`` for ``stage`` into ``bench/figures/<device>.json`` (what
    ``kale plan`` reads); the file and the stage carry this run's provenance."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = FIGURES_DIR / f"{device}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("device", device)
    provenance = stamp()
    data.update(provenance)
    data.setdefault("stages", {})[stage] = {**figures, **provenance}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
