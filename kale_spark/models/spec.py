"""What model to run and how: frozen, validated, hashable specs.

``ModelSpec`` names a model (hub id, local path, or ``tiny:vlm`` / ``tiny:lm`` for
the locally built tiny models), how to load it and how to decode with it. Specs are
built field by field from YAML, so every field has a plain type. A spec is
hashable and is part of the per-worker model cache key.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "CACHE_IMPLEMENTATIONS",
    "DTYPES",
    "TINY_IDS",
    "TINY_REVISION",
    "GenerationParams",
    "ModelSpec",
]

DTYPES = ("float32", "bfloat16", "float16", "auto")
CACHE_IMPLEMENTATIONS = (None, "dynamic", "static")
TINY_IDS = ("tiny:vlm", "tiny:lm")
# Fingerprint of the tiny-model recipe in models/tiny.py; bump with the recipe.
TINY_REVISION = "tiny-v1"

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True, kw_only=True)
class GenerationParams:
    """Decoding parameters passed to ``model.generate`` (and recorded as lineage)."""

    max_new_tokens: int = 64
    min_new_tokens: int | None = None  # = max_new_tokens: every row generates exactly that
    num_beams: int = 1
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int):
            raise ValueError(f"max_new_tokens must be an int, got {self.max_new_tokens!r}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.min_new_tokens is not None and (
            isinstance(self.min_new_tokens, bool)
            or not isinstance(self.min_new_tokens, int)
            or not 0 <= self.min_new_tokens <= self.max_new_tokens
        ):
            raise ValueError(
                f"min_new_tokens must be an int in [0, max_new_tokens], got {self.min_new_tokens!r}"
            )
        if isinstance(self.num_beams, bool) or not isinstance(self.num_beams, int):
            raise ValueError(f"num_beams must be an int, got {self.num_beams!r}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")
        if not isinstance(self.do_sample, bool):
            raise ValueError(f"do_sample must be a bool, got {self.do_sample!r}")
        if not self.do_sample and (self.temperature is not None or self.top_p is not None):
            raise ValueError("temperature/top_p are only used with do_sample=true")
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.repetition_penalty is not None and not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")

    def as_dict(self) -> dict[str, Any]:
        """The set parameters (``None`` left out), for lineage and ``generate``."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal params give equal strings."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model: where it comes from, how to load it, which prompt, how to decode.

    ``id`` is a hub id (``org/name``), a local directory, or ``tiny:vlm`` /
    ``tiny:lm`` (built on demand by ``models.tiny``). ``revision`` pins a hub
    commit; with ``trust_remote_code`` it must be a full 40-hex commit sha, so the
    remote code that runs is fixed. ``max_input_tokens`` is the prompt token budget
    (the fusion prompt is truncated to fit it). ``system_prompt_id`` names an optional
    system turn (a ``kind="system"`` prompt) put before the user turn. For the fusion
    LM, ``min_alt_text_tokens`` is the alt-text's floor: a tight budget cuts the dense
    caption first and never cuts the alt-text below this many tokens.

    Throughput (none of these changes the output of greedy decoding):
    ``max_batch_tokens`` bounds a generation batch by tokens, rows x (longest prompt
    + max_new_tokens), with ``batch_size`` still the row cap (``None``: rows only).
    ``cache_implementation`` is passed to ``generate`` (``static``: a fixed-shape KV
    cache, which lets ``compile`` reuse its graphs); ``compile`` wraps the model's
    forward in ``torch.compile``. Both pay on a GPU, where a measurement says so
    (bench/); leave them off on a CPU.
    """

    id: str
    prompt_id: str
    revision: str | None = None
    dtype: str = "float32"
    device: str = "auto"
    attn_implementation: str | None = None
    trust_remote_code: bool = False
    batch_size: int = 8
    max_input_tokens: int = 512
    system_prompt_id: str | None = None
    min_alt_text_tokens: int = 48
    max_batch_tokens: int | None = None
    cache_implementation: str | None = None
    compile: bool = False
    generation: GenerationParams = field(default_factory=GenerationParams)
    # How the model stage runs (not lineage: they never change an output row).
    # A Delta commit carries what the cluster's model slots generate in about this many
    # seconds (stages/chunks.py); a crash redoes at most the chunks in flight.
    commit_interval_s: float = 600.0
    # > 0: a fixed number of rows per commit instead.
    rows_per_commit: int = 0
    # Source files per streaming micro-batch (Delta's maxFilesPerTrigger); 0 = sized
    # so that a micro-batch holds a few commits' rows (from the source's rows per file).
    files_per_trigger: int = 0
    # Retry the rows that failed in earlier runs (one pass over the source per run).
    retry_failed: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.generation, dict):  # built from YAML without the nested type
            object.__setattr__(self, "generation", GenerationParams(**self.generation))
        if not isinstance(self.id, str) or not self.id.strip():
            raise ValueError("id must be a non-empty string (hub id, local path or tiny:*)")
        if self.id.startswith("tiny:") and self.id not in TINY_IDS:
            raise ValueError(f"id {self.id!r}: the tiny models are {', '.join(TINY_IDS)}")
        if self.is_tiny and self.revision not in (None, TINY_REVISION):
            raise ValueError(
                f"revision {self.revision!r} for {self.id}: tiny models are {TINY_REVISION}"
            )
        if self.revision is not None and (not isinstance(self.revision, str) or not self.revision):
            raise ValueError(f"revision must be a non-empty string or null, got {self.revision!r}")
        self._check_prompts()
        self._check_runtime()
        self._check_sizes()

    def _check_prompts(self) -> None:
        if not isinstance(self.prompt_id, str) or not self.prompt_id:
            raise ValueError("prompt_id must be a non-empty string")
        from kale_spark.prompts import PROMPTS  # light module, no cycle

        if self.prompt_id not in PROMPTS:
            raise ValueError(
                f"prompt_id {self.prompt_id!r} is not a known prompt ({', '.join(sorted(PROMPTS))})"
            )
        if PROMPTS[self.prompt_id].kind == "system":
            raise ValueError(f"prompt_id {self.prompt_id!r} is a system turn; use system_prompt_id")
        if self.system_prompt_id is not None:
            systems = sorted(k for k, p in PROMPTS.items() if p.kind == "system")
            if self.system_prompt_id not in systems:
                raise ValueError(
                    f"system_prompt_id {self.system_prompt_id!r} is not a system prompt "
                    f"({', '.join(systems)})"
                )

    def _check_runtime(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.attn_implementation is not None and not isinstance(self.attn_implementation, str):
            raise ValueError(
                f"attn_implementation must be a string, got {self.attn_implementation!r}"
            )
        if not isinstance(self.trust_remote_code, bool):
            raise ValueError(f"trust_remote_code must be a bool, got {self.trust_remote_code!r}")
        if self.trust_remote_code and not (
            isinstance(self.revision, str) and _COMMIT_RE.match(self.revision)
        ):
            raise ValueError(
                f"trust_remote_code for {self.id!r} needs revision pinned to a full 40-hex "
                f"commit sha, got {self.revision!r}"
            )

    def _check_sizes(self) -> None:
        for name in ("batch_size", "max_input_tokens", "rows_per_commit", "files_per_trigger"):
            value, least = getattr(self, name), 0 if name.endswith(("_trigger", "_commit")) else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
        floor = self.min_alt_text_tokens
        if isinstance(floor, bool) or not isinstance(floor, int) or floor < 0:
            raise ValueError(f"min_alt_text_tokens must be an int >= 0, got {floor!r}")
        if floor >= self.max_input_tokens:
            raise ValueError(
                f"min_alt_text_tokens ({floor}) must be below max_input_tokens "
                f"({self.max_input_tokens})"
            )
        if self.max_batch_tokens is not None and (
            isinstance(self.max_batch_tokens, bool)
            or not isinstance(self.max_batch_tokens, int)
            or self.max_batch_tokens < 1
        ):
            raise ValueError(
                f"max_batch_tokens must be an int >= 1 or null, got {self.max_batch_tokens!r}"
            )
        if self.cache_implementation not in CACHE_IMPLEMENTATIONS:
            raise ValueError(
                f"cache_implementation must be one of {CACHE_IMPLEMENTATIONS}, "
                f"got {self.cache_implementation!r}"
            )
        if (
            isinstance(self.commit_interval_s, bool)
            or not isinstance(self.commit_interval_s, (int, float))
            or not self.commit_interval_s > 0
        ):
            raise ValueError(f"commit_interval_s must be > 0, got {self.commit_interval_s!r}")
        if not isinstance(self.retry_failed, bool):
            raise ValueError(f"retry_failed must be a bool, got {self.retry_failed!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be a bool, got {self.compile!r}")
        if not isinstance(self.generation, GenerationParams):
            raise ValueError(f"generation must be GenerationParams, got {self.generation!r}")

    @property
    def is_tiny(self) -> bool:
        return self.id in TINY_IDS

    @property
    def model_revision(self) -> str:
        """Revision recorded as lineage: the pin, the tiny fingerprint, or ``unpinned``."""
        if self.is_tiny:
            return TINY_REVISION
        return self.revision if self.revision is not None else "unpinned"

    def lineage(self) -> dict[str, str]:
        """Columns every generated row carries about the model that wrote it.

        A system turn is recorded in ``gen_params`` (key ``system_prompt_id``, only
        when one is set, so rows without one keep their lineage unchanged).
        """
        params = self.generation.as_dict()
        if self.system_prompt_id is not None:
            params["system_prompt_id"] = self.system_prompt_id
        return {
            "model": self.id,
            "model_revision": self.model_revision,
            "prompt_id": self.prompt_id,
            "gen_params": json.dumps(params, sort_keys=True, separators=(",", ":")),
        }
