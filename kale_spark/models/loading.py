"""Load models through Hugging Face transformers, from a hub id or a local path.

One code path for every model: the real teacher models, the small CPU models and
the locally built tiny models (``tiny:*`` ids are resolved to a local directory
first). Always safetensors; ``trust_remote_code`` only when the spec says so (the
spec then guarantees a pinned commit); eval mode; tokenizers pad on the left for
batched generation.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from kale_spark.models.spec import ModelSpec

__all__ = ["load_lm", "load_vlm", "model_cache_key", "resolve_model_path", "torch_dtype"]

log = logging.getLogger(__name__)


def resolve_model_path(spec: ModelSpec, cache_dir: str | os.PathLike | None = None) -> str:
    """What to pass to ``from_pretrained``: a built-on-demand dir for ``tiny:*``, else the id."""
    if spec.is_tiny:
        from kale_spark.models.tiny import ensure_tiny_model

        return str(ensure_tiny_model(spec.id, cache_dir))
    return spec.id


def torch_dtype(name: str) -> Any:
    """``"float32"`` → ``torch.float32`` (``"auto"`` passes through)."""
    import torch

    if name == "auto":
        return "auto"
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _common_kwargs(spec: ModelSpec, path: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if spec.revision is not None and not Path(path).is_dir():
        kwargs["revision"] = spec.revision  # meaningless (and ignored) for a local dir
    return kwargs


def _load_model(auto_cls: Any, spec: ModelSpec, path: str, device: str) -> Any:
    kwargs = _common_kwargs(spec, path)
    kwargs["dtype"] = torch_dtype(spec.dtype)
    kwargs["use_safetensors"] = True
    # Straight onto the GPU when accelerate is there; else load on CPU and move.
    direct = device != "cpu" and importlib.util.find_spec("accelerate") is not None
    if direct:
        kwargs["device_map"] = {"": device}
    if spec.attn_implementation is not None:
        kwargs["attn_implementation"] = spec.attn_implementation
    log.info(
        "loading %s (%s) from %s: dtype=%s device=%s attn=%s",
        spec.id,
        spec.model_revision,
        path,
        spec.dtype,
        device,
        spec.attn_implementation or "default",
    )
    model = auto_cls.from_pretrained(path, **kwargs)
    if not direct and device != "cpu":
        model = model.to(device)
    model.eval()
    return model


def load_vlm(
    spec: ModelSpec, device: str | None = None, cache_dir: str | os.PathLike | None = None
) -> tuple[Any, Any]:
    """``(model, processor)`` via ``AutoModelForImageTextToText`` + ``AutoProcessor``.

    ``device`` overrides ``pick_device(spec)`` (e.g. the GPU Spark assigned).
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from kale_spark.models.batching import pick_device

    path = resolve_model_path(spec, cache_dir)
    device = device or pick_device(spec)
    processor = AutoProcessor.from_pretrained(path, **_common_kwargs(spec, path))
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None:
        _prepare_tokenizer(tokenizer)
    model = _load_model(AutoModelForImageTextToText, spec, path, device)
    return model, processor


def load_lm(
    spec: ModelSpec, device: str | None = None, cache_dir: str | os.PathLike | None = None
) -> tuple[Any, Any]:
    """``(model, tokenizer)`` via ``AutoModelForCausalLM`` + ``AutoTokenizer``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kale_spark.models.batching import pick_device

    path = resolve_model_path(spec, cache_dir)
    device = device or pick_device(spec)
    tokenizer = AutoTokenizer.from_pretrained(path, **_common_kwargs(spec, path))
    _prepare_tokenizer(tokenizer)
    model = _load_model(AutoModelForCausalLM, spec, path, device)
    return model, tokenizer


def _prepare_tokenizer(tokenizer: Any) -> None:
    """Left padding (decoder-only batched generation); a pad token if there is none."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # Mistral/Llama ship without one


def model_cache_key(
    kind: str, spec: ModelSpec, device: str, cache_dir: str | os.PathLike | None = None
) -> str:
    """Identity of a loaded model for the per-worker cache (and the load log).

    Only what changes the loaded weights/processor counts: specs differing in
    prompt, batch size or decoding share one loaded model.
    """
    parts = [
        kind,
        spec.id,
        spec.model_revision,
        spec.dtype,
        device,
        f"attn={spec.attn_implementation or 'default'}",
        f"remote_code={spec.trust_remote_code}",
    ]
    if spec.is_tiny:
        parts.append(f"cache={cache_dir if cache_dir is not None else 'default'}")
    return "|".join(parts)
