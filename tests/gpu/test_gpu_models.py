"""The model layer on a CUDA GPU (marker `gpu`: skipped cleanly on machines without one).

- greedy captions / fusions on CUDA equal the CPU's (float32, TF32 off);
- bf16 on CUDA runs and is deterministic;
- a real CUDA out-of-memory (a batch too large for a per-process memory cap set with
  `torch.cuda.set_per_process_memory_fraction`) splits the batch and succeeds.

Run on a GPU machine with `bash bench/gpu_check.sh`. These tests need torch,
transformers and Pillow, not Spark.
"""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

ALTS = ["Eiffel Tower, Paris, 2019", "Nike Air running shoe white size 10", "cat"]
DENSE = [
    "The image shows a tall iron tower at sunset with people walking by the river.",
    "A white shoe with a black logo on a wooden table.",
    "A black cat sitting on a windowsill, looking out at the falling snow.",
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from kale_spark.models.tiny import ensure_tiny_model

    torch.backends.cuda.matmul.allow_tf32 = False  # exact float32 matmuls, as on the CPU
    torch.backends.cudnn.allow_tf32 = False
    root = tmp_path_factory.mktemp("gpu-models")
    ensure_tiny_model("tiny:vlm", root)
    ensure_tiny_model("tiny:lm", root)
    return root


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    from PIL import Image

    out = []
    for seed, size in ((1, (48, 40)), (2, (32, 64)), (3, (80, 60))):
        rng = random.Random(seed)
        img = Image.new("RGB", size)
        img.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(size[0] * size[1])])
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _spec(model_id: str, prompt_id: str, **kw):
    from kale_spark.models.spec import GenerationParams, ModelSpec

    gen = GenerationParams(max_new_tokens=kw.pop("max_new_tokens", 12))
    return ModelSpec(id=model_id, prompt_id=prompt_id, generation=gen, **kw)


def test_captions_on_cuda_equal_the_cpu(cache_dir, jpegs):
    from kale_spark.models.captioner import Captioner
    from kale_spark.models.loading import load_vlm

    results = {}
    for device in ("cpu", "cuda"):
        spec = _spec("tiny:vlm", "dense_v1", device=device)
        model, processor = load_vlm(spec, cache_dir=cache_dir)
        assert model.device.type == device
        results[device] = Captioner(model, processor, spec).caption(jpegs)
    assert results["cuda"] == results["cpu"]
    assert len({g.text for g in results["cuda"]}) == 3


def test_fusion_on_cuda_equals_the_cpu(cache_dir):
    from kale_spark.models.fusion import FusionRewriter
    from kale_spark.models.loading import load_lm

    results = {}
    for device in ("cpu", "cuda"):
        spec = _spec("tiny:lm", "fuse_capsfusion_v1", device=device)
        model, tokenizer = load_lm(spec, cache_dir=cache_dir)
        results[device] = FusionRewriter(model, tokenizer, spec).fuse(ALTS, DENSE)
    assert results["cuda"] == results["cpu"]


def test_bf16_runs_on_cuda(cache_dir, jpegs):
    import torch

    from kale_spark.models.captioner import Captioner
    from kale_spark.models.fusion import FusionRewriter
    from kale_spark.models.loading import load_lm, load_vlm

    spec = _spec("tiny:vlm", "dense_v1", device="cuda", dtype="bfloat16")
    model, processor = load_vlm(spec, cache_dir=cache_dir)
    assert model.dtype == torch.bfloat16 and model.device.type == "cuda"
    captioner = Captioner(model, processor, spec)
    first = captioner.caption(jpegs)
    assert captioner.caption(jpegs) == first
    assert all(g.text and 0 < g.new_tokens <= 12 for g in first)

    spec = _spec("tiny:lm", "fuse_capsfusion_v1", device="cuda", dtype="bfloat16")
    model, tokenizer = load_lm(spec, cache_dir=cache_dir)
    assert model.dtype == torch.bfloat16
    out = FusionRewriter(model, tokenizer, spec).fuse(ALTS, DENSE)
    assert all(g.text and 0 < g.new_tokens <= 12 for g in out)


def _peak_reserved(fn) -> tuple[object, int]:
    """Run ``fn`` from an emptied cache; return its result and the extra bytes reserved."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_reserved()
    torch.cuda.reset_peak_memory_stats()
    result = fn()
    torch.cuda.synchronize()
    return result, torch.cuda.max_memory_reserved() - base


def test_real_cuda_oom_splits_the_batch_and_succeeds(cache_dir, caplog):
    """Eager attention over 512-token prompts: a batch of 64 needs ~64x the memory of one
    row. Under a cap between the two, the batch of 64 hits a real CUDA OOM, is halved
    until it fits, and the result equals the uncapped run's."""
    import torch

    from kale_spark.models.fusion import FusionRewriter
    from kale_spark.models.loading import load_lm

    spec = _spec(
        "tiny:lm", "fuse_capsfusion_v1", device="cuda", attn_implementation="eager",
        max_input_tokens=512, batch_size=64, max_new_tokens=4,
    )  # fmt: skip
    model, tokenizer = load_lm(spec, cache_dir=cache_dir)
    rewriter = FusionRewriter(model, tokenizer, spec)
    words = "Eiffel Tower Paris France 2019 travel photo river Seine night lights".split()
    alts = [" ".join(random.Random(i).choices(words, k=150)) for i in range(64)]
    dense = [" ".join(random.Random(100 + i).choices(words, k=150)) for i in range(64)]

    expected, peak_all = _peak_reserved(lambda: rewriter.fuse(alts, dense))
    _, peak_one = _peak_reserved(lambda: rewriter.fuse(alts[:1], dense[:1]))
    headroom = max(4 * peak_one, 64 << 20)
    assert peak_all > 2 * headroom, (peak_all, peak_one)  # the cap below can bite

    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    limit = torch.cuda.memory_reserved() + headroom
    torch.cuda.set_per_process_memory_fraction(limit / total, 0)
    try:
        with caplog.at_level(logging.WARNING, logger="kale_spark.models.batching"):
            out = rewriter.fuse(alts, dense)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
    assert "out of memory on a batch of 64" in caplog.text
    assert out == expected
