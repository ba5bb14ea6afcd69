"""The stage-2 student: a LLaVA-style VLM composed from a vision tower and a causal LM.

    image ─ vision tower (CLIP ViT) ─ hidden states of `projector.vision_feature_layers`
          ─ projector (Linear → act → Linear) ─▶ one LM embedding per image patch
    prompt `student_v1` (with the alt-text) ─ LM ─▶ caption

transformers' ``LlavaForConditionalGeneration`` is the composition; the vision tower
and the LM come from the profile (the paper: apple/DFN5B-CLIP-ViT-H-14-378 with its
position embeddings resized for 490 px, and Qwen/Qwen2-1.5B). The local profile
builds tiny stand-ins on the spot (``tiny:student-vision``: CLIP, ``tiny:student-lm``:
Qwen2 architecture; random weights, tokenizer trained here), saved with
``save_pretrained`` and loaded back through the same code as hub models.

The composed model is saved once (``build_base``) and from then on loaded through
``models.loading.load_vlm`` (AutoModelForImageTextToText + AutoProcessor), like
every other VLM here: training starts from that copy, checkpoints hold only what
trains, and the final student is a plain saved LLaVA model that ``StudentCaptioner``
(student/captioner.py) loads; student/encoding.py builds its training batches.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale_spark.lake.files import atomic_dir
from kale_spark.models.spec import ModelSpec

if TYPE_CHECKING:
    from kale_spark.config import StudentConfig, StudentModelConfig

__all__ = [
    "IGNORE_INDEX",
    "STUDENT_CHAT_TEMPLATE",
    "TINY_STUDENT_IDS",
    "apply_train_parts",
    "build_base",
    "caption_loss",
    "compose_student",
    "enable_gradient_checkpointing",
    "load_student",
    "resize_vision_positions",
    "resolve_base_model",
    "trainable_state",
]

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
IMAGE_TOKEN = "<image>"
TINY_STUDENT_IDS = {
    "tiny:student-vision": "tiny-student-vision-v1",
    "tiny:student-lm": "tiny-student-lm-v2",
}
TINY_SEED = 4321
TINY_VISION_SIZE = 32
TINY_PATCH = 8

# LLaVA-1.5's conversation format; the student learns it from scratch, so it does not
# depend on the base LM's own chat template.
STUDENT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %} "
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


# ------------------------------------------------------------------- tiny base models


def _build_tiny_vision(out: Path) -> None:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    try:  # transformers 5: the PIL backend (the default class needs torchvision)
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # pragma: no cover - transformers 4.x
        from transformers import CLIPImageProcessor as ImageProcessor

    config = CLIPVisionConfig(
        image_size=TINY_VISION_SIZE,
        patch_size=TINY_PATCH,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=32,
    )
    torch.manual_seed(TINY_SEED)
    CLIPVisionModel(config).save_pretrained(out, safe_serialization=True)
    size = {"shortest_edge": TINY_VISION_SIZE}
    crop = {"height": TINY_VISION_SIZE, "width": TINY_VISION_SIZE}
    ImageProcessor(size=size, crop_size=crop).save_pretrained(out)


def _train_bytelevel_tokenizer():
    """Qwen2's kind of tokenizer (byte-level BPE) on the stage-1 tiny models' corpus."""
    from kale_spark.models.tiny import PAD, UNK, train_tokenizer

    eos = "<|endoftext|>"
    return train_tokenizer(
        [PAD, eos, UNK], byte_level=True, pad_token=PAD, eos_token=eos, unk_token=UNK
    )


def _build_tiny_lm(out: Path) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = _train_bytelevel_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(TINY_SEED)
    Qwen2ForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


_TINY_BUILDERS: dict[str, Callable[[Path], None]] = {
    "tiny:student-vision": _build_tiny_vision,
    "tiny:student-lm": _build_tiny_lm,
}


def _build_into(target: Path, builder: Callable[[Path], None]) -> Path:
    """Build into a temp dir beside ``target`` and rename it into place (a concurrent
    builder that loses the race uses the winner's copy)."""
    if (target / "config.json").is_file():
        return target
    with atomic_dir(target, keep_existing=True) as tmp:
        builder(tmp)
    return target


def resolve_base_model(model_id: str, cache_dir: str | os.PathLike | None = None) -> str:
    """A local directory for ``tiny:student-*`` (built on demand), else the id itself."""
    if model_id.startswith("tiny:"):
        from kale_spark.models.tiny import default_cache_dir

        if model_id not in TINY_STUDENT_IDS:
            raise ValueError(f"unknown tiny student model {model_id!r}; known: {TINY_STUDENT_IDS}")
        root = Path(cache_dir) if cache_dir else default_cache_dir()
        return str(_build_into(root / TINY_STUDENT_IDS[model_id], _TINY_BUILDERS[model_id]))
    return model_id


# --------------------------------------------------------------------------- composing


def _base_spec(path: str, revision: str | None) -> ModelSpec:
    # A spec for the shared loader: hub id or local path, pinned revision, safetensors.
    return ModelSpec(id=path, revision=revision, prompt_id="student_v1", device="cpu")


def _load_vision(path: str, revision: str | None) -> tuple[Any, Any]:
    """(vision-only model, image processor); a full CLIP checkpoint gives its vision half."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    from kale_spark.models.loading import _common_kwargs, _load_model

    spec = _base_spec(path, revision)
    config = AutoConfig.from_pretrained(path, **_common_kwargs(spec, path))
    model = _load_model(AutoModel, spec, path, "cpu")
    vision_config = getattr(config, "vision_config", None)
    if vision_config is not None:  # e.g. CLIPModel: keep its vision tower only
        model = model.vision_model
    processor = AutoImageProcessor.from_pretrained(path, **_common_kwargs(spec, path))
    return model, processor


def resize_vision_positions(vision: Any, image_size: int) -> bool:
    """Interpolate a CLIP-style tower's position embeddings for ``image_size`` pixels
    (bicubic over the patch grid; the class position is kept). False if unchanged."""
    import torch
    from torch import nn

    inner = getattr(vision, "vision_model", vision)  # transformers 4 nests it
    emb = inner.embeddings
    patch = emb.patch_size
    if image_size % patch:
        raise ValueError(f"image_size {image_size} is not a multiple of the patch size {patch}")
    old_grid, new_grid = emb.image_size // patch, image_size // patch
    if old_grid == new_grid:
        return False
    weight = emb.position_embedding.weight.data
    cls_pos, grid = weight[:1], weight[1:]
    dim = weight.shape[1]
    grid = grid.reshape(1, old_grid, old_grid, dim).permute(0, 3, 1, 2).float()
    grid = torch.nn.functional.interpolate(
        grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False
    )
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid * new_grid, dim).to(weight.dtype)
    emb.position_embedding = nn.Embedding(new_grid * new_grid + 1, dim)
    emb.position_embedding.weight.data.copy_(torch.cat([cls_pos, grid]))
    emb.image_size = image_size
    emb.num_patches = new_grid * new_grid
    emb.num_positions = emb.num_patches + 1
    emb.position_ids = torch.arange(emb.num_positions).expand((1, -1))
    vision.config.image_size = image_size
    log.info("vision positions resized: %dx%d → %dx%d patches", *(old_grid,) * 2, *(new_grid,) * 2)
    return True


def _feature_layer(scfg: StudentConfig) -> int | list[int]:
    layers = list(scfg.model.projector.vision_feature_layers)
    return layers[0] if len(layers) == 1 else layers


def compose_student(scfg: StudentConfig, cache_dir: str | os.PathLike | None = None):
    """``(model, processor)``: the base models of ``scfg`` joined by a fresh projector."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from kale_spark.models.loading import load_lm

    vision_path = resolve_base_model(scfg.model.vision_model, cache_dir)
    lm_path = resolve_base_model(scfg.model.language_model, cache_dir)
    vision, image_processor = _load_vision(vision_path, scfg.model.vision_revision)
    lm, tokenizer = load_lm(_base_spec(lm_path, scfg.model.language_revision), device="cpu")
    resize_vision_positions(vision, scfg.model.image_size)
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    patches = (scfg.model.image_size // vision.config.patch_size) ** 2
    full = scfg.model.projector.feature_select == "full"
    config = LlavaConfig(
        vision_config=vision.config.to_dict(),
        text_config=lm.config.to_dict(),
        image_token_id=image_token_id,
        projector_hidden_act=scfg.model.projector.hidden_act,
        multimodal_projector_bias=scfg.model.projector.bias,
        vision_feature_layer=_feature_layer(scfg),
        vision_feature_select_strategy=scfg.model.projector.feature_select,
        image_seq_length=patches + (1 if full else 0),
        tie_word_embeddings=False,
    )
    torch.manual_seed(scfg.train.seed)  # the projector's initial weights
    model = LlavaForConditionalGeneration(config)
    model.model.vision_tower.load_state_dict(vision.state_dict())
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    _set_image_size(image_processor, scfg.model.image_size)
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision.config.patch_size,
        vision_feature_select_strategy=scfg.model.projector.feature_select,
        chat_template=STUDENT_CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,  # CLIP's class token
    )
    return model.eval(), processor


def _set_image_size(image_processor: Any, size: int) -> None:
    image_processor.size = {"shortest_edge": size}
    image_processor.crop_size = {"height": size, "width": size}
    image_processor.do_center_crop = True


def build_base(scfg: StudentConfig, out_dir: str | os.PathLike, cache_dir=None) -> Path:
    """Compose the untrained student and save it (safetensors) + its processor, once."""

    def build(tmp: Path) -> None:
        model, processor = compose_student(scfg, cache_dir)
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)

    return _build_into(Path(out_dir), build)


def load_student(path: str | os.PathLike, dtype: str = "float32", device: str = "cpu"):
    """``(model, processor)`` of a saved student, through the shared VLM loader."""
    from kale_spark.models.loading import load_vlm

    spec = ModelSpec(id=str(path), prompt_id="student_v1", dtype=dtype, device=device)
    return load_vlm(spec, device=device)


# ---------------------------------------------------------------------------- training


def apply_train_parts(model: Any, scfg: StudentModelConfig) -> Any:
    """Freeze what ``scfg.train_parts`` does not train; LoRA wraps the LM with peft.

    projector     the projector only
    projector_lm  projector + language model + LM head (the vision tower stays frozen)
    lora          projector + LoRA adapters on the LM's ``lora_target_modules``
    """
    for p in model.parameters():
        p.requires_grad_(False)
    parts = scfg.train_parts
    if parts == "lora":
        from peft import LoraConfig, get_peft_model

        targets = "|".join(scfg.lora_target_modules)
        lora = LoraConfig(
            r=scfg.lora_r,
            lora_alpha=scfg.lora_alpha,
            lora_dropout=scfg.lora_dropout,
            target_modules=rf".*language_model.*\.({targets})",
            modules_to_save=["multi_modal_projector"],
        )
        model = get_peft_model(model, lora)
    else:
        train = [model.model.multi_modal_projector]
        if parts == "projector_lm":
            train += [model.model.language_model, model.lm_head]
        for module in train:
            for p in module.parameters():
                p.requires_grad_(True)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_all = sum(p.numel() for p in model.parameters())
    log.info("train_parts=%s: %d of %d parameters train", parts, n_train, n_all)
    return model


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute activations in the backward pass (``student.train.gradient_checkpointing``).
    Non-reentrant, so it works with DDP and with frozen embeddings (projector, lora)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x's name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # pragma: no cover - older transformers
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _llava(model: Any) -> Any:
    # peft wraps the LLaVA model; its LoRA layers live inside the wrapped modules.
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def caption_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean cross-entropy over the caption's tokens (labels not ``IGNORE_INDEX``).

    The LM head runs on the hidden states of the caption positions only: the logits of
    the prompt and of the image tokens (1,225 per image at 490 px with 14 px patches)
    are never made, so their memory is never spent. Equal to ``model(**batch).loss``.
    """
    import torch.nn.functional as F

    llava = _llava(model)
    out = llava.model(
        input_ids=batch["input_ids"],
        pixel_values=batch["pixel_values"],
        attention_mask=batch["attention_mask"],
        use_cache=False,
    )
    targets = batch["labels"][:, 1:]  # position t predicts token t + 1
    keep = targets != IGNORE_INDEX
    hidden = out.last_hidden_state[:, :-1][keep]
    logits = llava.lm_head(hidden)
    return F.cross_entropy(logits.float(), targets[keep])


def trainable_state(model: Any) -> dict[str, Any]:
    """The trainable parameters by name (what a checkpoint stores)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def exportable(model: Any) -> Any:
    """The plain LLaVA model to save: LoRA adapters merged in."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model
