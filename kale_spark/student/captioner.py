"""The student at inference: its ``ModelSpec`` (checkpoint path + content hash as the
lineage) and ``StudentCaptioner``, the stage-1 captioner with the alt-text prompt."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale_spark.models.captioner import Captioner
from kale_spark.models.spec import ModelSpec

if TYPE_CHECKING:
    from kale_spark.config import StudentConfig

__all__ = ["StudentCaptioner", "content_hash", "student_spec"]


def content_hash(path: str | os.PathLike) -> str:
    """sha256 over a saved model's files (names and bytes, sorted), provenance excluded.

    JSON files are hashed without their ``_name_or_path`` entries: transformers writes
    there the local folder each base model was loaded from, so the same weights built
    under another cache dir would otherwise get another revision and be regenerated.
    """
    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "provenance.json"):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        if f.suffix == ".json":
            h.update(_without_load_paths(f))
            continue
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def _without_load_paths(path: Path) -> bytes:
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "_name_or_path"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return path.read_bytes()
    return json.dumps(strip(data), sort_keys=True).encode()


def student_spec(scfg: StudentConfig, checkpoint: str, checkpoint_hash: str) -> ModelSpec:
    """The ModelSpec student-caption runs: ``student.caption`` with the checkpoint's
    path as the model id and its content hash as the revision, so both land in every
    stage-2 row's lineage."""
    return dataclasses.replace(scfg.caption, id=str(checkpoint), revision=checkpoint_hash)


class StudentCaptioner(Captioner):
    """The student at inference: image + alt-text in, caption out (``caption(images,
    alt_texts)``), batched with left padding, split on CUDA OOM, as the stage-1 VLM."""

    def __init__(self, model: Any, processor: Any, spec: ModelSpec) -> None:
        super().__init__(model, processor, spec)
        if not self.needs_alt_text:
            raise ValueError(f"the student's prompt {spec.prompt_id!r} takes no alt_text")

    def caption(self, images: Sequence[bytes], alt_texts: Sequence[str] | None = None):
        if alt_texts is None:
            raise ValueError("the student needs one alt-text per image")
        return super().caption(images, [a if isinstance(a, str) else "" for a in alt_texts])
