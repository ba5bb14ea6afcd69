"""The captioner and the fusion rewriter across the transformers families users run.

Each family is built tiny from its own config classes (tests/support/tiny_families.py:
random weights, a tokenizer trained here, the family's processor and chat format),
saved with save_pretrained and loaded back through models.loading from its
directory, like a hub snapshot. Greedy output of a left-padded batch must equal the
one-by-one output, and the prompts must really differ in length (so padding is
exercised). The expected classes below are the families' own, named here by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kale_spark.models.captioner import Captioner
from kale_spark.models.fusion import FusionRewriter
from kale_spark.models.loading import load_lm, load_vlm
from kale_spark.models.spec import GenerationParams, ModelSpec
from tests.support.tiny_families import LM_FAMILIES, VLM_FAMILIES, build_family

VLMS = {
    "llava": ("llava", "LlavaForConditionalGeneration"),
    "llava_next": ("llava_next", "LlavaNextForConditionalGeneration"),
    "llava_onevision": ("llava_onevision", "LlavaOnevisionForConditionalGeneration"),
    "qwen2_vl": ("qwen2_vl", "Qwen2VLForConditionalGeneration"),
    "idefics3": ("idefics3", "Idefics3ForConditionalGeneration"),
}
LMS = {
    "mistral": ("mistral", "MistralForCausalLM"),
    "qwen2": ("qwen2", "Qwen2ForCausalLM"),
    "llama": ("llama", "LlamaForCausalLM"),
}
ALTS = ["cat", "Eiffel Tower, Paris, France, 2019, at night from the river", "Nike shoe"]
DENSE = [
    "A black cat on a windowsill.",
    "The image shows a tall iron lattice tower lit up at night above a river with boats.",
    "A white running shoe.",
]


def test_the_matrix_covers_the_families():
    assert set(VLM_FAMILIES) == set(VLMS)
    assert set(LM_FAMILIES) == set(LMS)


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("families")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = build_family(name, root / name)
        return built[name]

    return get


def _spec(path: Path, prompt_id: str, **kw) -> ModelSpec:
    gen = GenerationParams(max_new_tokens=kw.pop("max_new_tokens", 8))
    return ModelSpec(id=str(path), prompt_id=prompt_id, device="cpu", generation=gen, **kw)


def _check_saved(path: Path, model_type: str) -> None:
    assert json.loads((path / "config.json").read_text())["model_type"] == model_type
    assert (path / "model.safetensors").is_file() and not list(path.glob("*.bin"))


@pytest.mark.parametrize("family", sorted(VLMS))
def test_vlm_family_batched_left_padded_equals_one_by_one(family, family_dir, jpegs):
    model_type, cls_name = VLMS[family]
    path = family_dir(family)
    _check_saved(path, model_type)
    model, processor = load_vlm(_spec(path, "dense_v1"))
    assert type(model).__name__ == cls_name
    assert processor.tokenizer.padding_side == "left"

    dense = Captioner(model, processor, _spec(path, "dense_v1"))
    batched = dense.caption(jpegs)
    assert batched == [dense.caption([image])[0] for image in jpegs]
    assert all(g.text and 0 < g.new_tokens <= 8 for g in batched)
    assert len({g.text for g in batched}) == 3  # the output depends on the image

    # The student prompt carries an alt-text: prompts of different lengths.
    student = Captioner(model, processor, _spec(path, "student_v1", batch_size=3))
    batched = student.caption(jpegs, ALTS)
    assert len({g.prompt_tokens for g in batched}) > 1  # really left-padded
    single = [student.caption([j], [a])[0] for j, a in zip(jpegs, ALTS, strict=True)]
    assert batched == single
    pairs = Captioner(model, processor, _spec(path, "student_v1", batch_size=2))
    assert pairs.caption(jpegs, ALTS) == batched


@pytest.mark.parametrize("family", sorted(LMS))
def test_lm_family_batched_left_padded_equals_one_by_one(family, family_dir):
    model_type, cls_name = LMS[family]
    path = family_dir(family)
    _check_saved(path, model_type)
    model, tokenizer = load_lm(_spec(path, "fuse_capsfusion_v1"))
    assert type(model).__name__ == cls_name
    rewriter = FusionRewriter(model, tokenizer, _spec(path, "fuse_capsfusion_v1"))
    batched = rewriter.fuse(ALTS, DENSE)
    assert len({g.prompt_tokens for g in batched}) > 1  # really left-padded
    assert batched == [rewriter.fuse([a], [d])[0] for a, d in zip(ALTS, DENSE, strict=True)]
    assert all(g.text and 0 < g.new_tokens <= 8 for g in batched)
    assert len({g.text for g in batched}) == 3
    # The chat turn's end token stops generation: never part of the text.
    assert all(tokenizer.eos_token not in g.text for g in batched)


def _jpeg_of(size: tuple[int, int]) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (120, 60, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def test_a_row_the_processor_refuses_is_quarantined_alone(family_dir, jpegs):
    """Qwen2-VL's processor raises on an aspect ratio above 200: that row ends with
    reason prepare_error, the rows beside it are captioned, nothing raises."""
    import pandas as pd

    from kale_spark import reasons
    from kale_spark.models.inference import CaptionEngine, run_partition

    path = family_dir("qwen2_vl")
    spec = _spec(path, "dense_v1", batch_size=4, max_new_tokens=4)
    engine = CaptionEngine(Captioner(*load_vlm(spec), spec))
    images = [jpegs[0], _jpeg_of((3, 900)), jpegs[1], jpegs[2]]  # 1:300
    frame = pd.DataFrame({"uid": ["a", "thin", "b", "c"], "image": images})
    out = pd.concat(list(run_partition(engine, [frame], batch_size=4))).set_index("uid")
    assert out.loc["thin", "reason"] == reasons.REASON_PREPARE_ERROR
    assert out.loc[["a", "b", "c"], "reason"].isna().all()
    assert out.loc[["a", "b", "c"], "text"].str.len().min() > 0


@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
def test_image_tokens_are_counted_by_the_models_own_processor(family, family_dir):
    """The token budget's cost of a row is what the processor really makes of that
    image: per image size for a dynamic-resolution family, once for a fixed tower."""
    path = family_dir(family)
    spec = _spec(path, "dense_v1")
    captioner = Captioner(*load_vlm(spec), spec)
    prompt = captioner.prompt_text()
    counts = {}
    for size in ((64, 64), (490, 490), (490, 245)):
        image = _jpeg_of(size)
        real = captioner.prepare([image], [prompt]).inputs["attention_mask"].sum().item()
        counts[size] = captioner.prompt_tokens(prompt, image)
        assert counts[size] == real
    if family == "qwen2_vl":
        assert len(set(counts.values())) > 1  # dynamic resolution: counted per size
        assert captioner.decode_side is None  # so decoded at full size
    else:
        assert len(set(counts.values())) == 1
        assert captioner.decode_side is not None
