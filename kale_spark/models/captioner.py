"""Dense captions from a VLM: image bytes in, ``Generated`` out.

The prompt (``spec.prompt_id``, e.g. ``dense_v1``) goes through the processor's
chat template with one image part, so any chat VLM with a transformers processor
(LLaVA, Qwen2-VL, ...) and the tiny local model run the same code. A prompt with
an ``alt_text`` slot (the Stage 2 student prompt) takes one alt-text per image.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kale_spark.models.batching import (
    Generated,
    PrepareError,
    generate_and_decode,
    run_with_oom_split,
)
from kale_spark.models.fusion import count_tokens, normalize_space, truncate_tokens
from kale_spark.models.loading import LoadedFromSpec
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


SIZE_CACHE = 4096  # image sizes whose token count a captioner remembers
PROBE_SIZES = ((448, 448), (896, 448), (448, 1344))


def _image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header (no decode); None when unreadable (its
    row then fails in ``prepare``)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:
        return None


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


class Captioner(LoadedFromSpec):
    """Captions images with a VLM; build with ``Captioner.from_spec`` to reuse a loaded model."""

    LOAD_KIND = "vlm"

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
        # Image tokens beyond the placeholder, by image size (None: any size).
        self._image_extra: dict[tuple[int, int] | None, int] | None = None
        # A tower whose token count is the same for every image size resizes to a
        # fixed side (CLIP, SigLIP): its JPEGs may be decoded at a reduced DCT scale.
        self.fixed_size = self._tokens_fixed()
        self.decode_side = model_input_side(processor) if self.fixed_size else None

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
        return self.generate(dict(inputs))

    def _decode(self, items: Sequence[tuple[int, bytes, Any]]) -> list[Any]:
        """(index, image bytes, ...) items -> RGB images at the model's decode side."""
        return [decode_image(data, index, self.decode_side) for index, data, _ in items]

    def generate(self, inputs: dict[str, Any]) -> list[Generated]:
        """``generate`` + decode on a processed batch: one ``Generated`` per row."""
        return generate_and_decode(
            self.model,
            self.tokenizer,
            inputs,
            self.spec.generation,
            suppress_token_ids=self._suppress,
            cache_implementation=self.spec.cache_implementation,
        )

    # --- the two halves of a batch, for a pipeline that overlaps them --------------

    def prompt_tokens(self, prompt: str, image: bytes | None = None) -> int:
        """Tokens ``prompt`` takes once its image placeholder is expanded for ``image``,
        counted by the model's own processor: once for a fixed-size tower, per image
        size for a dynamic-resolution one (Qwen2-VL: ~300 at 490 px, not the 4 of a
        64 px probe). ``PrepareError`` when the processor refuses the image's size."""
        size = None if self.fixed_size or image is None else _image_size(image)
        extra = self._image_extra.get(size) if self._image_extra else None
        if extra is None:
            extra = self._probe_extra(prompt, size)
        return count_tokens(prompt, self.tokenizer) + extra

    def _tokens_fixed(self) -> bool:
        """Whether the processor gives every image size the same number of tokens
        (asked of the processor itself, with three shapes)."""
        prompt = self._templated({"alt_text": ""} if self.needs_alt_text else {})
        try:
            counts = {self._probe_extra(prompt, size) for size in PROBE_SIZES}
        except PrepareError:
            return False
        finally:
            self._image_extra = None
        return len(counts) == 1

    def _probe_extra(self, prompt: str, size: tuple[int, int] | None) -> int:
        from PIL import Image

        probe_image = Image.new("RGB", size or PROBE_SIZES[0])
        try:
            probe = self.processor(images=[probe_image], text=[prompt], return_tensors="pt")
        except Exception as exc:
            raise PrepareError(f"the processor refuses a {size} image: {exc}") from exc
        extra = int(probe["input_ids"].shape[1]) - count_tokens(prompt, self.tokenizer)
        if self._image_extra is None or len(self._image_extra) >= SIZE_CACHE:
            self._image_extra = {}
        self._image_extra[size] = extra
        return extra

    def prepare(self, images: Sequence[bytes], prompts: Sequence[str]) -> Prepared:
        """Decode and preprocess a batch. An image that does not decode, or that the
        processor refuses, is an error of its row only (``PrepareError``): the other
        rows still go to the model."""
        pil_images, rows, errors = [], [], {}
        for i, data in enumerate(images):
            try:
                pil_images.append(decode_image(data, i, self.decode_side))
                rows.append(i)
            except ValueError as exc:
                errors[i] = PrepareError(str(exc))
        items = list(zip(images, prompts, strict=True))
        if not rows:
            return Prepared(len(images), None, rows, errors, items)
        try:
            inputs = self._process(pil_images, [prompts[i] for i in rows])
        except Exception:
            # One row refused (e.g. an aspect ratio the processor rejects): find it,
            # then process the rest together.
            kept = []
            for i, img in zip(rows, pil_images, strict=True):
                try:
                    self._process([img], [prompts[i]])
                    kept.append((i, img))
                except Exception as exc:
                    errors[i] = PrepareError(f"image {i}: the processor refused it: {exc}")
            rows = [i for i, _ in kept]
            if not rows:
                return Prepared(len(images), None, rows, errors, items)
            inputs = self._process([img for _, img in kept], [prompts[i] for i in rows])
        return Prepared(len(images), inputs, rows, errors, items)

    def _process(self, images: list[Any], prompts: list[str]) -> dict[str, Any]:
        return dict(self.processor(images=images, text=prompts, padding=True, return_tensors="pt"))

    def run(self, prepared: Prepared) -> list[Generated | BaseException]:
        """``generate`` on a prepared batch: one result (or exception) per row, in order.

        On an out-of-memory error the rows are redone in halves (``run_with_oom_split``).
        """
        out: list[Generated | BaseException] = [None] * prepared.size  # type: ignore[list-item]
        for i, exc in prepared.errors.items():
            out[i] = exc
        if not prepared.rows:
            return out
        items = [(i, *prepared.items[i]) for i in prepared.rows]
        results = run_with_oom_split(
            self._prompted_batch,
            items,
            len(items),
            first=lambda: self.generate(prepared.inputs or {}),
        )
        for i, result in zip(prepared.rows, results, strict=True):
            out[i] = result
        return out

    def _prompted_batch(self, items: list[tuple[int, bytes, str]]) -> list[Generated]:
        pil_images = self._decode(items)
        inputs = self.processor(
            images=pil_images, text=[p for _, _, p in items], padding=True, return_tensors="pt"
        )
        return self.generate(dict(inputs))
