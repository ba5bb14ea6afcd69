"""The engine at realistic model size on one GPU: the paper profile's three model roles,
each decoding option, rows/s, GPU busy share and memory peak. No Spark, no network.

    python bench/engine_gpu.py --out "$OUT"            # on the GPU machine (< 8 min, H100)
    python bench/engine_gpu.py --smoke --out DIR       # the same code on a CPU, seconds

Models (bench/engine_models.py): Qwen2-VL-7B-Instruct's dimensions (caption VLM),
Mistral-7B-Instruct-v0.2's (fusion LM), the student (CLIP ViT-H/14 at 490 px +
Qwen2-1.5B), random weights built on the GPU in bf16. Each runs through the project's
engine (models/inference.py ``run_partition`` over ``Captioner`` / ``FusionRewriter`` /
``StudentCaptioner``) at conf/paper.yaml's settings: 490 px images, batch 32 with 256
new tokens (caption), 192 new tokens and 3 beams (fusion), batch 64 with 256 new tokens
(student); every row generates exactly that many (``min_new_tokens``).

Options per role, each guarded (a failure is recorded with its error; the run goes on):
``dynamic`` (today: static batches, dynamic KV cache), ``static`` (static cache, no
compile), ``static_compile`` (plus the engine's ``torch.compile``, ``ModelSpec.compile``;
transformers' own auto-compile of greedy static-cache decoding is off in every option,
so each compiles only when it says so), ``continuous`` (transformers'
``generate_batch``; token ids only, so fusion only, greedy: not comparable with 3 beams)
and for fusion prefix sharing: ``dynamic_prefix`` (the instruction's KV cache reused,
bench/engine_prefix.py) and ``continuous_prefix`` (``allow_block_sharing``). A global
budget gives each option a slice; a watchdog writes what was measured and exits if the
budget is overrun. ``chosen`` per role: the fastest comparable option.

Writes ``OUT/<device>.json`` (``nvidia-h100`` / ``nvidia-h200``; ``cpu-smoke`` with
``--smoke``), stamped like every figures file, with ``stages`` for ``kale plan``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import stamp  # noqa: E402
from bench.engine_measure import measure_continuous, measure_engine  # noqa: E402
from bench.engine_models import (  # noqa: E402
    IMAGE_SIDE,
    ROLES,
    build_role,
    paper_role,
    parameter_count,
    role_spec,
)
from kale_spark.models.device import compiled  # noqa: E402

# torch.compile last in each role: a compile that overruns costs only itself.
OPTIONS = {
    "caption": ("dynamic", "static", "continuous", "static_compile"),
    "fuse": (
        "dynamic",
        "dynamic_prefix",
        "static",
        "continuous",
        "continuous_prefix",
        "static_compile",
    ),  # fmt: skip
    "student": ("dynamic", "static", "continuous", "static_compile"),
}
# An option's share of its role's time: compiling takes a warm-up batch or two more.
WEIGHT = {"static_compile": 2.0}
SHARE = {"caption": 0.4, "fuse": 0.4, "student": 0.2}  # of the budget, in this order
STAGE = {"caption": ("caption", "images_per_s"), "fuse": ("augment", "rows_per_s"),
         "student": ("student", "rows_per_s")}  # fmt: skip
MIN_SLICE_S = 12.0  # on a GPU: an option with less left is skipped, not half-measured
DISTINCT_IMAGES = 16


def device_file_name(smoke: bool) -> str:
    """``nvidia-h100`` / ``nvidia-h200`` (what ``kale plan --gpu-type`` names), else the
    GPU's name in dashes; ``cpu-smoke`` for a smoke run."""
    import torch

    if smoke or not torch.cuda.is_available():
        return "cpu-smoke"
    name = torch.cuda.get_device_name(0).lower()
    for short in ("h100", "h200"):
        if short in name:
            return f"nvidia-{short}"
    return name.replace(" ", "-")


# ------------------------------------------------------------------ inputs


def _words(n: int, seed: int) -> str:
    import random

    from kale_spark.models.tiny import _CORPUS

    vocab = _CORPUS.split()
    rng = random.Random(seed)
    return " ".join(rng.choice(vocab) for _ in range(n))


def make_inputs(role: Any, engine: Any) -> Any:
    """A function returning one batch's input frame: ``DISTINCT_IMAGES`` 490 px photo-like
    JPEGs cycled, alt-texts of ~12 words, dense captions cut to the VLM's new tokens."""
    import io

    import pandas as pd

    from bench.common import photo_like
    from kale_spark.models.fusion import truncate_tokens

    n = role.batch_size
    alts = [_words(12, i) for i in range(DISTINCT_IMAGES)]
    if role.kind == "fuse":
        tok = engine.rewriter.tokenizer
        dense = [truncate_tokens(_words(400, 100 + i), tok, 256) for i in range(DISTINCT_IMAGES)]
        cols = {"alt_text": alts, "dense_caption": dense}
    else:
        jpegs = []
        for i in range(DISTINCT_IMAGES):
            buf = io.BytesIO()
            photo_like((IMAGE_SIDE, IMAGE_SIDE), i).save(buf, format="JPEG", quality=88)
            jpegs.append(buf.getvalue())
        cols = {"image": jpegs, "alt_text": alts}
    base = pd.DataFrame(cols)
    counter = iter(range(10**9))

    def frame() -> pd.DataFrame:
        k = next(counter)
        rows = base.iloc[[(k * n + i) % DISTINCT_IMAGES for i in range(n)]].reset_index(drop=True)
        return rows.assign(uid=[f"r{k}-{i}" for i in range(n)])

    return frame


# ------------------------------------------------------------------ options


def _engine(role: Any, model: Any, processor: Any, spec: Any, prefix: bool = False) -> Any:
    from kale_spark.models.inference import CaptionEngine, FuseEngine

    if role.kind == "fuse":
        from kale_spark.models.fusion import FusionRewriter

        rewriter = FusionRewriter(model, processor, spec)
        if prefix:
            from bench.engine_prefix import PrefixFuseEngine

            return PrefixFuseEngine(rewriter)
        return FuseEngine(rewriter)
    if role.kind == "student":
        from kale_spark.student.captioner import StudentCaptioner

        return CaptionEngine(StudentCaptioner(model, processor, spec))
    from kale_spark.models.captioner import Captioner

    return CaptionEngine(Captioner(model, processor, spec))


def run_option(role: Any, option: str, model: Any, processor: Any, slice_s: float, device: str):
    """One option's figures (``measure_engine`` / ``measure_continuous``)."""
    if option.startswith("continuous"):
        if role.kind != "fuse":
            raise NotImplementedError(
                "generate_batch takes token ids only: no image inputs for a VLM"
            )
        engine = _engine(role, model, processor, role_spec(role, device))
        split = engine.split(make_inputs(role, engine)())
        figures = measure_continuous(
            model, processor, split.items, role, slice_s, share=option.endswith("prefix")
        )
        return {**figures, "comparable": role.beams == 1, "beams": 1}
    cache = "static" if option.startswith("static") else None
    if option.endswith("compile") and device == "cpu" and role.kind != "fuse":
        raise NotImplementedError("smoke: torch.compile is run for the fusion role only")
    compiling = option.endswith("compile")
    spec = role_spec(role, device, cache=cache, compile_=compiling)
    engine = _engine(role, model, processor, spec, prefix=option.endswith("prefix"))
    # transformers compiles the decode step of a greedy generate on a GPU whenever the
    # cache is static (not beam search): off, so only the engine's compile is measured.
    model.generation_config.disable_compile = True
    if compiling:
        compiled((model, processor), spec)  # the engine's: ModelSpec.compile
    try:
        warmups = 2 if compiling and device != "cpu" else 1
        figures = measure_engine(engine, spec, make_inputs(role, engine), slice_s, warmups)
        figures["compiled_graphs"] = dynamo_graphs()  # > 0: compilation happened
    finally:
        model.__dict__.pop("forward", None)  # compiled() set it on the instance
        dynamo_reset()
    return {**figures, "comparable": True, "beams": role.beams}


def dynamo_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def dynamo_reset() -> None:
    import torch
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()


def smoke_compile_backend() -> None:
    """On the CPU, ``torch.compile`` with the ``eager`` backend: dynamo traces the same
    forward (the GPU run's code path) without inductor's minutes of C++ codegen."""
    import functools

    import torch

    torch.compile = functools.partial(torch.compile, backend="eager")


def guarded(fn: Any, *args: Any) -> dict[str, Any]:
    """``fn(*args)``, or its error (and where it was raised) as the option's figures."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - recorded; the next option runs
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(tb.filename).name}:{tb.lineno}"
        return {"error": f"{type(exc).__name__}: {str(exc)[:400]}", "where": where}
    finally:
        _free()


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ------------------------------------------------------------------ the run


class Run:
    """The figures so far, written to ``path`` after every option (a watchdog or a
    crash leaves what was measured)."""

    def __init__(self, path: Path, smoke: bool, budget_s: float, device: str) -> None:
        import torch
        import transformers

        self.path = path
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.data: dict[str, Any] = {
            "device": path.stem,
            **stamp(),
            **commit_override(),
            "smoke": smoke,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
            "budget_s": budget_s,
            "settings": {},
            "roles": {},
            "chosen": {},
            "stages": {},
            "complete": False,
            "compile": (
                "static_compile: the engine's ModelSpec.compile (models/device.py compiled), "
                + ("eager backend (smoke)" if smoke else "inductor")
                + "; transformers' own auto-compile of static-cache decoding off in every option"
            ),
        }

    def write(self) -> None:
        with self.lock:
            self.data["elapsed_s"] = round(time.monotonic() - self.start, 1)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True, default=str) + "\n")
            tmp.replace(self.path)


def commit_override() -> dict[str, str]:
    """``$KALE_COMMIT`` where the tree has no git history (a copy on the GPU machine)."""
    from bench.common import git_commit

    given = os.environ.get("KALE_COMMIT")
    return {"commit": given} if given and git_commit().startswith("unknown") else {}


def settings_of(role: Any, model: Any, engine_prompt_tokens: float | None, smoke: bool):
    return {
        "model_id": role.model_id,
        "dims": "smoke: a few layers, small hidden" if smoke else "published",
        "parameters": parameter_count(model),
        "architecture": type(model).__name__,
        "batch_size": role.batch_size,
        "max_new_tokens": role.new_tokens,
        "min_new_tokens": role.new_tokens,
        "num_beams": role.beams,
        "image_side": IMAGE_SIDE if role.kind != "fuse" else None,
        "prompt_tokens_mean": engine_prompt_tokens,
        "dtype": str(model.dtype).removeprefix("torch."),
    }


def choose(options: dict[str, dict[str, Any]]) -> str | None:
    """The fastest option measured at the profile's settings (``comparable``)."""
    rated = {k: v["rows_per_s"] for k, v in options.items()
             if v.get("comparable") and v.get("rows_per_s")}  # fmt: skip
    return max(rated, key=rated.get) if rated else None


def stage_entry(role: Any, chosen: str, figures: dict[str, Any], smoke: bool) -> dict[str, Any]:
    """What ``kale plan`` reads for the role's stage."""
    stage, key = STAGE[role.name]
    size = "smoke dims (NOT the real size)" if smoke else "published dims"
    return {
        key: figures["rows_per_s"],
        "model_id": f"smoke:{role.model_id}" if smoke else role.model_id,
        "model": f"{role.model_id} ({size}), random weights, {'fp32' if smoke else 'bf16'}",
        "option": chosen,
        "busy_share": figures.get("busy_share"),
        "gpu_mem_peak_gib": figures.get("gpu_mem_peak_gib"),
        "label": (
            "engine without Spark, smoke model" if smoke
            else "engine without Spark, realistic model size (random weights)"
        ),
    }  # fmt: skip


def prompt_tokens(role: Any, model: Any, processor: Any, device: str) -> dict[str, Any]:
    """The mean prompt tokens of a batch (image tokens included), as the engine counts."""
    engine = _engine(role, model, processor, role_spec(role, device))
    costs = engine.split(make_inputs(role, engine)()).costs
    return {"mean": round(sum(costs) / len(costs), 1) if costs else None}


def run_role(run: Run, name: str, smoke: bool, device: str, deadline: float) -> None:
    role = paper_role(name, smoke)
    entry: dict[str, Any] = {"options": {}}
    run.data["roles"][name] = entry
    t = time.monotonic()
    try:
        model, processor = build_role(name, smoke, device)
    except Exception as exc:  # noqa: BLE001 - recorded; the next role runs
        entry["error"] = f"build: {type(exc).__name__}: {str(exc)[:400]}"
        return run.write()
    entry["build_s"] = round(time.monotonic() - t, 1)
    tokens = guarded(prompt_tokens, role, model, processor, device)
    run.data["settings"][name] = settings_of(role, model, tokens.get("mean"), smoke)
    options = OPTIONS[name]
    for i, option in enumerate(options):
        weights = [WEIGHT.get(o, 1.0) for o in options[i:]]
        slice_s = (deadline - time.monotonic()) * weights[0] / sum(weights)
        if not smoke and slice_s < MIN_SLICE_S:
            entry["options"][option] = {"error": f"skipped: {slice_s:.0f} s left in the budget"}
            continue
        entry["options"][option] = guarded(
            run_option, role, option, model, processor, slice_s, device
        )
        run.write()
    chosen = choose(entry["options"])
    if chosen is not None:
        entry["chosen"] = run.data["chosen"][name] = chosen
        stage = STAGE[name][0]
        run.data["stages"][stage] = stage_entry(role, chosen, entry["options"][chosen], smoke)
    if name == "fuse":
        entry["prefix_sharing"] = prefix_figures(entry["options"])
    run.write()


def prefix_figures(options: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Prefix sharing on/off at the profile's settings (3 beams, dynamic cache)."""
    off = options.get("dynamic", {}).get("rows_per_s")
    on = options.get("dynamic_prefix", {}).get("rows_per_s")
    return {"off_rows_per_s": off, "on_rows_per_s": on, "keep": bool(on and off and on > off)}


def watchdog(run: Run, after_s: float) -> threading.Timer:
    def fire() -> None:
        run.data["stopped"] = f"watchdog: the budget was overrun ({after_s:.0f} s)"
        run.write()
        print(f"engine_gpu: stopped by the watchdog; partial figures in {run.path}", flush=True)
        os._exit(3)

    timer = threading.Timer(after_s, fire)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny dims on the CPU, seconds")
    parser.add_argument("--out", default=os.environ.get("OUT") or "bench/figures")
    parser.add_argument("--budget-s", type=float, help="whole-run budget (default 360; smoke 40)")
    parser.add_argument("--roles", default=",".join(ROLES), help="comma-separated subset")
    args = parser.parse_args(argv)
    import torch

    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda:0"
    if device == "cpu" and not args.smoke:
        parser.error("no CUDA device: run with --smoke on a CPU")
    budget = args.budget_s or (40.0 if args.smoke else 360.0)
    if args.smoke:
        smoke_compile_backend()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = Run(out / f"{device_file_name(args.smoke)}.json", args.smoke, budget, device)
    # A smoke run measures one batch per option whatever the budget: only a hang stops it.
    timer = watchdog(run, budget + (300 if args.smoke else 45))
    names = [n for n in ROLES if n in args.roles.split(",")]
    done = 0.0
    for name in names:
        done += SHARE[name] / sum(SHARE[n] for n in names)
        run_role(run, name, args.smoke, device, run.start + budget * done)
        _free()  # the role's model is gone with run_role's frame
    timer.cancel()
    run.data["complete"] = True
    run.write()
    print(json.dumps({"out": str(run.path), "chosen": run.data["chosen"],
                      "stages": run.data["stages"]}, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
