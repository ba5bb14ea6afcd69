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
    """Merge ``figures`` for ``stage`` into ``bench/figures/<device>.json``."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = FIGURES_DIR / f"{device}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("device", device)
    data.setdefault("stages", {})[stage] = {
        **figures,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host_cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
