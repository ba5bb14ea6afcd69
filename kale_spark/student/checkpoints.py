"""Training checkpoints: safetensors for the weights and the optimizer state, JSON for the rest.

    <run_dir>/checkpoints/step-000020/
        trainable.safetensors   the parameters that train, by name
        optimizer.safetensors   the optimizer's tensors (``state.<param index>.<name>``)
        rng.safetensors         each rank's random number generator states
        state.json              step, optimizer param groups and scalar state, history,
                                each rank's read position in the training snapshot

A checkpoint is written into a temp dir and renamed into place, so a crash never
leaves a half checkpoint that ``latest`` would pick; the oldest are pruned to
``keep``. Nothing is pickled: safetensors and JSON only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from kale_spark.lake.files import atomic_dir

__all__ = ["Checkpoint", "latest", "load", "read_extra", "save"]

log = logging.getLogger(__name__)

WEIGHTS = "trainable.safetensors"
OPTIMIZER = "optimizer.safetensors"
RNG = "rng.safetensors"
STATE = "state.json"
PREFIX = "step-"


class Checkpoint(dict):
    """What ``load`` returns: ``step``, ``weights``, ``optimizer``, ``rng``, ``extra``."""


def _dir(root: Path, step: int) -> Path:
    return root / f"{PREFIX}{step:06d}"


def _steps(root: Path) -> list[int]:
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        if p.name.startswith(PREFIX) and (p / STATE).is_file():
            out.append(int(p.name[len(PREFIX) :]))
    return sorted(out)


def latest(root: str | os.PathLike) -> int | None:
    """The step of the newest complete checkpoint under ``root``, or None."""
    steps = _steps(Path(root))
    return steps[-1] if steps else None


def _optimizer_split(state_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    tensors: dict[str, Any] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, values in state_dict["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _optimizer_join(tensors: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, values in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save(
    root: str | os.PathLike,
    step: int,
    weights: dict[str, Any],
    optimizer_state: dict[str, Any],
    extra: dict[str, Any],
    keep: int = 2,
    rng: dict[str, Any] | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically; keep the newest ``keep``. ``rng``: uint8
    tensors of random number generator states, by name."""
    from safetensors.torch import save_file

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = _dir(root, step)
    with atomic_dir(target) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, tmp / WEIGHTS)
        tensors, meta = _optimizer_split(optimizer_state)
        save_file(tensors, tmp / OPTIMIZER)
        save_file({k: v.contiguous() for k, v in (rng or {}).items()}, tmp / RNG)
        (tmp / STATE).write_text(json.dumps({"step": step, "optimizer": meta, "extra": extra}))
    for old in _steps(root)[:-keep]:
        shutil.rmtree(_dir(root, old), ignore_errors=True)
    log.info("checkpoint: step %d → %s", step, target)
    return target


def load(root: str | os.PathLike, step: int, device: str = "cpu") -> Checkpoint:
    """Checkpoint ``step``: weights and optimizer state as tensors on ``device``."""
    from safetensors.torch import load_file

    path = _dir(Path(root), step)
    state = json.loads((path / STATE).read_text())
    return Checkpoint(
        step=int(state["step"]),
        weights=load_file(path / WEIGHTS, device=device),
        optimizer=_optimizer_join(load_file(path / OPTIMIZER, device=device), state["optimizer"]),
        rng=load_file(path / RNG) if (path / RNG).is_file() else {},
        extra=state.get("extra", {}),
    )


def read_extra(root: str | os.PathLike, step: int) -> dict[str, Any]:
    """The JSON state of checkpoint ``step`` (no tensors read)."""
    return json.loads((_dir(Path(root), step) / STATE).read_text()).get("extra", {})
