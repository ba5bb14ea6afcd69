"""The pure parts of udf.py: torch thread budget, and per-row failure isolation in the
batch functions (fake models, no Spark, no torch)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from kale_spark import schema
from kale_spark.models.batching import Generated
from kale_spark.models.inference import CaptionEngine, FuseEngine, results_in_order
from kale_spark.models.spec import ModelSpec
from kale_spark.spark.udf import RESULT_COLUMNS, auto_torch_threads


def caption_batch(captioner, images: pd.Series) -> pd.DataFrame:
    """A batch of a SQL function's images through the stages' engine, rows in order."""
    return results_in_order(
        CaptionEngine(captioner), pd.DataFrame({"image": images}), captioner.spec
    )


def fuse_batch(rewriter, alt_texts: pd.Series, dense: pd.Series) -> pd.DataFrame:
    frame = pd.DataFrame({"alt_text": alt_texts, "dense_caption": dense})
    return results_in_order(FuseEngine(rewriter), frame, rewriter.spec)


@pytest.mark.parametrize(
    ("master", "conf", "expected"),
    [
        ("local[2]", {}, 1),
        ("local[8]", {"spark.task.cpus": "4"}, 4),
        ("local", {}, 1),
        ("local-cluster[2, 4, 1024]", {"spark.task.cpus": "2"}, 2),
        ("yarn", {"spark.executor.cores": "8", "spark.task.cpus": "8"}, 8),
        ("yarn", {"spark.executor.cores": "8", "spark.task.cpus": "3"}, 4),  # 2 tasks x 4
        ("yarn", {"spark.task.cpus": "2"}, 2),  # executor cores unknown
        ("spark://host:7077", {"spark.executor.cores": "16"}, 1),
    ],
)
def test_auto_torch_threads(master, conf, expected) -> None:
    threads = auto_torch_threads(master, conf)
    assert threads == expected
    cores = int(conf.get("spark.executor.cores", 0)) or None
    if cores:
        tasks = cores // int(conf.get("spark.task.cpus", 1))
        assert tasks * threads <= cores


class FakeCaptioner:
    """Captions b"ok..." bytes, raises on anything else; returns "" for b"ok-empty".

    The model interface the engine drives (prompt, prepare, run), as Captioner has it."""

    needs_alt_text = False
    spec = ModelSpec(id="fake", prompt_id="dense_v1", batch_size=8)

    def __init__(self) -> None:
        self.calls: list[int] = []

    def prompt_text(self, alt_text: str | None = None) -> str:
        return "describe"

    def prompt_tokens(self, prompt: str, image: bytes | None = None) -> int:
        return 5

    def prepare(self, images: list[bytes], prompts: list[str]) -> SimpleNamespace:
        return SimpleNamespace(items=list(zip(images, prompts, strict=True)), size=len(images))

    def run(self, prepared: SimpleNamespace) -> list[Generated]:
        self.calls.append(prepared.size)
        out = []
        for data, _ in prepared.items:
            if not data.startswith(b"ok"):
                raise ValueError(f"cannot decode {data[:8]!r}")
            text = "" if data == b"ok-empty" else f"  caption of {data.decode()} "
            out.append(Generated(text=text, prompt_tokens=5, new_tokens=3))
        return out


def test_caption_batch_isolates_the_failing_rows() -> None:
    model = FakeCaptioner()
    images = pd.Series([b"ok-1", b"broken", None, b"ok-empty", b"ok-2"])
    frame = caption_batch(model, images)
    assert list(frame.columns) == RESULT_COLUMNS
    assert frame["text"].tolist() == ["caption of ok-1", None, None, None, "caption of ok-2"]
    assert frame["reason"].tolist() == [
        None,
        schema.REASON_GENERATION_ERROR,
        schema.REASON_MISSING_INPUT,
        schema.REASON_EMPTY_OUTPUT,
        None,
    ]
    assert "ValueError: cannot decode" in frame["error"][1]
    assert frame["prompt_tokens"].tolist() == [5, pd.NA, pd.NA, pd.NA, 5]
    # One call for the batch (4 images with bytes), then one per row after it raised.
    assert model.calls == [4, 1, 1, 1, 1]


def test_caption_batch_calls_the_model_once_when_nothing_fails() -> None:
    model = FakeCaptioner()
    frame = caption_batch(model, pd.Series([b"ok-1", b"ok-2", b"ok-3"]))
    assert frame["reason"].isna().all()
    assert model.calls == [3]


class FakeRewriter:
    """Echoes each prompt in CapsFusion's answer format; the model interface the engine
    drives (prompt, token ids, pad, run), as FusionRewriter has it."""

    spec = ModelSpec(id="fake", prompt_id="fuse_capsfusion_v1", batch_size=8)

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def build_prompt(self, alt_text: str, dense_caption: str) -> str:
        return f"{alt_text} / {dense_caption}"

    def token_ids(self, prompts: list[str]) -> list[list[int]]:
        self.prompts.extend(prompts)
        return [[len(self.prompts) - len(prompts) + i] for i in range(len(prompts))]

    def pad(self, ids: list[list[int]]) -> list[list[int]]:
        return ids

    def run(self, ids: list[list[int]], inputs: object = None) -> list[Generated]:
        return [
            Generated(text=f'Sentence 3: "{self.prompts[i]}"', prompt_tokens=9, new_tokens=4)
            for (i,) in ids
        ]


def test_fuse_batch_postprocesses_and_flags_missing_captions() -> None:
    frame = fuse_batch(
        FakeRewriter(),
        pd.Series(["Eiffel Tower, 1999", None, "x"]),
        pd.Series(["a tall tower", "a dog", " "]),
    )
    assert frame["text"].tolist() == ["Eiffel Tower, 1999 / a tall tower", "/ a dog", None]
    assert frame["reason"].tolist() == [None, None, schema.REASON_MISSING_INPUT]
