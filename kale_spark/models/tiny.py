"""Tiny local stand-ins for the real models (no hub needed).

``tiny:vlm`` is a LLaVA-architecture model (tiny CLIP vision tower + tiny Llama);
``tiny:lm`` is a Mistral-architecture causal LM. Weights are random (fixed seed);
the tokenizer is a byte-level BPE trained here on a small built-in caption corpus.
Both are saved with ``save_pretrained`` (safetensors) and then loaded back through
``models.loading`` exactly like a hub model, so the offline default and the tests
exercise the real loading, processor and chat-template code paths.

The output is nonsense text, deterministic for a given input. Building takes a
few seconds; the result is cached under ``<cache_dir>/tiny-vlm-v1`` and
``<cache_dir>/tiny-lm-v1`` (written to a temp dir, then renamed into place).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kale_spark.lake.files import atomic_dir
from kale_spark.models.spec import TINY_REVISION

__all__ = [
    "IMAGE_SIZE",
    "TINY_DIRS",
    "build_bench_lm",
    "build_bench_vlm",
    "build_tiny_lm",
    "build_tiny_vlm",
    "default_cache_dir",
    "ensure_tiny_model",
]

log = logging.getLogger(__name__)

SEED = 1234
IMAGE_SIZE = 32
PATCH_SIZE = 8
VOCAB_SIZE = 640
# Wider than the usual 0.02 so a random network's output depends on its whole
# input (with 0.02 the last prompt tokens decide everything) and the top logits
# are well separated (greedy decoding is then robust to float reordering).
INIT_RANGE = 0.3
TINY_DIRS = {"tiny:vlm": "tiny-vlm-v1", "tiny:lm": "tiny-lm-v1"}

PAD, BOS, EOS, UNK, IMAGE = "<pad>", "<s>", "</s>", "<unk>", "<image>"

# Llava-1.5 style: "USER: <image>\n{text} ASSISTANT:"; content may be a string or
# a list of {"type": "image"} / {"type": "text", "text": ...} parts.
VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% else %}{{ message['role'] | upper }}: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}</s>{% endif %} "
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

# Mistral-Instruct style: "<s>[INST] {text} [/INST]".
LM_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}[INST] {{ message['content'] }} [/INST]"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}"
    "{% else %}{{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
)

_CORPUS = """\
A photo of a red double-decker bus driving down a busy street in London.
A close-up of a golden retriever puppy lying on a green lawn in the sun.
The Eiffel Tower in Paris at sunset, with people walking along the river Seine.
A white ceramic mug of coffee on a wooden table next to an open notebook.
A woman in a blue dress holding an umbrella on a rainy city sidewalk.
An aerial view of a small village surrounded by snowy mountains in the Alps.
A plate of spaghetti with tomato sauce, basil leaves and grated cheese.
A vintage Ford Mustang parked in front of a brick building in 1967.
Two children playing soccer on a sandy beach near the ocean waves.
The logo of Nike printed in black on a white running shoe.
A bowl of fresh fruit with apples, bananas, oranges and grapes.
A wooden cabin by a calm lake, reflected in the water at dawn.
A man riding a bicycle across the Golden Gate Bridge in San Francisco.
A stack of old books with worn leather covers on a library shelf.
A black cat sitting on a windowsill, looking out at the falling snow.
A modern kitchen with white cabinets, a steel fridge and a marble counter.
A poster for a jazz concert at Carnegie Hall in New York, March 2019.
A bright yellow taxi waiting at a crosswalk in Manhattan at night.
A field of purple lavender flowers in Provence under a clear blue sky.
A chocolate birthday cake with candles and the words Happy Birthday.
The image shows a large building with tall windows and a glass door.
In the foreground there is a wooden bench, and in the background trees.
The scene is lit by warm light, and the colors are soft and muted.
Sentence 1 is the alt-text and Sentence 2 is the dense caption.
Please merge and refine the information from the two given sentences.
Describe this image in detail. The picture depicts a quiet street.
Combine them into a new, detailed description of the image.
It keeps the real-world knowledge, such as names, places, brands and dates.
Product shot of a leather handbag, brown, 2021 collection, free shipping.
Stock photo: happy family having a picnic in the park on a summer day.
"""


def default_cache_dir() -> Path:
    """``$KALE_MODEL_CACHE`` or ``~/.cache/kale-spark/models``."""
    env = os.environ.get("KALE_MODEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "kale-spark" / "models"


def train_tokenizer(specials: Sequence[str], *, byte_level: bool = False, **tokens: str):
    """A BPE tokenizer trained on the built-in corpus: the one trainer of the tiny models.

    Llama-style (Metaspace) by default, with printable ASCII as its alphabet, so
    generated text is printable (other characters map to ``<unk>``); ``byte_level``:
    Qwen2's kind, so the Qwen2 tokenizer class transformers picks keeps its spaces.
    ``tokens``: the special-token settings of the transformers tokenizer.
    """
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    if byte_level:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
        alphabet = sorted(set(string.printable) - set(string.whitespace)) + ["\u2581"]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(specials),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    # Tokens passed to the trainer as special_tokens are registered as special in
    # the tokenizer itself (so decode(skip_special_tokens=True) drops <image> too).
    return PreTrainedTokenizerFast(tokenizer_object=tok, **tokens)


def llama_tokenizer(extra_special: tuple[str, ...] = ()):
    """The stage-1 tiny models' tokenizer: Metaspace BPE, left padding, Llama's specials."""
    return train_tokenizer(
        [PAD, BOS, EOS, UNK, *extra_special],
        padding_side="left",
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
    )


def _llama_text_config(vocab_size: int, tok, shape: _VlmShape):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape.text_hidden,
        intermediate_size=2 * shape.text_hidden,
        num_hidden_layers=shape.text_layers,
        num_attention_heads=shape.text_heads,
        num_key_value_heads=max(1, shape.text_heads // 2),
        max_position_embeddings=512,
        initializer_range=shape.init_range,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )


def _set_generation_config(model, tok) -> None:
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id


def build_tiny_vlm(out_dir: str | os.PathLike) -> Path:
    """Build the tiny LLaVA model + processor and save them to ``out_dir``."""
    return _build_vlm(out_dir, _TINY_VLM)


@dataclass(frozen=True)
class _VlmShape:
    image_size: int
    patch_size: int
    vision_hidden: int
    vision_layers: int
    text_hidden: int
    text_layers: int
    text_heads: int
    init_range: float = INIT_RANGE


_TINY_VLM = _VlmShape(IMAGE_SIZE, PATCH_SIZE, 32, 2, 64, 2, 4)
# The benchmarks' model (bench/caption_throughput.py): LLaVA-shaped, big enough that
# the model, not the glue, dominates a CPU run (~50+ ms of model time per image at
# 32 new tokens on 2 cores), small enough to build in seconds. 224 px, 7x7 patches.
BENCH_VLM = _VlmShape(224, 32, 384, 6, 512, 6, 8, init_range=0.05)
# A fast model for the same bench: the same 224 px input and LLaVA shape, far fewer
# weights, so the per-image work around the model (decode, preprocessing, Spark) is a
# large share of the time: the harshest case for kale over a plain loop.
BENCH_FAST_VLM = _VlmShape(224, 32, 128, 2, 128, 2, 4, init_range=0.05)


def build_bench_vlm(out_dir: str | os.PathLike) -> Path:
    """Build the bench-sized LLaVA model + processor (random weights) into ``out_dir``."""
    return _build_vlm(out_dir, BENCH_VLM)


def build_bench_fast_vlm(out_dir: str | os.PathLike) -> Path:
    """Build the fast bench LLaVA model (BENCH_FAST_VLM, random weights) into ``out_dir``."""
    return _build_vlm(out_dir, BENCH_FAST_VLM)


def build_bench_lm(out_dir: str | os.PathLike) -> Path:
    """Build the bench-sized Mistral-architecture LM (random weights) into ``out_dir``."""
    return _build_lm(out_dir, hidden=512, layers=6, heads=8, init_range=0.05)


def _build_vlm(out_dir: str | os.PathLike, shape: _VlmShape) -> Path:
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    out = Path(out_dir)
    tok = llama_tokenizer(extra_special=(IMAGE,))
    tok.chat_template = VLM_CHAT_TEMPLATE
    image_token_id = tok.convert_tokens_to_ids(IMAGE)
    vision = CLIPVisionConfig(
        image_size=shape.image_size,
        patch_size=shape.patch_size,
        hidden_size=shape.vision_hidden,
        intermediate_size=2 * shape.vision_hidden,
        num_hidden_layers=shape.vision_layers,
        num_attention_heads=max(2, shape.vision_hidden // 64),
        projection_dim=shape.vision_hidden,
        initializer_range=shape.init_range,
    )
    n_image_tokens = (shape.image_size // shape.patch_size) ** 2
    config = LlavaConfig(
        vision_config=vision,
        text_config=_llama_text_config(len(tok), tok, shape),
        image_token_id=image_token_id,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        image_seq_length=n_image_tokens,
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    model = LlavaForConditionalGeneration(config).eval()
    _set_generation_config(model, tok)
    try:  # transformers 5: the PIL backend (the default class needs torchvision)
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # transformers 4.x: CLIPImageProcessor is the PIL one
        from transformers import CLIPImageProcessor as ImageProcessor
    image_processor = ImageProcessor(
        size={"shortest_edge": shape.image_size},
        crop_size={"height": shape.image_size, "width": shape.image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=shape.patch_size,
        vision_feature_select_strategy="default",
        chat_template=VLM_CHAT_TEMPLATE,
        image_token=IMAGE,
        num_additional_image_tokens=1,  # the CLIP class token
    )
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def build_tiny_lm(out_dir: str | os.PathLike) -> Path:
    """Build the tiny Mistral-architecture causal LM + tokenizer and save them."""
    return _build_lm(out_dir, hidden=64, layers=2, heads=4, init_range=INIT_RANGE)


def _build_lm(
    out_dir: str | os.PathLike, *, hidden: int, layers: int, heads: int, init_range: float
) -> Path:
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    out = Path(out_dir)
    tok = llama_tokenizer()
    tok.chat_template = LM_CHAT_TEMPLATE
    config = MistralConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=1024,
        sliding_window=None,
        initializer_range=init_range,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    model = MistralForCausalLM(config).eval()
    _set_generation_config(model, tok)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


_BUILDERS = {"tiny:vlm": build_tiny_vlm, "tiny:lm": build_tiny_lm}


def ensure_tiny_model(model_id: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local directory of tiny model ``model_id``, built first if missing.

    Safe against concurrent builders (several Spark Python workers): each builds in
    its own temp dir next to the target and renames it into place; a loser of the
    race discards its copy and uses the winner's.
    """
    if model_id not in _BUILDERS:
        raise ValueError(f"unknown tiny model {model_id!r}; known: {', '.join(_BUILDERS)}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / TINY_DIRS[model_id]
    if (target / "config.json").is_file():
        return target
    with atomic_dir(target, keep_existing=True) as tmp:
        log.info("building %s (%s) into %s", model_id, TINY_REVISION, target)
        _BUILDERS[model_id](tmp)
    return target
