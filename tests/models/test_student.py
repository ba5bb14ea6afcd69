"""The stage-2 student with tiny base models, through the real training loop.

The tiny vision tower (CLIP) and LM (Qwen2 architecture) are built on the spot with
random weights and a tokenizer trained here, composed into a LLaVA model, saved, and
loaded back through the shared loader; training runs ``training.loop.train`` itself
(the function TorchDistributor starts in each process) on Parquet files of examples.
"""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import pytest

from kale_spark.config import load_config
from kale_spark.student import captioner as SC
from kale_spark.student import checkpoints
from kale_spark.student import encoding as SE
from kale_spark.student import model as S
from kale_spark.student.data import Example, write_snapshot
from kale_spark.student.loop import FINAL, PROVENANCE, TrainJob, evaluate, lr_at, train

CAPTIONS = [
    "A photo of a red double-decker bus driving down a busy street in London.",
    "A close-up of a golden retriever puppy lying on a green lawn in the sun.",
    "The Eiffel Tower in Paris at sunset, with people walking along the river Seine.",
    "A white ceramic mug of coffee on a wooden table next to an open notebook.",
]


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    rng = random.Random(seed)
    img = Image.new("RGB", (48, 40))
    img.putdata([(rng.randrange(256), rng.randrange(256), 90) for _ in range(48 * 40)])
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def _examples(n: int, prefix: str = "") -> list[Example]:
    return [
        Example(f"{prefix}{i:032x}"[-32:], _jpeg(i), f"alt text {i}", CAPTIONS[i % len(CAPTIONS)])
        for i in range(n)
    ]


def _cfg(*overrides: str):
    return load_config(
        None, ["student.train.batch_size=2", "student.train.lr=0.003", *overrides]
    ).student


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The composed, untrained tiny student (its own cache: tiny_model_dir holds only
    the stage-1 tiny models)."""
    cache = tmp_path_factory.mktemp("student-cache")
    return S.build_base(_cfg(), cache / "student-base", cache_dir=cache)


def _job(tmp: Path, base: Path, scfg, n_train: int = 2, n_val: int = 2) -> TrainJob:
    uri = (tmp / "snapshot").as_uri()
    write_snapshot(uri, {"train": _examples(n_train), "val": _examples(n_val)}, 4, key="test")
    return TrainJob(
        student=scfg,
        run_dir=str(tmp / "run"),
        base_dir=str(base),
        snapshot=uri,
        provenance={"source_table": "test"},
    )


def test_composed_student_is_llava_with_resized_positions(base_dir: Path):
    model, processor = S.load_student(base_dir)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    cfg = model.config
    # tiny tower: 32 px, 8 px patches (4x4); the profile asks for 40 px: 5x5 + class token
    assert cfg.vision_config.image_size == 40
    assert model.model.vision_tower.embeddings.position_embedding.weight.shape[0] == 26
    assert cfg.text_config.model_type == "qwen2"
    enc = SE.encode_examples(processor, [_jpeg(1)], ["a bus"], ["A red bus."])
    assert int((enc["input_ids"] == cfg.image_token_id).sum()) == 25
    out = model(**enc)
    assert out.logits.shape[1] == enc["input_ids"].shape[1]


def test_labels_count_only_the_caption(base_dir: Path):
    _, processor = S.load_student(base_dir)
    tok = processor.tokenizer
    captions = ["A red bus in London.", "A dog on the grass next to a tree."]
    enc = SE.encode_examples(processor, [_jpeg(1), _jpeg(2)], ["bus", "a dog"], captions)
    for i, caption in enumerate(captions):
        expected = tok(caption, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        labels = enc["labels"][i]
        assert [t for t in labels.tolist() if t != S.IGNORE_INDEX] == expected
        # the labelled positions are exactly the tail of the row's real tokens
        n_real = int(enc["attention_mask"][i].sum())
        assert enc["input_ids"][i, n_real - len(expected) : n_real].tolist() == expected
        assert (labels[: n_real - len(expected)] == S.IGNORE_INDEX).all()


@pytest.mark.parametrize(
    ("parts", "trains", "frozen"),
    [
        ("projector", ["multi_modal_projector"], ["language_model", "vision_tower", "lm_head"]),
        ("projector_lm", ["multi_modal_projector", "language_model", "lm_head"], ["vision_tower"]),
        ("lora", ["multi_modal_projector", "lora_A", "lora_B"], ["vision_tower", "lm_head"]),
    ],
)
def test_train_parts(base_dir: Path, parts: str, trains: list[str], frozen: list[str]):
    model, _ = S.load_student(base_dir)
    model = S.apply_train_parts(model, _cfg(f"student.model.train_parts={parts}").model)
    names = list(S.trainable_state(model))
    assert names
    for part in trains:
        assert any(part in n for n in names), (part, names[:5])
    for part in frozen:
        assert not any(part in n for n in names if "lora" not in part), part
    if parts == "lora":
        assert not any("language_model" in n and "lora" not in n for n in names)


def test_overfits_a_fixed_batch(base_dir: Path, tmp_path: Path):
    """The loss on one fixed batch of 2 falls below 30% of its start within 40 steps."""
    scfg = _cfg(
        "student.train.max_steps=40",
        "student.train.eval_interval=40",
        "student.train.checkpoint_interval=40",
    )
    losses: list[float] = []
    result = train(_job(tmp_path, base_dir, scfg), on_step=lambda s, loss: losses.append(loss))
    assert len(losses) == 40 and result["steps"] == 40
    assert min(losses[-5:]) < 0.3 * losses[0], losses


def test_resume_continues_step_count_and_loss(base_dir: Path, tmp_path: Path):
    """Interrupted after the step-3 checkpoint, a rerun continues at step 4 with the
    losses the uninterrupted run had."""
    scfg = _cfg(
        "student.train.max_steps=6",
        "student.train.eval_interval=3",
        "student.train.checkpoint_interval=3",
        "student.train.keep_checkpoints=5",
    )
    straight: list[tuple[int, float]] = []
    train(
        _job(tmp_path / "a", base_dir, scfg, n_train=6),
        on_step=lambda s, v: straight.append((s, v)),
    )

    job = _job(tmp_path / "b", base_dir, scfg, n_train=6)
    first: list[tuple[int, float]] = []

    def crash_at_5(step: int, loss: float) -> None:
        first.append((step, loss))
        if step == 5:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        train(job, on_step=crash_at_5)
    assert checkpoints.latest(job.checkpoint_root) == 3
    assert not (Path(job.run_dir) / FINAL).exists()

    second: list[tuple[int, float]] = []
    result = train(job, on_step=lambda s, v: second.append((s, v)))
    assert result["resumed_from"] == 3
    assert [s for s, _ in second] == [4, 5, 6]
    assert [s for s, _ in first] == [1, 2, 3, 4, 5]
    for (s, got), (s2, want) in zip(second, straight[3:], strict=True):
        assert s == s2 and got == pytest.approx(want, rel=1e-4, abs=1e-4)
    assert [p["step"] for p in result["history"]] == [0, 3, 6]
    # safetensors + JSON, nothing pickled
    ckpt = Path(job.checkpoint_root) / "step-000006"
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "optimizer.safetensors",
        "rng.safetensors",
        "state.json",
        "trainable.safetensors",
    ]
    provenance = json.loads((Path(job.run_dir) / FINAL / PROVENANCE).read_text())
    assert provenance["steps"] == 6 and provenance["source_table"] == "test"
    assert provenance["content_hash"] == result["content_hash"]


def test_student_captioner_from_the_final_checkpoint(base_dir: Path, tmp_path: Path):
    scfg = _cfg(
        "student.train.max_steps=2",
        "student.train.eval_interval=2",
        "student.train.checkpoint_interval=2",
    )
    result = train(_job(tmp_path, base_dir, scfg))
    final = result["final_dir"]
    assert SC.content_hash(final) == result["content_hash"]
    spec = SC.student_spec(scfg, final, result["content_hash"])
    captioner = SC.StudentCaptioner.from_spec(spec)
    out = captioner.caption([_jpeg(1), _jpeg(2)], ["a red bus", "a dog"])
    assert len(out) == 2 and all(g.new_tokens >= 1 for g in out)
    # batched equals one by one (left padding)
    assert captioner.caption([_jpeg(2)], ["a dog"])[0].text == out[1].text
    with pytest.raises(ValueError):
        captioner.caption([_jpeg(1)])


def test_caption_loss_equals_the_full_logits_loss(base_dir: Path):
    """The loss over caption positions only is the loss transformers computes from
    the logits of every position (image tokens included)."""
    import torch

    model, processor = S.load_student(base_dir)
    enc = SE.encode_examples(
        processor, [_jpeg(1), _jpeg(2)], ["bus", "a dog"], ["A red bus.", "A dog on the lawn."]
    )
    with torch.no_grad():
        full = model(**enc)
        ours = S.caption_loss(model, enc)
    assert full.logits.shape[1] == enc["input_ids"].shape[1]  # what caption_loss avoids
    assert float(ours) == pytest.approx(float(full.loss), rel=1e-5)


def test_learning_rate_warms_up_then_decays_by_cosine():
    s = _cfg(
        "student.train.lr=0.01", "student.train.warmup_steps=4", "student.train.max_steps=14"
    ).train
    lrs = [lr_at(step, s) for step in range(1, 15)]
    assert lrs[:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])
    # then cosine over the 10 remaining steps: 0.01 * (1 + cos(pi * k / 10)) / 2
    assert lrs[4] == pytest.approx(0.01)
    assert lrs[9] == pytest.approx(0.005)
    assert lrs[13] == pytest.approx(0.01 * (1 + math.cos(math.pi * 0.9)) / 2)
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    no_warmup = _cfg("student.train.lr=0.01", "student.train.max_steps=2").train
    assert [lr_at(1, no_warmup), lr_at(2, no_warmup)] == pytest.approx([0.01, 0.005])


def test_bf16_autocast_keeps_float32_master_weights(base_dir: Path, tmp_path: Path):
    """student.train.dtype bfloat16: the forward runs in bf16 (autocast), while the weights and
    AdamW's state stay float32, so an update at the paper's lr is not rounded away."""
    import torch

    scfg = _cfg(
        "student.train.dtype=bfloat16",
        "student.train.lr=0.00002",
        "student.train.max_steps=1",
        "student.train.eval_interval=1",
        "student.train.checkpoint_interval=1",
    )
    job = _job(tmp_path, base_dir, scfg)
    seen: list[torch.dtype] = []
    real = S.caption_loss

    def spy(model, batch):
        head = S._llava(model).lm_head
        hook = head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        try:
            return real(model, batch)
        finally:
            hook.remove()

    before, _ = S.load_student(base_dir)
    S.caption_loss = spy
    try:
        train(job)
    finally:
        S.caption_loss = real
    assert seen and set(seen) == {torch.bfloat16}
    ckpt = checkpoints.load(job.checkpoint_root, 1)
    assert {v.dtype for v in ckpt["weights"].values()} == {torch.float32}
    assert {v.dtype for v in ckpt["optimizer"]["state"][0].values() if v.dim()} == {torch.float32}
    old = dict(before.named_parameters())
    # the LM's layer weights (an embedding row moves only when its token occurs)
    lm = [n for n in ckpt["weights"] if "language_model.layers" in n and n.endswith("weight")]
    changed = [float((ckpt["weights"][n] != old[n]).float().mean()) for n in lm]
    # AdamW's first step moves every weight by about lr: kept in float32 ...
    assert min(changed) > 0.9, changed
    # ... while a bf16 copy of the same weights would have lost most of those updates
    lost = [float((ckpt["weights"][n].bfloat16() == old[n].bfloat16()).float().mean()) for n in lm]
    assert max(lost) > 0.5


def _append_to(out: list[float]):
    return lambda step, loss: out.append(loss)


def test_gradient_checkpointing_gives_the_same_steps(base_dir: Path, tmp_path: Path):
    model, _ = S.load_student(base_dir)
    S.enable_gradient_checkpointing(model)
    assert model.model.language_model.gradient_checkpointing
    assert model.model.language_model.layers[0].gradient_checkpointing
    losses = {}
    for flag in ("false", "true"):
        scfg = _cfg(
            f"student.train.gradient_checkpointing={flag}",
            "student.train.max_steps=3",
            "student.train.eval_interval=3",
            "student.train.checkpoint_interval=3",
        )
        losses[flag] = got = []
        train(_job(tmp_path / flag, base_dir, scfg, n_train=4), on_step=_append_to(got))
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-4)
    # with frozen embeddings (LoRA) too: non-reentrant checkpointing still trains
    scfg = _cfg(
        "student.model.train_parts=lora",
        "student.train.gradient_checkpointing=true",
        "student.train.max_steps=2",
    )
    job = _job(tmp_path / "lora", base_dir, scfg)
    train(job)
    weights = checkpoints.load(job.checkpoint_root, 2)["weights"]
    lora_b = [v for n, v in weights.items() if "lora_B" in n]
    assert lora_b and all(float(v.abs().sum()) > 0 for v in lora_b)  # zero at the start


COLORS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 30),
}


def _colour_jpeg(rgb: tuple[int, int, int], seed: int) -> bytes:
    from PIL import Image

    rng = random.Random(seed)
    img = Image.new("RGB", (48, 40))
    img.putdata([tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in rgb)] * (48 * 40))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def _colour_rows(n: int, seed: int, prefix: str) -> list[Example]:
    names = list(COLORS)
    return [
        Example(
            f"{prefix}{i:04d}",
            _colour_jpeg(COLORS[names[i % 4]], seed + i),
            "a photo",  # the alt-text says nothing about the colour: only the image does
            f"A photo of a {names[i % 4]} square on a plain background.",
        )
        for i in range(n)
    ]


def test_the_image_matters(base_dir: Path, tmp_path: Path):
    """Trained on captions that name the image's colour, the student's validation loss
    is lower with each row's own image than with the images moved to other rows."""
    scfg = _cfg(
        "student.train.max_steps=60",
        "student.train.batch_size=4",
        "student.train.lr=0.01",
        "student.train.warmup_steps=5",
        "student.train.eval_interval=60",
        "student.train.checkpoint_interval=60",
    )
    val = _colour_rows(8, 1000, "v")
    # each row gets the image of the next row: always another colour
    moved = [
        Example(e.uid, val[(i + 1) % 8].image, e.alt_text, e.caption) for i, e in enumerate(val)
    ]
    jobs = {}
    for name, rows in (("right", val), ("moved", moved)):
        uri = (tmp_path / name).as_uri()
        write_snapshot(uri, {"train": _colour_rows(32, 0, "t"), "val": rows}, 8, key=name)
        jobs[name] = TrainJob(scfg, str(tmp_path / "run"), str(base_dir), uri)
    result = train(jobs["right"])
    model, processor = S.load_student(result["final_dir"])
    loss = {name: evaluate(job, model, processor, "cpu") for name, job in jobs.items()}
    before = result["history"][0]["val_loss"]
    assert loss["right"] < before
    # the colour word is one of the caption's tokens: a wrong image costs it, a right one not
    assert loss["moved"] - loss["right"] > 0.1, loss
