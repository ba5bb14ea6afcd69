"""The three model roles of bench/engine_gpu.py, built with random weights straight on the
device: the published dimensions of the paper profile's models (``--smoke``: the same
architectures, a few layers and a small hidden size, for a CPU run in seconds).

    caption  Qwen2-VL-7B-Instruct (its ViT with 2x2 merging + the 7B Qwen2 LM, M-RoPE)
    fuse     Mistral-7B-Instruct-v0.2
    student  DFN5B-CLIP ViT-H/14 at 490 px + Qwen2-1.5B joined by LLaVA's projector,
             composed as kale_spark/student/model.py composes it

No download and no disk: the configs are written here from the models' published
``config.json`` values, the weights are initialised on the device (bf16 on a GPU), and
the tokenizers are trained on the spot (kale_spark.models.tiny). Their vocabularies
are far smaller than the models', so text decoded from random weights is mostly
empty; the compute per token is the real model's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kale_spark.models import tiny
from kale_spark.models.spec import GenerationParams, ModelSpec

__all__ = ["ROLES", "Role", "build_role", "paper_role", "parameter_count", "role_spec"]

ROLES = ("caption", "fuse", "student")
IMAGE_SIDE = 490  # fetch.image.resolution in conf/paper.yaml


@dataclass(frozen=True)
class Role:
    """One role as the paper profile runs it: the model it stands for, the engine kind
    (models/inference.py ``KINDS``), the prompt, the batch and decoding settings."""

    name: str
    model_id: str
    kind: str
    prompt_id: str
    batch_size: int
    new_tokens: int
    beams: int = 1
    max_input_tokens: int = 512
    min_alt_text_tokens: int = 0


# conf/paper.yaml's settings per role (caption, augment, student.caption).
PAPER = {
    "caption": Role("caption", "Qwen/Qwen2-VL-7B-Instruct", "caption", "dense_v1", 32, 256),
    "fuse": Role(
        "fuse",
        "mistralai/Mistral-7B-Instruct-v0.2",
        "fuse",
        "fuse_capsfusion_v1",
        32,
        192,
        beams=3,
        max_input_tokens=640,
        min_alt_text_tokens=96,
    ),  # fmt: skip
    "student": Role(
        "student",
        "apple/DFN5B-CLIP-ViT-H-14-378 + Qwen/Qwen2-1.5B",
        "student",
        "student_v1",
        64,
        256,
        max_input_tokens=128,
    ),  # fmt: skip
}
SMOKE_BATCH = {"caption": 2, "fuse": 2, "student": 2}
SMOKE_NEW_TOKENS = 4


def paper_role(name: str, smoke: bool) -> Role:
    import dataclasses

    role = PAPER[name]
    if not smoke:
        return role
    return dataclasses.replace(role, batch_size=SMOKE_BATCH[name], new_tokens=SMOKE_NEW_TOKENS)


def role_spec(
    role: Role, device: str, *, cache: str | None = None, compile_: bool = False
) -> ModelSpec:
    """The ``ModelSpec`` the engine runs the role with: every row generates exactly
    ``new_tokens`` (``min_new_tokens`` = ``max_new_tokens``: random weights must not
    stop early), ``cache`` the KV cache implementation under test, ``compile_`` whether
    the forward runs under ``torch.compile`` (models/device.py ``compiled``)."""
    on_gpu = device.startswith("cuda")
    return ModelSpec(
        id=role.model_id,
        revision="0" * 40,
        prompt_id=role.prompt_id,
        dtype="bfloat16" if on_gpu else "float32",
        device=device,
        attn_implementation="sdpa",
        batch_size=role.batch_size,
        max_input_tokens=role.max_input_tokens,
        min_alt_text_tokens=role.min_alt_text_tokens,
        cache_implementation=cache,
        compile=compile_,
        generation=GenerationParams(
            max_new_tokens=role.new_tokens,
            min_new_tokens=role.new_tokens,
            num_beams=role.beams,
        ),
    )


# ------------------------------------------------------------------ dimensions


def _qwen2_vl_dims(smoke: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(text, vision) of Qwen2-VL-7B-Instruct's config.json."""
    if smoke:
        text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2)
        text.update(num_attention_heads=4, num_key_value_heads=2, mrope=[2, 3, 3])
        vision = dict(depth=2, embed_dim=32, num_heads=2)
    else:
        text = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28)
        text.update(num_attention_heads=28, num_key_value_heads=4, mrope=[16, 24, 24])
        vision = dict(depth=32, embed_dim=1280, num_heads=16)
    text.update(vocab_size=152064, rms_norm_eps=1e-6, rope_theta=1e6)
    vision.update(mlp_ratio=4, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    return text, vision


def _mistral_dims(smoke: bool) -> dict[str, Any]:
    """Mistral-7B-Instruct-v0.2's config.json."""
    dims = dict(vocab_size=32000, rms_norm_eps=1e-5, rope_theta=1e6, sliding_window=None)
    if smoke:
        dims.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2)
        dims.update(num_attention_heads=4, num_key_value_heads=2)
    else:
        dims.update(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32)
        dims.update(num_attention_heads=32, num_key_value_heads=8)
    return dims


def _student_dims(smoke: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(CLIP ViT-H/14 tower at 490 px, Qwen2-1.5B)."""
    vision = dict(image_size=IMAGE_SIDE, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5)
    lm = dict(vocab_size=151936, rms_norm_eps=1e-6, rope_theta=1e6)
    if smoke:
        vision.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2)
        vision.update(num_attention_heads=2, projection_dim=32)
        lm.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2)
        lm.update(num_attention_heads=4, num_key_value_heads=2)
    else:
        vision.update(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32)
        vision.update(num_attention_heads=16, projection_dim=1024)
        lm.update(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28)
        lm.update(num_attention_heads=12, num_key_value_heads=2)
    return vision, lm


# ------------------------------------------------------------------ builders


def _on_device(model_cls: Any, config: Any, device: str) -> Any:
    """``model_cls(config)`` initialised directly on ``device`` (bf16 on a GPU)."""
    import torch

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    config._attn_implementation = "sdpa"
    torch.manual_seed(tiny.SEED)
    with torch.device(device):
        model = model_cls._from_config(config, dtype=dtype)
    return model.eval()


def _generation_ids(model: Any, tok: Any) -> None:
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id


def build_caption(smoke: bool, device: str) -> tuple[Any, Any]:
    """Qwen2-VL: ``(model, processor)``; 490 px images become 18x18 merged patches."""
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLProcessor,
        Qwen2VLTextConfig,
    )

    try:  # the PIL backend (the default class needs torchvision)
        from transformers import Qwen2VLImageProcessorPil as ImageProcessor
    except ImportError:  # a transformers 5 without the PIL classes
        from transformers import Qwen2VLImageProcessor as ImageProcessor

    specials = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>")
    specials += ("<|image_pad|>", "<|video_pad|>")
    template = CHATML.replace("{{ IMAGE }}", "<|vision_start|><|image_pad|><|vision_end|>")
    tok = tiny.llama_tokenizer(extra_special=specials)
    tok.chat_template = template
    ids = tok.convert_tokens_to_ids
    text, vision = _qwen2_vl_dims(smoke)
    rope = {"rope_type": "default", "rope_theta": text.pop("rope_theta")}
    rope["mrope_section"] = text.pop("mrope")
    text_config = Qwen2VLTextConfig(
        **text, rope_parameters=rope, tie_word_embeddings=False, pad_token_id=tok.pad_token_id
    )
    vision["hidden_size"] = text_config.hidden_size
    config = Qwen2VLConfig(
        text_config=text_config.to_dict(),
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    model = _on_device(Qwen2VLForConditionalGeneration, config, device)
    _generation_ids(model, tok)
    pixels = dict(patch_size=14, merge_size=2, temporal_patch_size=2)
    pixels.update(min_pixels=56 * 56, max_pixels=28 * 28 * 1280)  # Qwen2-VL's defaults
    processor = Qwen2VLProcessor(
        image_processor=ImageProcessor(**pixels),
        tokenizer=tok,
        video_processor=_video_processor(pixels),
        chat_template=template,
    )
    return model, processor


def _video_processor(pixels: dict[str, Any]) -> Any:
    """The video processor Qwen2-VL's processor insists on (captioning never sends a
    video); its class imports torchvision, so without torchvision a bare base one."""
    try:
        from transformers import Qwen2VLVideoProcessor

        return Qwen2VLVideoProcessor(**pixels)
    except ImportError:
        from transformers.video_processing_utils import BaseVideoProcessor

        return BaseVideoProcessor()


def build_fuse(smoke: bool, device: str) -> tuple[Any, Any]:
    """Mistral: ``(model, tokenizer)`` with Mistral-Instruct's ``[INST]`` chat format."""
    from transformers import MistralConfig, MistralForCausalLM

    tok = tiny.llama_tokenizer()
    tok.chat_template = tiny.LM_CHAT_TEMPLATE
    tok.padding_side = "left"
    config = MistralConfig(
        **_mistral_dims(smoke),
        max_position_embeddings=32768,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    model = _on_device(MistralForCausalLM, config, device)
    _generation_ids(model, tok)
    return model, tok


def build_student(smoke: bool, device: str) -> tuple[Any, Any]:
    """The student: CLIP tower + Qwen2 LM in ``LlavaForConditionalGeneration`` with the
    paper profile's projector (GELU, layer -2, patch tokens only), ``(model, processor)``."""
    from transformers import (
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        Qwen2Config,
    )

    from kale_spark.student.model import IMAGE_TOKEN, STUDENT_CHAT_TEMPLATE

    try:  # the PIL backend (the default class needs torchvision)
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # a transformers 5 without the PIL classes
        from transformers import CLIPImageProcessor as ImageProcessor

    vision_dims, lm_dims = _student_dims(smoke)
    tok = tiny.train_tokenizer(
        [tiny.PAD, "<|endoftext|>", tiny.UNK, IMAGE_TOKEN],
        byte_level=True,
        pad_token=tiny.PAD,
        eos_token="<|endoftext|>",
        unk_token=tiny.UNK,
    )
    tok.padding_side = "left"
    vision = CLIPVisionConfig(**vision_dims)
    rope = {"rope_type": "default", "rope_theta": lm_dims.pop("rope_theta")}
    lm = Qwen2Config(**lm_dims, rope_parameters=rope, pad_token_id=tok.pad_token_id)
    patches = (IMAGE_SIDE // vision.patch_size) ** 2
    config = LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=lm.to_dict(),
        image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=patches,
        tie_word_embeddings=False,
    )
    model = _on_device(LlavaForConditionalGeneration, config, device)
    _generation_ids(model, tok)
    side = {"shortest_edge": IMAGE_SIDE}
    crop = {"height": IMAGE_SIDE, "width": IMAGE_SIDE}
    processor = LlavaProcessor(
        image_processor=ImageProcessor(size=side, crop_size=crop),
        tokenizer=tok,
        patch_size=vision.patch_size,
        vision_feature_select_strategy="default",
        chat_template=STUDENT_CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,  # CLIP's class token
    )
    return model, processor


# Qwen2-VL's ChatML turns (a short version of the real template).
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for p in m['content'] %}{% if p['type'] == 'image' %}{{ IMAGE }}"
    "{% elif p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_BUILDERS = {"caption": build_caption, "fuse": build_fuse, "student": build_student}


def build_role(name: str, smoke: bool, device: str) -> tuple[Any, Any]:
    """``(model, processor or tokenizer)`` of role ``name`` on ``device``."""
    return _BUILDERS[name](smoke, device)


def parameter_count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
