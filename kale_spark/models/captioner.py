"""Dense captions from a VLM: image bytes in, ``Generated`` out.

The prompt (``spec.prompt_id``, e.g. ``dense_v1``) goes through the processor's
chat template with one image part, so any chat VLM with a transformers processor
(LLaVA, Qwen2-VL, ...) and the tiny local model run the same code. A prompt with
an ``alt_text`` slot (the Stage 2 student prompt) takes one alt-text per image.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kale_spark.models.batching import Generated, generate_and_decode, run_with_oom_split
from kale_spark.models.fusion import count_tokens, normalize_space, truncate_tokens
from kale_spark.models.spec import ModelSpec
from kale_spark.prompts import get_prompt

__all__ = ["Captioner", "Prepared", "decode_image"]


def decode_image(data: bytes, index: int = 0, min_side: int | None = None) -> Any:
    """JPEG/PNG/... bytes → RGB ``PIL.Image``; ``ValueError`` naming the item otherwise.

    With ``min_side`` a JPEG is decoded straight at the smallest DCT scale (1/2, 1/4,
    1/8) that keeps both sides >= ``min_side`` (Pillow's ``draft``): a 2000 px photo
    for a 224 px model decodes at 1/4 size, about twice as fast, and the processor's
    resize then starts from a smaller image. No side ever drops below ``min_side``,
    so the model still sees a downscale, never an upscale.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            if min_side and img.format == "JPEG":
                img.draft("RGB", (min_side, min_side))
            return img.convert("RGB")
    except Exception as exc:
        raise ValueError(f"image {index}: cannot decode ({type(exc).__name__}: {exc})") from exc


def model_input_side(processor: Any) -> int | None:
    """The largest side a fixed-size image processor resizes or crops to (CLIP and
    SigLIP towers: 224, 336, 490 ...), or None when the size depends on the image
    (dynamic resolution, tiling): then images are decoded at full size."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None or any(
        getattr(image_processor, attr, None) for attr in ("max_pixels", "image_grid_pinpoints")
    ):
        return None
    sides = []
    for attr in ("size", "crop_size"):
        value = getattr(image_processor, attr, None)
        value = value if isinstance(value, dict) else getattr(value, "__dict__", {})
        sides += [v for k, v in value.items() if k in ("shortest_edge", "height", "width") and v]
    return max(sides) if sides else None


@dataclass
class Prepared:
    """A batch made ready for ``generate`` (decoded, preprocessed): the CPU half.

    ``inputs`` holds the processor's tensors for the rows at ``rows`` (positions in
    the batch); ``errors`` maps the positions that could not be prepared (an image
    that does not decode) to their exception.
    """

    size: int
    inputs: dict[str, Any] | None
    rows: list[int]
    errors: dict[int, BaseException] = field(default_factory=dict)
    items: list[Any] = field(default_factory=list)  # what was prepared, for a retry


class Captioner:
    """Captions images with a VLM; build with ``Captioner.from_spec`` to reuse a loaded model."""

    def __init__(self, model: Any, processor: Any, spec: ModelSpec) -> None:
        self.model = model
        self.processor = processor
        self.spec = spec
        self.template = get_prompt(spec.prompt_id)
        if self.template.kind != "vlm":
            raise ValueError(f"prompt {spec.prompt_id!r} is a {self.template.kind} prompt, not vlm")
        unknown = set(self.template.slots) - {"alt_text"}
        if unknown:
            raise ValueError(
                f"prompt {spec.prompt_id!r} has slots {sorted(unknown)} a captioner cannot fill"
            )
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        image_token = getattr(processor, "image_token", None)
        self._suppress: tuple[int, ...] = ()
        if image_token is not None:
            image_token_id = self.tokenizer.convert_tokens_to_ids(image_token)
            if image_token_id is not None and image_token_id != self.tokenizer.unk_token_id:
                self._suppress = (image_token_id,)
        self._image_extra: int | None = None
        self.decode_side = model_input_side(processor)

    @classmethod
    def from_spec(
        cls,
        spec: ModelSpec,
        *,
        device: str | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> Captioner:
        """A captioner over the model for ``spec``, loaded once per Python worker."""
        from kale_spark.models.batching import compiled, pick_device
        from kale_spark.models.cache import get_or_load
        from kale_spark.models.loading import load_vlm, model_cache_key

        device = device or pick_device(spec)
        key = model_cache_key("vlm", spec, device, cache_dir) + ("|compile" if spec.compile else "")
        model, processor = get_or_load(
            key, lambda: compiled(load_vlm(spec, device, cache_dir), spec)
        )
        return cls(model, processor, spec)

    @property
    def needs_alt_text(self) -> bool:
        return "alt_text" in self.template.slots

    def prompt_text(self, alt_text: str | None = None) -> str:
        """The chat-templated prompt for one image (before image-token expansion).

        With an ``alt_text`` slot, the alt-text is whitespace-normalised and cut so
        the prompt's *text* tokens fit ``spec.max_input_tokens`` (the image tokens
        are not counted: their number is fixed by the model).
        """
        if not self.needs_alt_text:
            return self._templated({})
        empty = count_tokens(self._templated({"alt_text": ""}), self.tokenizer)
        budget = max(0, self.spec.max_input_tokens - empty)
        alt = truncate_tokens(normalize_space(alt_text), self.tokenizer, budget)
        return self._templated({"alt_text": alt})

    def _templated(self, slots: dict[str, str]) -> str:
        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "image"},
                    {"type": "text", "text": self.template.render(**slots)},
                ],
            }
        ]
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )

    def caption(
        self, images: Sequence[bytes], alt_texts: Sequence[str] | None = None
    ) -> list[Generated]:
        """One ``Generated`` per image, in order; batches of ``spec.batch_size``, split on OOM."""
        if self.needs_alt_text:
            if alt_texts is None or len(alt_texts) != len(images):
                raise ValueError(f"prompt {self.spec.prompt_id!r} needs one alt_text per image")
        elif alt_texts is not None:
            raise ValueError(f"prompt {self.spec.prompt_id!r} takes no alt_text")
        items = list(
            zip(range(len(images)), images, alt_texts or [None] * len(images), strict=True)
        )
        return run_with_oom_split(self._caption_batch, items, self.spec.batch_size)

    def _caption_batch(self, items: list[tuple[int, bytes, str | None]]) -> list[Generated]:
        pil_images = self._decode(items)
        prompts = [self.prompt_text(alt) for _, _, alt in items]
        inputs = self.processor(images=pil_images, text=prompts, padding=True, return_tensors="pt")
        return self._generate(dict(inputs))

    def _decode(self, items: Sequence[tuple[int, bytes, Any]]) -> list[Any]:
        """(index, image bytes, ...) items -> RGB images at the model's decode side."""
        return [decode_image(data, index, self.decode_side) for index, data, _ in items]

    def _generate(self, inputs: dict[str, Any]) -> list[Generated]:
        return generate_and_decode(
            self.model,
            self.tokenizer,
            inputs,
            self.spec.generation,
            suppress_token_ids=self._suppress,
            cache_implementation=self.spec.cache_implementation,
        )

    # --- the two halves of a batch, for a pipeline that overlaps them --------------

    def prompt_tokens(self, prompt: str) -> int:
        """Tokens ``prompt`` takes once its image placeholder is expanded (an estimate
        for models whose image token count depends on the image)."""
        if self._image_extra is None:
            from PIL import Image

            probe = self.processor(
                images=[Image.new("RGB", (64, 64))], text=[prompt], return_tensors="pt"
            )
            self._image_extra = int(probe["input_ids"].shape[1]) - count_tokens(
                prompt, self.tokenizer
            )
        return count_tokens(prompt, self.tokenizer) + self._image_extra

    def prepare(self, images: Sequence[bytes], prompts: Sequence[str]) -> Prepared:
        """Decode and preprocess a batch; an image that does not decode is an error
        of its row only (the other rows still go to the model)."""
        pil_images, rows, errors = [], [], {}
        for i, data in enumerate(images):
            try:
                pil_images.append(decode_image(data, i, self.decode_side))
                rows.append(i)
            except ValueError as exc:
                errors[i] = exc
        items = list(zip(images, prompts, strict=True))
        if not rows:
            return Prepared(len(images), None, rows, errors, items)
        inputs = self.processor(
            images=pil_images, text=[prompts[i] for i in rows], padding=True, return_tensors="pt"
        )
        return Prepared(len(images), dict(inputs), rows, errors, items)

    def run(self, prepared: Prepared) -> list[Generated | BaseException]:
        """``generate`` on a prepared batch: one result (or exception) per row, in order.

        On an out-of-memory error the rows are redone in halves (``run_with_oom_split``).
        """
        from kale_spark.models.batching import is_oom_error

        out: list[Generated | BaseException] = [None] * prepared.size  # type: ignore[list-item]
        for i, exc in prepared.errors.items():
            out[i] = exc
        if not prepared.rows:
            return out
        try:
            results = self._generate(prepared.inputs or {})
        except Exception as exc:
            if not is_oom_error(exc) or len(prepared.rows) == 1:
                raise
            items = [(i, *prepared.items[i]) for i in prepared.rows]
            results = run_with_oom_split(
                self._prompted_batch, items, max(1, len(prepared.rows) // 2)
            )
        for i, result in zip(prepared.rows, results, strict=True):
            out[i] = result
        return out

    def _prompted_batch(self, items: list[tuple[int, bytes, str]]) -> list[Generated]:
        pil_images = self._decode(items)
        inputs = self.processor(
            images=pil_images, text=[p for _, _, p in items], padding=True, return_tensors="pt"
        )
        return self._generate(dict(inputs))
