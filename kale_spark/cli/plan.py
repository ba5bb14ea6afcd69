"""Size a run before starting it: wall time and GPU-hours per model stage.

    kale plan --images 218000000 --gpus 64 --gpu-type nvidia-h200

Throughput comes from measurement, never from a guess: ``bench/figures/<device>.json``,
written by the benchmarks (bench/caption_throughput.py, bench/fusion_throughput.py)
on that device. A figures file holds, per stage, the rows (images) per second one
device sustained, with the model and settings it was measured with:

    {"device": "cpu", "stages": {"caption": {"images_per_s": 12.3, "model": ...,
                                             "label": "engine without Spark, tiny model"},
                                 "augment": {"rows_per_s": 40.1, ...}}}

``label`` says what the rate measures (the whole ``kale`` command, or the model engine
without Spark; the bench model or a real one); the plan prints it beside the estimate,
so a rate from a tiny model is never read as a production one.

The plan assumes data parallelism: one model replica per device, so G devices run
G times one device's rate (Spark runs one task per GPU). A stage the figures file
does not hold is listed as not measured rather than guessed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FIGURES_ENV",
    "PLANNED_STAGES",
    "StagePlan",
    "default_figures_dir",
    "format_plan",
    "known_devices",
    "load_figures",
    "plan",
]

FIGURES_ENV = "KALE_FIGURES_DIR"
# Model stages in pipeline order, and the figure that gives each one's rate.
PLANNED_STAGES = (("caption", "images_per_s"), ("augment", "rows_per_s"), ("student", "rows_per_s"))


@dataclass(frozen=True)
class StagePlan:
    stage: str
    rows: int
    rate_per_device: float | None  # rows/s on one device; None: not measured
    devices: int
    model: str = ""
    label: str = ""  # what the rate measures, printed beside the estimate

    @property
    def wall_hours(self) -> float | None:
        if not self.rate_per_device:
            return None
        return self.rows / (self.rate_per_device * self.devices) / 3600

    @property
    def device_hours(self) -> float | None:
        wall = self.wall_hours
        return None if wall is None else wall * self.devices


def default_figures_dir() -> Path:
    """``$KALE_FIGURES_DIR``, else the repository's ``bench/figures``."""
    env = os.environ.get(FIGURES_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2] / "bench" / "figures"


def known_devices(figures_dir: Path) -> list[str]:
    """Devices with a figures file (one with ``stages``; benches keep other JSON there)."""
    if not figures_dir.is_dir():
        return []
    return sorted(p.stem for p in figures_dir.glob("*.json") if '"stages"' in p.read_text())


def load_figures(device: str, figures_dir: Path | None = None) -> dict[str, Any]:
    """The figures measured on ``device``; ``LookupError`` naming the known devices."""
    figures_dir = figures_dir or default_figures_dir()
    path = figures_dir / f"{device}.json"
    if not path.is_file():
        known = known_devices(figures_dir)
        raise LookupError(
            f"no measured figures for gpu type {device!r} (looked for {path}); known types: "
            f"{', '.join(known) if known else 'none'}. Measure it with `make bench` there."
        )
    data = json.loads(path.read_text())
    if not isinstance(data.get("stages"), dict):
        raise ValueError(f"{path}: no `stages` mapping")
    return data


def plan(
    images: int, devices: int, device: str, figures_dir: Path | None = None
) -> list[StagePlan]:
    """One ``StagePlan`` per model stage for ``images`` rows on ``devices`` x ``device``."""
    if images < 1:
        raise ValueError(f"--images must be >= 1, got {images}")
    if devices < 1:
        raise ValueError(f"--gpus must be >= 1, got {devices}")
    stages = load_figures(device, figures_dir)["stages"]
    out = []
    for stage, key in PLANNED_STAGES:
        figures = stages.get(stage, {})
        rate = figures.get(key)
        out.append(
            StagePlan(
                stage=stage,
                rows=images,
                rate_per_device=float(rate) if rate else None,
                devices=devices,
                model=str(figures.get("model", "")),
                label=str(figures.get("label", "")),
            )
        )
    return out


def _hours(h: float | None) -> str:
    if h is None:
        return "not measured"
    if h < 1:
        return f"{h * 60:.1f} min"
    return f"{h:,.1f} h" if h < 48 else f"{h:,.0f} h ({h / 24:.1f} days)"


def format_plan(plans: list[StagePlan], device: str) -> str:
    """A table: stage, rows, rate per device, wall time, device-hours; and the totals."""
    lines = [
        f"plan on {plans[0].devices} x {device} (measured rates, one model replica per device)",
        f"{'stage':<8} {'rows':>14} {'rows/s/device':>14} {'wall time':>22} {'device-hours':>14}",
    ]
    for p in plans:
        rate = f"{p.rate_per_device:,.2f}" if p.rate_per_device else "-"
        gpu_h = f"{p.device_hours:,.1f}" if p.device_hours is not None else "-"
        basis = f"  [{p.label}]" if p.label and p.rate_per_device else ""
        lines.append(
            f"{p.stage:<8} {p.rows:>14,} {rate:>14} {_hours(p.wall_hours):>22} {gpu_h:>14}{basis}"
        )
    measured = [p for p in plans if p.wall_hours is not None]
    total_wall = sum(p.wall_hours or 0 for p in measured)
    total_dev = sum(p.device_hours or 0 for p in measured)
    lines.append(f"{'total':<8} {'':>14} {'':>14} {_hours(total_wall):>22} {total_dev:>14,.1f}")
    for p in plans:
        if p.model:
            lines.append(f"  {p.stage}: measured with {p.model}")
    return "\n".join(lines)
