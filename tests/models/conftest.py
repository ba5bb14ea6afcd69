"""Fixtures of the model tests: tiny models built once per session, loaded once.

No hub is reachable: HF_HUB_OFFLINE=1 makes any accidental hub lookup fail fast.
The tiny models are built into a session temp dir (not the user's cache), so the
build and the loading code both run in every test session.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache dir holding both tiny models, built once per session."""
    from kale_spark.models.tiny import ensure_tiny_model

    root = tmp_path_factory.mktemp("model-cache")
    ensure_tiny_model("tiny:vlm", root)
    ensure_tiny_model("tiny:lm", root)
    return root


@pytest.fixture(scope="session", autouse=True)
def _torch_threads() -> None:
    from kale_spark.models.device import set_torch_threads

    set_torch_threads(1)


@pytest.fixture(scope="session")
def vlm(tiny_model_dir: Path) -> tuple[Any, Any]:
    """``(model, processor)`` of tiny:vlm through the real loader (shared, read-only)."""
    from kale_spark.models.loading import load_vlm
    from kale_spark.models.spec import ModelSpec

    return load_vlm(ModelSpec(id="tiny:vlm", prompt_id="dense_v1"), cache_dir=tiny_model_dir)


@pytest.fixture(scope="session")
def lm(tiny_model_dir: Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of tiny:lm through the real loader (shared, read-only)."""
    from kale_spark.models.loading import load_lm
    from kale_spark.models.spec import ModelSpec

    return load_lm(
        ModelSpec(id="tiny:lm", prompt_id="fuse_capsfusion_v1"), cache_dir=tiny_model_dir
    )


def _jpeg(size: tuple[int, int], seed: int) -> bytes:
    """A JPEG with a seeded pattern (different images must give different pixels)."""
    import random

    from PIL import Image

    rng = random.Random(seed)
    img = Image.new("RGB", size)
    img.putdata(
        [
            (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            for _ in range(size[0] * size[1])
        ]
    )
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="session")
def jpegs() -> list[bytes]:
    """Three small JPEGs of different sizes and content."""
    return [_jpeg((48, 40), 1), _jpeg((32, 64), 2), _jpeg((80, 60), 3)]


@pytest.fixture
def spec_factory() -> Callable[..., Any]:
    """``spec_factory("tiny:vlm", prompt_id=..., max_new_tokens=..., num_beams=...)``."""
    from kale_spark.models.spec import GenerationParams, ModelSpec

    def make(model_id: str, *, prompt_id: str, max_new_tokens: int = 12, num_beams: int = 1, **kw):
        return ModelSpec(
            id=model_id,
            prompt_id=prompt_id,
            generation=GenerationParams(max_new_tokens=max_new_tokens, num_beams=num_beams),
            **kw,
        )

    return make
