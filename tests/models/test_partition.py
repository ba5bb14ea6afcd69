"""udf.model_partition_fn on the tiny models (CPU, offline): what mapInPandas runs.

Outputs are checked against the models' plain batch calls (Captioner.caption,
FusionRewriter.fuse) on the same rows: rebatching, token budgets, sorting and the
prefetch thread must not change a single token of greedy decoding.
"""

from __future__ import annotations

import pandas as pd
import pytest

from kale_spark import schema
from kale_spark.models.captioner import Captioner
from kale_spark.models.fusion import FusionRewriter, postprocess
from kale_spark.models.spec import GenerationParams, ModelSpec
from kale_spark.spark.udf import RESULT_COLUMNS, UdfContext, model_partition_fn, read_batch_log

ALTS = ["Eiffel Tower, Paris, 2019", "cat", None, "Nike Air running shoe white " * 6, "x"]
DENSE = [
    "The image shows a tall iron tower at sunset with people walking by the river.",
    "A black cat sitting on a windowsill.",
    "A dog.",
    "A white shoe with a black logo on a wooden table. " * 3,
    "   ",
]


def _run(ctx: UdfContext, kind: str, frames: list[pd.DataFrame]) -> pd.DataFrame:
    out = list(model_partition_fn(ctx, kind)(iter(frames)))
    return pd.concat(out, ignore_index=True).set_index("uid")


def test_caption_partition_matches_the_captioner(tiny_model_dir, vlm, jpegs, tmp_path):
    spec = ModelSpec(
        id="tiny:vlm",
        prompt_id="dense_v1",
        device="cpu",
        batch_size=2,
        generation=GenerationParams(max_new_tokens=6),
    )
    ctx = UdfContext(spec=spec, cache_dir=str(tiny_model_dir), batch_log=str(tmp_path / "b.log"))
    images = [jpegs[0], b"not a jpeg", None, jpegs[1], jpegs[2], jpegs[0]]
    uids = [f"u{i}" for i in range(len(images))]
    frame = pd.DataFrame({"uid": uids, "image": images, "keep_me": range(len(images))})
    out = _run(ctx, "caption", [frame.iloc[:1], frame.iloc[1:2], frame.iloc[2:]])

    assert list(out.columns) == ["keep_me", *RESULT_COLUMNS]
    assert sorted(out.index) == uids
    assert out["keep_me"].to_dict() == {u: i for i, u in enumerate(uids)}
    assert out.loc["u1", "reason"] == schema.REASON_PREPARE_ERROR
    assert "cannot decode" in out.loc["u1", "error"]
    assert out.loc["u2", "reason"] == schema.REASON_MISSING_INPUT
    good = ["u0", "u3", "u4", "u5"]
    expected = Captioner(*vlm, spec).caption([jpegs[0], jpegs[1], jpegs[2], jpegs[0]])
    assert out.loc[good, "text"].tolist() == [g.text for g in expected]
    assert out.loc[good, "new_tokens"].tolist() == [g.new_tokens for g in expected]
    assert out.loc[good, "prompt_tokens"].tolist() == [g.prompt_tokens for g in expected]
    # Five rows with bytes (one does not decode: an error of its own row only), in
    # model batches of two whatever the frames were.
    assert [e["rows"] for e in read_batch_log(tmp_path / "b.log")] == [2, 2, 1]


def test_fuse_partition_sorts_by_length_within_a_token_budget(tiny_model_dir, lm, tmp_path):
    gen = GenerationParams(max_new_tokens=5)
    spec = ModelSpec(
        id="tiny:lm",
        prompt_id="fuse_capsfusion_v1",
        device="cpu",
        batch_size=8,
        max_batch_tokens=400,
        generation=gen,
    )
    ctx = UdfContext(spec=spec, cache_dir=str(tiny_model_dir), batch_log=str(tmp_path / "b.log"))
    frame = pd.DataFrame(
        {"uid": [f"f{i}" for i in range(5)], "alt_text": ALTS, "dense_caption": DENSE}
    )
    out = _run(ctx, "fuse", [frame.iloc[:2], frame.iloc[2:]])

    assert list(out.columns) == ["alt_text", "dense_caption", *RESULT_COLUMNS]
    assert out.loc["f4", "reason"] == schema.REASON_MISSING_INPUT
    rewriter = FusionRewriter(*lm, spec)
    rows = [0, 1, 2, 3]
    expected = [
        rewriter.fuse([ALTS[i] or ""], [DENSE[i]])[0] for i in rows
    ]  # one by one: no padding at all
    assert out.loc[[f"f{i}" for i in rows], "text"].tolist() == [
        postprocess(g.text).strip() for g in expected
    ]
    assert out.loc[[f"f{i}" for i in rows], "prompt_tokens"].tolist() == [
        g.prompt_tokens for g in expected
    ]
    # Each batch fits the budget: rows x (longest prompt + new tokens) <= 400.
    lengths = sorted((g.prompt_tokens for g in expected), reverse=True)
    assert lengths[0] + 5 <= 400 < 3 * (lengths[0] + 5)
    batches = [e["rows"] for e in read_batch_log(tmp_path / "b.log")]
    assert sum(batches) == 4 and max(batches) < 4


def test_min_new_tokens_makes_every_row_generate_max_new_tokens(tiny_model_dir, jpegs):
    spec = ModelSpec(
        id="tiny:vlm",
        prompt_id="dense_v1",
        device="cpu",
        batch_size=4,
        generation=GenerationParams(max_new_tokens=7, min_new_tokens=7),
    )
    ctx = UdfContext(spec=spec, cache_dir=str(tiny_model_dir))
    frame = pd.DataFrame({"uid": ["a", "b", "c"], "image": jpegs})
    out = _run(ctx, "caption", [frame])
    assert out["new_tokens"].tolist() == [7, 7, 7]
    assert spec.lineage()["gen_params"] == (
        '{"do_sample":false,"max_new_tokens":7,"min_new_tokens":7,"num_beams":1}'
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_batch_tokens": 0}, "max_batch_tokens"),
        ({"cache_implementation": "paged-ish"}, "cache_implementation"),
        ({"compile": "yes"}, "compile"),
        ({"generation": {"max_new_tokens": 4, "min_new_tokens": 5}}, "min_new_tokens"),
    ],
)
def test_throughput_fields_are_validated(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModelSpec(id="org/model", prompt_id="dense_v1", **kwargs)
