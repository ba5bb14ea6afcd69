"""The model layer on the tiny local models (CPU, offline), plus its pure helpers."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from kale_spark.models import cache
from kale_spark.models.batching import Generated, run_with_oom_split
from kale_spark.models.captioner import Captioner
from kale_spark.models.fusion import FusionRewriter
from kale_spark.models.loading import load_lm, model_cache_key, resolve_model_path
from kale_spark.models.spec import TINY_REVISION, GenerationParams, ModelSpec
from kale_spark.models.tiny import TINY_DIRS, ensure_tiny_model
from kale_spark.prompts import get_prompt

ALTS = [
    "Eiffel Tower, Paris, 2019",
    "Nike Air running shoe white size 10 free shipping",
    "cat",
]
DENSE = [
    "The image shows a tall iron tower at sunset with people walking by the river.",
    "A white shoe with a black logo on a wooden table.",
    "A black cat sitting on a windowsill, looking out at the falling snow.",
]


def _assert_counts(results: list[Generated], max_new_tokens: int) -> None:
    for g in results:
        assert g.prompt_tokens > 0
        assert 0 < g.new_tokens <= max_new_tokens
        assert g.text == g.text.strip()


# --- building and loading -------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "model_type", "text_type"),
    [("tiny:vlm", "llava", "llama"), ("tiny:lm", "mistral", None)],
)
def test_tiny_model_saved_as_safetensors(tiny_model_dir, model_id, model_type, text_type):
    path = Path(resolve_model_path(ModelSpec(id=model_id, prompt_id="dense_v1"), tiny_model_dir))
    assert path == tiny_model_dir / TINY_DIRS[model_id]
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == model_type
    if text_type:
        assert config["text_config"]["model_type"] == text_type
        assert config["vision_config"]["model_type"] == "clip_vision_model"
    assert (path / "model.safetensors").is_file()
    assert not list(path.glob("*.bin"))
    assert (path / "tokenizer.json").is_file()
    assert (path / "chat_template.jinja").is_file() or "chat_template" in (
        path / "tokenizer_config.json"
    ).read_text()


def test_tiny_model_is_built_once(tiny_model_dir):
    path = ensure_tiny_model("tiny:lm", tiny_model_dir)
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model("tiny:lm", tiny_model_dir) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime
    # Only the two finished dirs: no temp build dirs left behind.
    assert sorted(p.name for p in tiny_model_dir.iterdir()) == sorted(TINY_DIRS.values())


def test_resolve_model_path_passes_real_ids_through(tmp_path):
    hub = ModelSpec(id="mistralai/Mistral-7B-Instruct-v0.2", prompt_id="fuse_capsfusion_v1")
    local = ModelSpec(id=str(tmp_path), prompt_id="dense_v1")
    assert resolve_model_path(hub, tmp_path / "unused") == "mistralai/Mistral-7B-Instruct-v0.2"
    assert resolve_model_path(local) == str(tmp_path)
    assert not (tmp_path / "unused").exists()


def test_loader_returns_eval_models_with_left_padding(vlm, lm):
    vmodel, processor = vlm
    lmodel, tokenizer = lm
    assert type(vmodel).__name__ == "LlavaForConditionalGeneration"
    assert type(lmodel).__name__ == "MistralForCausalLM"
    assert not vmodel.training and not lmodel.training
    assert str(vmodel.device) == "cpu" and str(vmodel.dtype) == "torch.float32"
    assert processor.tokenizer.padding_side == "left" and tokenizer.padding_side == "left"
    assert processor.image_processor.crop_size == {"height": 32, "width": 32}
    assert processor.image_token == "<image>"


def test_load_lm_bfloat16_from_local_path(tiny_model_dir):
    path = str(tiny_model_dir / TINY_DIRS["tiny:lm"])
    spec = ModelSpec(
        id=path,
        prompt_id="fuse_capsfusion_v1",
        dtype="bfloat16",
        device="cpu",
        attn_implementation="eager",
        generation=GenerationParams(max_new_tokens=4),
    )
    model, tokenizer = load_lm(spec)
    assert str(model.dtype) == "torch.bfloat16"
    assert model.config._attn_implementation == "eager"
    out = FusionRewriter(model, tokenizer, spec).fuse(ALTS[:1], DENSE[:1])
    _assert_counts(out, 4)


# --- captioner ------------------------------------------------------------


def test_captioner_batched_greedy_is_deterministic_and_matches_single(vlm, jpegs, spec_factory):
    spec = spec_factory("tiny:vlm", prompt_id="dense_v1", max_new_tokens=12)
    captioner = Captioner(*vlm, spec)
    first = captioner.caption(jpegs)
    assert captioner.caption(jpegs) == first
    assert [captioner.caption([image])[0] for image in jpegs] == first
    _assert_counts(first, 12)
    assert all(g.text for g in first)
    assert len({g.text for g in first}) == 3  # the output depends on the image


def test_captioner_left_padding_with_alt_text_prompt(vlm, jpegs, spec_factory):
    """The student prompt has an alt-text slot: prompts differ in length, so the
    batch is left-padded and must still give the one-by-one results."""
    spec = spec_factory("tiny:vlm", prompt_id="student_v1", max_new_tokens=10)
    captioner = Captioner(*vlm, spec)
    batched = captioner.caption(jpegs, ALTS)
    assert len({g.prompt_tokens for g in batched}) == 3  # really padded
    single = [captioner.caption([img], [alt])[0] for img, alt in zip(jpegs, ALTS, strict=True)]
    assert batched == single
    _assert_counts(batched, 10)
    with pytest.raises(ValueError, match="one alt_text per image"):
        captioner.caption(jpegs)


def test_captioner_small_batch_size_and_beams(vlm, jpegs, spec_factory):
    greedy = Captioner(*vlm, spec_factory("tiny:vlm", prompt_id="dense_v1", max_new_tokens=8))
    split = Captioner(
        *vlm, spec_factory("tiny:vlm", prompt_id="dense_v1", max_new_tokens=8, batch_size=2)
    )
    assert split.caption(jpegs) == greedy.caption(jpegs)
    beams = Captioner(*vlm, spec_factory("tiny:vlm", prompt_id="dense_v1", num_beams=3))
    out = beams.caption(jpegs)
    assert out == beams.caption(jpegs)
    _assert_counts(out, 12)
    # Beam search keeps 3 hypotheses and ranks whole sequences, so on this random-weight
    # model it ends elsewhere than greedy decoding (all 3 images differ today); were
    # num_beams ignored, every caption would equal the greedy one.
    plain = Captioner(*vlm, spec_factory("tiny:vlm", prompt_id="dense_v1")).caption(jpegs)
    assert [g.text for g in out] != [g.text for g in plain]


def test_captioner_rejects_undecodable_image(vlm, jpegs, spec_factory):
    captioner = Captioner(*vlm, spec_factory("tiny:vlm", prompt_id="dense_v1"))
    with pytest.raises(ValueError, match="image 1: cannot decode"):
        captioner.caption([jpegs[0], b"not an image"])


def test_captioner_rejects_a_text_prompt(vlm, spec_factory):
    with pytest.raises(ValueError, match="not vlm"):
        Captioner(*vlm, spec_factory("tiny:vlm", prompt_id="fuse_capsfusion_v1"))


# --- fusion -----------------------------------------------------------------


def test_fusion_batched_greedy_is_deterministic_and_matches_single(lm, spec_factory):
    spec = spec_factory("tiny:lm", prompt_id="fuse_capsfusion_v1", max_new_tokens=16)
    rewriter = FusionRewriter(*lm, spec)
    first = rewriter.fuse(ALTS, DENSE)
    assert len({g.prompt_tokens for g in first}) == 3  # really padded
    assert rewriter.fuse(ALTS, DENSE) == first
    assert [rewriter.fuse([a], [d])[0] for a, d in zip(ALTS, DENSE, strict=True)] == first
    _assert_counts(first, 16)
    assert len({g.text for g in first}) == 3


def test_fusion_beams_capsfusion_style(lm, spec_factory):
    spec = spec_factory("tiny:lm", prompt_id="fuse_capsfusion_v1", max_new_tokens=10, num_beams=3)
    rewriter = FusionRewriter(*lm, spec)
    out = rewriter.fuse(ALTS, DENSE)
    assert out == rewriter.fuse(ALTS, DENSE)
    _assert_counts(out, 10)
    # Only beam search changes the output: greedy decoding with the same budget ends
    # elsewhere (on all 3 inputs of this random-weight model today).
    greedy = spec_factory("tiny:lm", prompt_id="fuse_capsfusion_v1", max_new_tokens=10)
    plain = FusionRewriter(*lm, greedy).fuse(ALTS, DENSE)
    assert [g.text for g in out] != [g.text for g in plain]


def _slots(prompt: str) -> tuple[str, str]:
    """(alt-text, dense caption) as they stand in a templated fuse_capsfusion_v1 prompt."""
    alt = prompt.split("\nSentence 1: ")[-1].split("\nSentence 2: ")[0]
    dense = prompt.split("\nSentence 2: ")[-1].split("\nNew Sentence:")[0]
    return alt, dense


def test_fusion_prompt_is_truncated_to_the_token_budget(lm, spec_factory):
    _, tokenizer = lm
    rewriter = FusionRewriter(*lm, spec_factory("tiny:lm", prompt_id="fuse_capsfusion_v1"))
    overhead = rewriter.instruction_tokens
    spec = spec_factory(
        "tiny:lm",
        prompt_id="fuse_capsfusion_v1",
        max_input_tokens=overhead + 50,
        min_alt_text_tokens=16,
    )
    rewriter = FusionRewriter(*lm, spec)
    long_alt = " ".join(["Eiffel Tower Paris France travel photo 2019"] * 20)
    prompt = rewriter.build_prompt(long_alt, DENSE[0])

    n_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert overhead + 40 <= n_tokens <= overhead + 50
    assert get_prompt("fuse_capsfusion_v1").fragments[0] in prompt  # instruction intact
    assert prompt.endswith("\nNew Sentence: [/INST]")
    kept_alt, kept_dense = _slots(prompt)
    assert kept_dense == DENSE[0]  # a short dense caption stays whole
    assert 0 < len(kept_alt) < len(long_alt) and long_alt.startswith(kept_alt)

    # Nothing to cut: the prompt is the full, untruncated template.
    full = FusionRewriter(*lm, spec_factory("tiny:lm", prompt_id="fuse_capsfusion_v1"))
    assert _slots(full.build_prompt(ALTS[0], DENSE[0])) == (ALTS[0], DENSE[0])

    too_small = spec_factory(
        "tiny:lm",
        prompt_id="fuse_capsfusion_v1",
        max_input_tokens=overhead - 1,
        min_alt_text_tokens=0,
    )
    with pytest.raises(ValueError, match="fusion instruction alone"):
        FusionRewriter(*lm, too_small).build_prompt("a", "b")


def test_the_alt_texts_knowledge_survives_a_long_dense_caption(lm, spec_factory):
    """A long dense caption with an entity-bearing alt-text: the dense caption is cut,
    the alt-text and its names, place and year stay whole (the tiny model's real,
    trained BPE tokenizer through the real loader)."""
    _, tokenizer = lm
    overhead = FusionRewriter(*lm, spec_factory("tiny:lm", prompt_id="fuse_capsfusion_v1"))
    overhead = overhead.instruction_tokens
    alt = "Neuschwanstein Castle, Schwangau, Bavaria, Germany, October 2019"
    long_dense = " ".join(DENSE * 12)
    n_alt = len(tokenizer(alt, add_special_tokens=False)["input_ids"])
    spec = spec_factory(
        "tiny:lm",
        prompt_id="fuse_capsfusion_v1",
        max_input_tokens=overhead + n_alt + 40,
        min_alt_text_tokens=n_alt,
    )
    prompt = FusionRewriter(*lm, spec).build_prompt(alt, long_dense)
    kept_alt, kept_dense = _slots(prompt)
    assert kept_alt == alt
    for entity in ("Neuschwanstein Castle", "Schwangau", "Bavaria", "Germany", "October", "2019"):
        assert entity in kept_alt
    assert 0 < len(kept_dense) < len(long_dense) and long_dense.startswith(kept_dense)
    assert len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) <= spec.max_input_tokens


# --- per-worker cache ---------------------------------------------------------


def test_from_spec_loads_once_per_worker_and_logs_loads(
    tiny_model_dir, jpegs, tmp_path, monkeypatch
):
    log_file = tmp_path / "loads.jsonl"
    monkeypatch.setenv(cache.LOAD_LOG_ENV, str(log_file))
    cache.clear()
    try:
        spec = ModelSpec(id="tiny:vlm", prompt_id="dense_v1", device="cpu")
        a = Captioner.from_spec(spec, cache_dir=tiny_model_dir)
        other = ModelSpec(
            id="tiny:vlm",
            prompt_id="dense_v1",
            device="cpu",
            generation=GenerationParams(max_new_tokens=3),
        )
        b = Captioner.from_spec(other, cache_dir=tiny_model_dir)
        assert a.model is b.model  # decoding params do not change the loaded model
        key = model_cache_key("vlm", spec, "cpu", tiny_model_dir)
        assert cache.load_count(key) == 1 and cache.load_count() == 1
        events = cache.read_load_log(log_file)
        assert [(e["pid"], e["key"]) for e in events] == [(os.getpid(), key)]
        assert b.caption(jpegs[:1])[0].new_tokens <= 3
    finally:
        cache.clear()


def test_get_or_load_retries_after_a_failed_load():
    cache.clear()
    calls = []

    def failing():
        calls.append(1)
        raise OSError("disk")

    with pytest.raises(OSError):
        cache.get_or_load("k", failing)
    assert cache.get_or_load("k", lambda: "model") == "model"
    assert cache.get_or_load("k", failing) == "model"
    assert cache.load_count("k") == 1 and len(calls) == 1
    cache.clear()


# --- OOM splitting -------------------------------------------------------------


class FakeOOM(RuntimeError):
    pass


def test_run_with_oom_split_halves_batches_and_keeps_order():
    seen: list[int] = []

    def fn(batch: list[int]) -> list[int]:
        seen.append(len(batch))
        if len(batch) > 2:
            raise FakeOOM("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in batch]

    assert run_with_oom_split(fn, list(range(11)), 8) == [x * 10 for x in range(11)]
    # 8 fails, 4 fails, then batches of 2 for the rest of the call.
    assert seen == [8, 4, 2, 2, 2, 2, 2, 1]


def test_run_with_oom_split_raises_at_batch_size_one_and_on_other_errors():
    def always_oom(batch):
        raise RuntimeError("CUDA error: out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        run_with_oom_split(always_oom, [1, 2, 3], 4)

    calls = []

    def broken(batch):
        calls.append(len(batch))
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        run_with_oom_split(broken, [1, 2, 3], 4)
    assert calls == [3]  # not retried
    assert run_with_oom_split(broken, [], 4) == []


def test_torch_cuda_oom_error_is_recognised():
    import torch

    from kale_spark.models.batching import is_oom_error

    assert is_oom_error(torch.cuda.OutOfMemoryError("boom"))
    assert not is_oom_error(RuntimeError("shape mismatch"))


# --- specs -----------------------------------------------------------------------


def test_spec_lineage():
    spec = ModelSpec(
        id="tiny:lm",
        prompt_id="fuse_capsfusion_v1",
        generation=GenerationParams(max_new_tokens=80, num_beams=3),
    )
    assert spec.lineage() == {
        "model": "tiny:lm",
        "model_revision": TINY_REVISION,
        "prompt_id": "fuse_capsfusion_v1",
        "gen_params": '{"do_sample":false,"max_new_tokens":80,"num_beams":3}',
    }
    hub = ModelSpec(id="org/model", prompt_id="dense_v1")
    assert hub.lineage()["model_revision"] == "unpinned"


def test_spec_accepts_a_nested_generation_dict():
    spec = ModelSpec(id="tiny:vlm", prompt_id="dense_v1", generation={"max_new_tokens": 5})
    assert spec.generation == GenerationParams(max_new_tokens=5)
    assert hash(spec)  # usable as a cache key


SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"trust_remote_code": True}, "trust_remote_code"),
        ({"trust_remote_code": True, "revision": "main"}, "trust_remote_code"),
        ({"dtype": "fp8"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_input_tokens": -1}, "max_input_tokens"),
        ({"prompt_id": "nope_v9"}, "prompt_id"),
        ({"id": ""}, "id"),
        ({"id": "tiny:giant"}, "tiny"),
        ({"generation": {"max_new_tokens": 0}}, "max_new_tokens"),
        ({"generation": {"num_beams": 0}}, "num_beams"),
        ({"generation": {"temperature": 0.7}}, "temperature"),
    ],
)
def test_spec_validation_names_the_field(kwargs, field):
    base = {"id": "org/model", "prompt_id": "dense_v1"}
    with pytest.raises(ValueError, match=field):
        ModelSpec(**{**base, **kwargs})


def test_trust_remote_code_with_pinned_commit_is_allowed():
    spec = ModelSpec(
        id="THUDM/cogvlm-chat-hf", prompt_id="dense_v1", trust_remote_code=True, revision=SHA
    )
    assert spec.lineage()["model_revision"] == SHA


def test_jpeg_decoded_at_a_reduced_scale_never_below_the_model_side(vlm) -> None:
    from kale_spark.models.captioner import decode_image, model_input_side

    model, processor = vlm
    side = model_input_side(processor)
    assert side == model.config.vision_config.image_size  # the tower's fixed input size
    big = _photo_jpeg((side * 9, side * 5))
    full = decode_image(big, 0)
    reduced = decode_image(big, 0, side)
    assert full.size == (side * 9, side * 5)
    # Pillow's draft picks the smallest DCT scale keeping both sides >= side: 1/4 here.
    assert reduced.size == (-(-side * 9 // 4), -(-side * 5 // 4))
    assert min(reduced.size) >= side
    png = io.BytesIO()
    full.save(png, format="PNG")
    assert decode_image(png.getvalue(), 0, side).size == full.size  # only JPEGs are drafted


def _photo_jpeg(size: tuple[int, int]) -> bytes:
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    rgb = np.stack([(x * 255 // size[0]), (y * 255 // size[1]), ((x + y) % 256)], axis=-1)
    out = io.BytesIO()
    Image.fromarray(rgb.astype("uint8")).save(out, format="JPEG", quality=90)
    return out.getvalue()
