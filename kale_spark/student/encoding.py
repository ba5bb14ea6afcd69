"""Training examples for the student: the prompt exactly as ``StudentCaptioner``
renders it, then the caption and EOS; labels are ``IGNORE_INDEX`` everywhere but the
caption's tokens and the EOS, so the loss counts only the caption."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kale_spark.models.captioner import Captioner, decode_image
from kale_spark.models.spec import ModelSpec
from kale_spark.student.model import IGNORE_INDEX

__all__ = ["encode_examples"]


def _prompt_captioner(processor: Any, prompt_id: str, max_input_tokens: int) -> Captioner:
    spec = ModelSpec(
        id="student", prompt_id=prompt_id, max_input_tokens=max_input_tokens, device="cpu"
    )
    return Captioner(None, processor, spec)


def encode_examples(
    processor: Any,
    images: Sequence[bytes],
    alt_texts: Sequence[str],
    captions: Sequence[str],
    *,
    prompt_id: str = "student_v1",
    max_input_tokens: int = 128,
    max_caption_tokens: int = 128,
) -> dict[str, Any]:
    """A training batch: ``input_ids``, ``attention_mask``, ``pixel_values``, ``labels``.

    Each row is the prompt (rendered as ``StudentCaptioner`` renders it at inference,
    image tokens expanded) followed by the caption's tokens and EOS, right-padded.
    ``labels`` repeat the caption's tokens and EOS; the prompt, image and padding
    positions are ``IGNORE_INDEX``, so the loss counts the caption only.
    """
    import torch

    tok = processor.tokenizer
    prompter = _prompt_captioner(processor, prompt_id, max_input_tokens)
    prompts = [prompter.prompt_text(a) for a in alt_texts]
    pil = [decode_image(data, i) for i, data in enumerate(images)]
    tok.padding_side = "left"
    enc = processor(images=pil, text=prompts, padding=True, return_tensors="pt")
    rows, labels = [], []
    for i, caption in enumerate(captions):
        prompt_ids = enc["input_ids"][i][enc["attention_mask"][i].bool()].tolist()
        target = tok(caption, add_special_tokens=False)["input_ids"][: max_caption_tokens - 1]
        target = target + [tok.eos_token_id]
        rows.append(prompt_ids + target)
        labels.append([IGNORE_INDEX] * len(prompt_ids) + target)
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    label_t = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, (r, lab) in enumerate(zip(rows, labels, strict=True)):
        input_ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
        label_t[i, : len(lab)] = torch.tensor(lab)
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "pixel_values": enc["pixel_values"],
        "labels": label_t,
    }
