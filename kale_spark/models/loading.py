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
import re
from pathlib import Path
from typing import Any

from kale_spark.models.spec import ModelSpec

__all__ = [
    "check_pinned",
    "is_hub_id",
    "load_lm",
    "load_vlm",
    "model_cache_key",
    "resolve_model_path",
    "torch_dtype",
]

log = logging.getLogger(__name__)


def resolve_model_path(spec: ModelSpec, cache_dir: str | os.PathLike | None = None) -> str:
    """What to pass to ``from_pretrained``: a built-on-demand dir for ``tiny:*``, else the id."""
    if spec.is_tiny:
        from kale_spark.models.tiny import ensure_tiny_model

        return str(ensure_tiny_model(spec.id, cache_dir))
    return spec.id


_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def is_hub_id(model_id: str) -> bool:
    """True unless ``model_id`` is ``tiny:*`` or a local path (absolute, ./, ../, ~, or a dir)."""
    if model_id.startswith(("tiny:", "/", "./", "../", "~")):
        return False
    return not Path(model_id).is_dir()


def check_pinned(spec: ModelSpec, key: str) -> None:
    """Raise ``ValueError`` if ``spec`` names a hub model without a pinned commit.

    A hub model's files (and its remote code) change under the same id; a run is
    reproducible only at a commit. Checked when the config loads, long before a
    download. ``key`` is the config section (``caption``, ``augment``, ...).
    """
    if not is_hub_id(spec.id) or (spec.revision and _COMMIT.match(spec.revision)):
        return
    got = "not set" if spec.revision is None else f"{spec.revision!r}, not a commit"
    raise ValueError(
        f"{key}.revision for hub model {spec.id!r} is {got}. Pin the snapshot you tested: "
        f"set {key}.revision to its 40-hex commit sha (the model page's 'Files and "
        f"versions' > 'History', or: python -c \"from huggingface_hub import HfApi; "
        f"print(HfApi().model_info('{spec.id}').sha)\"), e.g. in the profile YAML or with "
        f"--set {key}.revision=<sha>. Local paths and tiny:* models need no pin."
    )


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

    from kale_spark.models.device import pick_device

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

    from kale_spark.models.device import pick_device

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


def load_cached(
    kind: str, spec: ModelSpec, device: str, cache_dir: str | os.PathLike | None = None
) -> tuple[Any, Any]:
    """``(model, processor or tokenizer)`` for ``spec`` on ``device``, loaded once per
    Python worker (``kind``: "vlm" or "lm"); compiled when ``spec.compile``."""
    from kale_spark.models.cache import get_or_load
    from kale_spark.models.device import compiled

    load = {"vlm": load_vlm, "lm": load_lm}[kind]
    key = model_cache_key(kind, spec, device, cache_dir) + ("|compile" if spec.compile else "")
    return get_or_load(key, lambda: compiled(load(spec, device, cache_dir), spec))


class LoadedFromSpec:
    """``from_spec`` for an engine built as ``cls(model, processor_or_tokenizer, spec)``.

    ``LOAD_KIND`` says which loader of :func:`load_cached` builds its model.
    """

    LOAD_KIND = "lm"

    @classmethod
    def from_spec(
        cls,
        spec: ModelSpec,
        *,
        device: str | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> Any:
        """An engine over the model for ``spec``, loaded once per Python worker."""
        from kale_spark.models.device import pick_device

        model, processor = load_cached(cls.LOAD_KIND, spec, device or pick_device(spec), cache_dir)
        return cls(model, processor, spec)  # type: ignore[call-arg]
