"""Size a run before starting it: wall time and GPU-hours per model stage.

    kale plan --images 100000000 --config conf/paper.yaml --gpus 64 --gpu-type nvidia-h100

Throughput comes from measurement, never from a guess: ``bench/figures/<device>.json``,
written by the benchmarks on that device (bench/engine_gpu.py for a GPU at the paper
models' size; docs/gpu.md). A figures file holds, per stage, the rows (images) per
second one device sustained, the model it was measured with and its provenance:

    {"device": "nvidia-h100", "date": ..., "commit": ...,
     "stages": {"caption": {"images_per_s": 4.1, "model_id": "Qwen/Qwen2-VL-7B-Instruct",
                            "label": "engine without Spark, realistic model size"},
                "augment": {"rows_per_s": 3.2, ...}, "student": {"rows_per_s": ...},
                "train_student": {"samples_per_s": ...}}}

``label`` says what the rate measures; the plan prints it beside the estimate.

Rows follow the profile's split: ``split.teacher_fraction`` of the images go through
caption and augment, the rest through student-caption; train-student (max_steps x
batch x processes samples) is planned when the figures hold a ``train_student`` rate.

A rate measured with another model than the one the config runs (``model_id``
missing or different: the tiny bench models' figures) says nothing about the config's
GPU-hours, so the plan refuses it and names both models; ``--proxy`` plans from it
anyway, each such row marked ``PROXY`` and a warning printed above the table.

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
    "ProxyFigure",
    "StagePlan",
    "Workload",
    "default_figures_dir",
    "format_plan",
    "known_devices",
    "load_figures",
    "plan",
    "provenance",
]

FIGURES_ENV = "KALE_FIGURES_DIR"
# Model stages in pipeline order: (name printed, figures key, the rate's key).
PLANNED_STAGES = (
    ("caption", "caption", "images_per_s"),
    ("augment", "augment", "rows_per_s"),
    ("student-caption", "student", "rows_per_s"),
)
TRAIN_STAGE = ("train-student", "train_student", "samples_per_s")


class ProxyFigure(ValueError):
    """A stage's figure was measured with another model than the config runs."""


@dataclass(frozen=True)
class Workload:
    """What the config asks of each stage: rows per stage and the model it runs.

    ``models`` maps a figures key to the config's model id; ``None``: no model check
    (a library caller that knows its figures)."""

    teacher_fraction: float = 1.0
    models: dict[str, str] | None = None
    train_samples: int = 0  # student.train: max_steps x batch_size x num_processes

    @classmethod
    def from_config(cls, cfg: Any) -> Workload:
        student = cfg.student
        return cls(
            teacher_fraction=cfg.split.teacher_fraction,
            models={
                "caption": cfg.caption.id,
                "augment": cfg.augment.id,
                "student": f"{student.model.vision_model} + {student.model.language_model}",
                "train_student": f"{student.model.vision_model} + {student.model.language_model}",
            },
            train_samples=student.train.max_steps
            * student.train.batch_size
            * student.train.num_processes,
        )

    def rows(self, key: str, images: int) -> int:
        teacher = round(images * self.teacher_fraction)
        return {"caption": teacher, "augment": teacher, "student": images - teacher}.get(
            key, self.train_samples
        )


@dataclass(frozen=True)
class StagePlan:
    stage: str
    rows: int
    rate_per_device: float | None  # rows/s on one device; None: not measured
    devices: int
    model: str = ""
    label: str = ""  # what the rate measures, printed beside the estimate
    proxy: str = ""  # why the rate stands in for another model's; "" when it is the model's

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
    images: int,
    devices: int,
    device: str,
    figures_dir: Path | None = None,
    workload: Workload | None = None,
    *,
    proxy: bool = False,
) -> list[StagePlan]:
    """One ``StagePlan`` per model stage for ``images`` rows on ``devices`` x ``device``.

    ``ProxyFigure`` when a stage's figure measured another model than ``workload``
    runs, unless ``proxy``: then the row says so (``StagePlan.proxy``)."""
    if images < 1:
        raise ValueError(f"--images must be >= 1, got {images}")
    if devices < 1:
        raise ValueError(f"--gpus must be >= 1, got {devices}")
    workload = workload or Workload()
    stages = load_figures(device, figures_dir)["stages"]
    wanted = list(PLANNED_STAGES) + ([TRAIN_STAGE] if TRAIN_STAGE[1] in stages else [])
    out = []
    for name, key, rate_key in wanted:
        figures = stages.get(key, {})
        rate = figures.get(rate_key)
        rows = workload.rows(key, images)
        mismatch = _model_mismatch(key, figures, workload) if rate and rows else ""
        if mismatch and not proxy:
            raise ProxyFigure(
                f"{device}.json {mismatch}. Measure it (bash bench/gpu_check.sh on the "
                f"device, docs/gpu.md) or pass --proxy to plan from this figure anyway"
            )
        out.append(
            StagePlan(
                stage=name,
                rows=rows,
                rate_per_device=float(rate) if rate else None,
                devices=devices,
                model=str(figures.get("model", "")),
                label=str(figures.get("label", "")),
                proxy=mismatch,
            )
        )
    return out


def _model_mismatch(key: str, figures: dict[str, Any], workload: Workload) -> str:
    """Why ``figures`` does not measure the model the config runs for ``key`` ("" if it does)."""
    if workload.models is None or key not in workload.models:
        return ""
    want, got = workload.models[key], figures.get("model_id")
    if got == want:
        return ""
    what = figures.get("model") or got or "an unnamed model"
    label = figures.get("label", "")
    return (
        f"{key}: measured with {what!s}{f' ({label})' if label else ''}, not with "
        f"{want!r}, the model the config runs: a figure of another model says nothing "
        f"about its GPU-hours"
    )


def provenance(device: str, figures_dir: Path | None = None) -> str:
    """Where the figures come from: file, date, commit and command, for the plan's head."""
    data = load_figures(device, figures_dir)
    commit = str(data.get("commit", "unknown"))[:12]
    return (
        f"figures: {device}.json, measured {data.get('date', 'at an unknown date')} at "
        f"commit {commit} by `{data.get('command', 'an unknown command')}`"
    )


def _hours(h: float | None) -> str:
    if h is None:
        return "not measured"
    if h < 1:
        return f"{h * 60:.1f} min"
    return f"{h:,.1f} h" if h < 48 else f"{h:,.0f} h ({h / 24:.1f} days)"


def format_plan(plans: list[StagePlan], device: str, source: str = "") -> str:
    """A table: stage, rows, rate per device, wall time, device-hours; and the totals.
    Rows planned from another model's figure are marked PROXY, with a warning above."""
    lines = [
        f"WARNING: PROXY figure, another model than the config runs: {p.proxy}"
        for p in plans
        if p.proxy
    ]
    lines += [source] if source else []
    lines += [
        f"plan on {plans[0].devices} x {device} (measured rates, one model replica per device)",
        f"{'stage':<15} {'rows':>14} {'rows/s/device':>14} {'wall time':>22} {'device-hours':>14}",
    ]
    for p in plans:
        rate = f"{p.rate_per_device:,.2f}" if p.rate_per_device else "-"
        gpu_h = f"{p.device_hours:,.1f}" if p.device_hours is not None else "-"
        label = f"PROXY: {p.label}" if p.proxy else p.label
        basis = f"  [{label}]" if label and p.rate_per_device else ""
        wall = _hours(p.wall_hours) if p.rows else "none planned"
        lines.append(f"{p.stage:<15} {p.rows:>14,} {rate:>14} {wall:>22} {gpu_h:>14}{basis}")
    measured = [p for p in plans if p.wall_hours is not None]
    total_wall = sum(p.wall_hours or 0 for p in measured)
    total_dev = sum(p.device_hours or 0 for p in measured)
    lines.append(f"{'total':<15} {'':>14} {'':>14} {_hours(total_wall):>22} {total_dev:>14,.1f}")
    for p in plans:
        if p.model:
            lines.append(f"  {p.stage}: measured with {p.model}")
    return "\n".join(lines)
