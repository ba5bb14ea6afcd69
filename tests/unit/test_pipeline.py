"""The model pipeline's pure parts: token-budget batching, and run_partition's
rebatching, prefetch thread and row accounting (a fake engine stands in for the
model: these tests are about the plumbing; tests/models runs the real models)."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from kale_spark import schema
from kale_spark.models.batching import Generated, token_batches
from kale_spark.models.inference import RESULT_COLUMNS, Split, error_row, run_partition
from kale_spark.spark.udf import model_partition_fn


def test_token_batches_caps_rows_and_tokens():
    # 4 rows of 10 prompt tokens + 6 new = 16 tokens each; budget 40 -> 2 rows a batch.
    assert token_batches([10] * 5, new_tokens=6, batch_size=8, max_batch_tokens=40) == [
        [0, 1],
        [2, 3],
        [4],
    ]
    # No budget: batch_size alone.
    assert token_batches([10] * 5, new_tokens=6, batch_size=2) == [[0, 1], [2, 3], [4]]
    # A row over the budget on its own still gets a batch.
    assert token_batches([100, 1], new_tokens=0, batch_size=4, max_batch_tokens=10) == [[0], [1]]


def test_token_batches_sorted_by_length_pads_little():
    costs = [5, 90, 7, 88, 6, 91]
    batches = token_batches(costs, new_tokens=10, batch_size=3, sort=True)
    assert batches == [[5, 1, 3], [2, 4, 0]]
    # The padded width (rows x longest) of sorted batches: 3*101 + 3*17, against
    # 3*101 + 3*101 in arrival order.
    width = sum(len(b) * (max(costs[i] for i in b) + 10) for b in batches)
    assert width == 3 * 101 + 3 * 17
    assert sorted(i for b in batches for i in b) == list(range(6))


def test_token_batches_rejects_a_zero_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        token_batches([1], new_tokens=1, batch_size=0)


class FakeEngine:
    """Upper-cases `alt`; rows whose alt is missing need no model; 'boom' raises.

    Records the batches it ran and the thread that prepared them."""

    drop = ("blob",)

    def __init__(self, sort: bool = False) -> None:
        self.sort = sort
        self.clean = str.strip
        self.ran: list[list[str]] = []
        self.prepared_in: set[str] = set()

    def split(self, frame: pd.DataFrame) -> Split:
        ok, items, costs, errors = [], [], [], {}
        for i, text in enumerate(frame["alt"]):
            if text is None:
                errors[i] = error_row(schema.REASON_MISSING_INPUT, "no text")
            else:
                ok.append(i)
                items.append(text)
                costs.append(len(text))
        return Split(ok, items, costs, errors)

    def prepare(self, items: list[str]) -> list[str]:
        self.prepared_in.add(threading.current_thread().name)
        return list(items)

    def run(self, prepared: list[str]) -> list:
        self.ran.append(prepared)
        return [
            ValueError("boom") if t == "boom" else Generated(t.upper(), len(t), 2) for t in prepared
        ]


def _frames(texts: list[str | None], sizes: list[int]) -> list[pd.DataFrame]:
    uids = [f"u{i:02d}" for i in range(len(texts))]
    full = pd.DataFrame({"uid": uids, "alt": texts, "blob": [b"x"] * len(texts)})
    out, start = [], 0
    for size in sizes:
        out.append(full.iloc[start : start + size].reset_index(drop=True))
        start += size
    assert start == len(texts)
    return out


def test_run_partition_rebatches_across_frames_and_keeps_every_row():
    texts = [f"t{i}" for i in range(11)]
    texts[4] = None
    engine = FakeEngine()
    # Arrow batches of 1, 3 and 7 rows; model batches of 4 whatever they are.
    out = pd.concat(
        list(run_partition(engine, _frames(texts, [1, 3, 7]), batch_size=4)), ignore_index=True
    )
    assert list(out.columns) == ["uid", "alt", *RESULT_COLUMNS]  # `blob` (the input) dropped
    assert sorted(out["uid"]) == [f"u{i:02d}" for i in range(11)]
    by_uid = out.set_index("uid")
    assert by_uid.loc["u04", "reason"] == schema.REASON_MISSING_INPUT
    assert pd.isna(by_uid.loc["u04", "text"])
    good = by_uid.drop(index="u04")
    assert (good["text"] == good["alt"].str.upper()).all()  # results follow their rows
    assert good["reason"].isna().all()
    assert [len(b) for b in engine.ran] == [4, 4, 2]
    assert engine.prepared_in == {"kale-prefetch"}


def test_run_partition_results_follow_their_rows():
    texts = ["bb", "a", "dddd", "ccc", "eeeee", "ff"]
    engine = FakeEngine(sort=True)
    frames = [pd.DataFrame({"uid": [f"u{i}" for i in range(6)], "alt": texts})]
    out = pd.concat(list(run_partition(engine, frames, batch_size=2)), ignore_index=True)
    assert dict(zip(out["uid"], out["text"], strict=True)) == {
        f"u{i}": t.upper() for i, t in enumerate(texts)
    }
    # Sorted by length, longest first: similar lengths share a batch.
    assert engine.ran == [["eeeee", "dddd"], ["ccc", "bb"], ["ff", "a"]]


def test_run_partition_isolates_a_failing_row():
    engine = FakeEngine()
    frames = [pd.DataFrame({"uid": ["a", "b"], "alt": ["ok", "boom"]})]
    out = pd.concat(list(run_partition(engine, frames, batch_size=8)), ignore_index=True)
    assert out["text"].tolist() == ["OK", None]
    assert out["reason"].tolist() == [None, schema.REASON_GENERATION_ERROR]
    assert out["error"][1] == "ValueError: boom"
    assert out["prompt_tokens"].tolist() == [2, pd.NA]


def test_run_partition_raises_what_the_input_raises():
    def frames():
        yield pd.DataFrame({"uid": ["a"], "alt": ["x"]})
        raise OSError("lost the input stream")

    with pytest.raises(OSError, match="lost the input stream"):
        list(run_partition(FakeEngine(), frames(), batch_size=8))


def test_model_partition_fn_loads_nothing_for_an_empty_partition():
    from kale_spark.models.spec import ModelSpec
    from kale_spark.spark.udf import UdfContext

    # A model id that cannot load: an empty partition never tries.
    ctx = UdfContext(spec=ModelSpec(id="/nonexistent/model", prompt_id="dense_v1"))
    assert list(model_partition_fn(ctx, "caption")(iter([]))) == []
    with pytest.raises(ValueError, match="unknown model kind"):
        model_partition_fn(ctx, "painter")


def test_prepare_threads_prepare_batches_in_a_pool_and_keep_rows_with_results():
    texts = [f"row{i}" for i in range(20)]
    engine = FakeEngine()
    frames = _frames(texts, [7, 13])
    out = pd.concat(
        list(run_partition(engine, frames, batch_size=3, prepare_threads=3)), ignore_index=True
    )
    assert sorted(out["uid"]) == [f"u{i:02d}" for i in range(20)]
    assert (out["text"] == out["alt"].str.upper()).all()
    assert {name.rsplit("_", 1)[0] for name in engine.prepared_in} == {"kale-prepare"}
    assert sum(len(b) for b in engine.ran) == 20
