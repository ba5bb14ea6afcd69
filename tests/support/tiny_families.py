"""Tiny random-weight models of the transformers families users run, built locally.

Each builder makes one family from its own config classes (the family's vision
tower, projector and language model, two layers each, random weights with a fixed
seed), a byte-level BPE tokenizer trained on the spot with the family's special
tokens and a chat template in the family's format, and the family's processor. It
saves everything with ``save_pretrained``; the result loads through
``models.loading`` (``load_vlm`` / ``load_lm``) from its directory like a hub
snapshot. The tests run ``Captioner`` / ``FusionRewriter`` over each (test matrix in
tests/models/test_families.py). The ``tiny:vlm`` / ``tiny:lm`` defaults (LLaVA and
Mistral) live in ``models.tiny``.

    VLMs: llava (tiny:vlm's recipe), llava_next, llava_onevision, qwen2_vl, idefics3
    LMs:  mistral (tiny:lm's recipe), qwen2, llama
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kale_spark.models import tiny

__all__ = ["LM_FAMILIES", "VLM_FAMILIES", "build_family"]

HIDDEN = 64
IMAGE_PLACEHOLDER = "<image>"

# Chat templates in each family's own turn format (short versions of the real ones).
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for p in m['content'] %}{% if p['type'] == 'image' %}{{ IMAGE }}"
    "{% elif p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    "\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
IDEFICS3 = (
    "<|im_start|>{% for m in messages %}{{ m['role'] | capitalize }}:"
    "{% for p in m['content'] %}{% if p['type'] == 'image' %}<image>"
    "{% elif p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def _tokenizer(specials: tuple[str, ...], template: str, **tokens: str) -> Any:
    tok = tiny.llama_tokenizer(extra_special=specials)
    for name, value in tokens.items():
        setattr(tok, name, value)
    tok.chat_template = template
    return tok


def _text_config(cls_name: str, tok: Any, **extra: Any) -> Any:
    import transformers

    return getattr(transformers, cls_name)(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=tiny.INIT_RANGE,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
        **extra,
    )


def _save(model_cls: Any, config: Any, processor: Any, tok: Any, out: Path) -> Path:
    import torch

    torch.manual_seed(tiny.SEED)
    model = model_cls(config).eval()
    tiny._set_generation_config(model, tok)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def _clip_vision(**extra: Any) -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        image_size=tiny.IMAGE_SIZE,
        patch_size=tiny.PATCH_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=32,
        initializer_range=tiny.INIT_RANGE,
        **extra,
    )


def build_llava_next(out: Path) -> Path:
    """LLaVA-NeXT (LLaVA-1.6): CLIP tower, anyres tiling (tokens vary with the image's shape)."""
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
    )

    tok = _tokenizer((IMAGE_PLACEHOLDER,), tiny.VLM_CHAT_TEMPLATE)
    side = tiny.IMAGE_SIZE
    pinpoints = [[side, side], [side, 2 * side], [2 * side, side]]
    config = LlavaNextConfig(
        vision_config=_clip_vision(),
        text_config=_text_config("LlamaConfig", tok),
        image_token_index=tok.convert_tokens_to_ids(IMAGE_PLACEHOLDER),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        tie_word_embeddings=False,
    )
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": side},
        crop_size={"height": side, "width": side},
        image_grid_pinpoints=pinpoints,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=tiny.PATCH_SIZE,
        vision_feature_select_strategy="default",
        chat_template=tiny.VLM_CHAT_TEMPLATE,
        image_token=IMAGE_PLACEHOLDER,
        num_additional_image_tokens=1,
    )
    return _save(LlavaNextForConditionalGeneration, config, processor, tok, out)


def build_qwen2_vl(out: Path) -> Path:
    """Qwen2-VL: its ViT with 2x2 patch merging, M-RoPE, dynamic resolution, ChatML."""
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessorPil,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    specials = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>")
    specials += ("<|image_pad|>", "<|video_pad|>")
    template = CHATML.replace("{{ IMAGE }}", "<|vision_start|><|image_pad|><|vision_end|>")
    tok = _tokenizer(specials, template)
    ids = tok.convert_tokens_to_ids
    # M-RoPE splits each head's rotary half (head_dim 16 / 2 = 8) over (time, height, width).
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
    text = _text_config("Qwen2VLTextConfig", tok, rope_parameters=rope)
    vision = dict(depth=2, embed_dim=32, hidden_size=HIDDEN, num_heads=2, mlp_ratio=2)
    vision.update(patch_size=tiny.PATCH_SIZE, spatial_merge_size=2, temporal_patch_size=2)
    vision.update(initializer_range=tiny.INIT_RANGE)
    config = Qwen2VLConfig(
        text_config=text.to_dict(),
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    unit = tiny.PATCH_SIZE * 2  # patch x merge
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=tiny.PATCH_SIZE,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=(2 * unit) ** 2,
        max_pixels=(3 * unit) ** 2,
    )
    # The processor insists on a video processor too (transformers' video processors
    # need torchvision); captioning never sends it a video.
    video_processor = Qwen2VLVideoProcessor(
        patch_size=tiny.PATCH_SIZE,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=(2 * unit) ** 2,
        max_pixels=(3 * unit) ** 2,
    )
    processor = Qwen2VLProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        video_processor=video_processor,
        chat_template=template,
    )
    return _save(Qwen2VLForConditionalGeneration, config, processor, tok, out)


def build_idefics3(out: Path) -> Path:
    """Idefics3 (SmolVLM's architecture): SigLIP-style tower, pixel shuffle, Llama LM."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        Idefics3VisionConfig,
    )

    specials = ("<fake_token_around_image>", IMAGE_PLACEHOLDER, "<global-img>")
    specials += ("<end_of_utterance>",)
    tok = _tokenizer(specials, IDEFICS3)
    scale = 2
    vision = Idefics3VisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=tiny.IMAGE_SIZE,
        patch_size=tiny.PATCH_SIZE,
        initializer_range=tiny.INIT_RANGE,
    )
    config = Idefics3Config(
        vision_config=vision.to_dict(),
        text_config=_text_config("LlamaConfig", tok).to_dict(),
        image_token_id=tok.convert_tokens_to_ids(IMAGE_PLACEHOLDER),
        scale_factor=scale,
        tie_word_embeddings=False,
    )
    seq_len = (tiny.IMAGE_SIZE // tiny.PATCH_SIZE) ** 2 // scale**2
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": tiny.IMAGE_SIZE},
        max_image_size={"longest_edge": tiny.IMAGE_SIZE},
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tok,
        image_seq_len=seq_len,
        chat_template=IDEFICS3,
    )
    return _save(Idefics3ForConditionalGeneration, config, processor, tok, out)


def build_llava_onevision(out: Path) -> Path:
    """LLaVA-OneVision: SigLIP tower, anyres_max tiling, Qwen2 LM with ChatML."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        SiglipVisionConfig,
    )

    specials = ("<|im_start|>", "<|im_end|>", IMAGE_PLACEHOLDER, "<video>")
    template = CHATML.replace("{{ IMAGE }}", IMAGE_PLACEHOLDER + "\n")
    tok = _tokenizer(specials, template)
    side = tiny.IMAGE_SIZE
    pinpoints = [[side, side], [side, 2 * side], [2 * side, side]]
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=side,
        patch_size=tiny.PATCH_SIZE,
        vision_use_head=False,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision.to_dict(),
        text_config=_text_config("Qwen2Config", tok).to_dict(),
        image_token_index=tok.convert_tokens_to_ids(IMAGE_PLACEHOLDER),
        video_token_index=tok.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=False,
    )
    sizes = dict(size={"height": side, "width": side}, image_grid_pinpoints=pinpoints)
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessorPil(**sizes),
        tokenizer=tok,
        video_processor=LlavaOnevisionVideoProcessor(size={"height": side, "width": side}),
        num_image_tokens=(side // tiny.PATCH_SIZE) ** 2,
        vision_feature_select_strategy="full",
        chat_template=template,
        vision_aspect_ratio="anyres_max_9",
    )
    return _save(LlavaOnevisionForConditionalGeneration, config, processor, tok, out)


def _build_lm(
    out: Path,
    config_cls: str,
    model_cls: str,
    template: str,
    specials: tuple[str, ...],
    eos: str | None = None,
) -> Path:
    import torch
    import transformers

    tok = _tokenizer(specials, template)
    if eos is not None:
        tok.eos_token = eos  # the chat turn's end token ends generation
    config = _text_config(config_cls, tok)
    torch.manual_seed(tiny.SEED)
    model = getattr(transformers, model_cls)(config).eval()
    tiny._set_generation_config(model, tok)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def build_qwen2(out: Path) -> Path:
    """Qwen2 / Qwen2.5 causal LM with a ChatML template."""
    template = CHATML.replace("{{ IMAGE }}", "")
    return _build_lm(
        out,
        "Qwen2Config",
        "Qwen2ForCausalLM",
        template,
        ("<|im_start|>", "<|im_end|>"),
        eos="<|im_end|>",
    )


def build_llama(out: Path) -> Path:
    """Llama 3 style causal LM (header/eot chat format)."""
    specials = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
    return _build_lm(out, "LlamaConfig", "LlamaForCausalLM", LLAMA3, specials, eos="<|eot_id|>")


VLM_FAMILIES: dict[str, Callable[[Path], Path]] = {
    "llava": tiny.build_tiny_vlm,
    "llava_next": build_llava_next,
    "qwen2_vl": build_qwen2_vl,
    "idefics3": build_idefics3,
    "llava_onevision": build_llava_onevision,
}
LM_FAMILIES: dict[str, Callable[[Path], Path]] = {
    "mistral": tiny.build_tiny_lm,
    "qwen2": build_qwen2,
    "llama": build_llama,
}


def build_family(name: str, out_dir: str | os.PathLike) -> Path:
    """Build family ``name`` (a key of VLM_FAMILIES or LM_FAMILIES) into ``out_dir``."""
    builders = {**VLM_FAMILIES, **LM_FAMILIES}
    if name not in builders:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(builders)}")
    return Path(builders[name](Path(out_dir)))
