"""bench/caption_throughput.py's bookkeeping: rounds alternate, ratios pair within a round."""

from __future__ import annotations

import argparse
import time

import pytest

from bench import caption_throughput as bench


def test_rounds_alternate_the_order_and_ratios_pair_within_a_round(monkeypatch) -> None:
    order: list[str] = []
    rates = {"kale": [10.0, 12.0, 9.0], "raw": [8.0, 12.0, 10.0], "ray": [5.0, 6.0, 4.0]}

    def run_once(args, setting, images):
        order.append(setting.name)
        rate = rates[setting.name][sum(1 for n in order if n == setting.name) - 1]
        return {"images_per_s": rate, "seconds": images / rate, "peak_rss_mb": 1.0,
                "load_average_1m": 2.0, "stage_s": 1.0}  # fmt: skip

    monkeypatch.setattr(bench, "run_once", run_once)
    args = argparse.Namespace(repeats=3, deadline=time.monotonic() + 1e6, last_round=None)
    best = {n: bench.Setting(n, 8) for n in ("kale", "raw", "ray")}
    runs = bench.rounds(args, best, 64)
    assert order == ["kale", "raw", "ray", "ray", "raw", "kale", "kale", "raw", "ray"]
    out = bench.size_summary(runs)
    # kale/raw per round: 1.25, 1.0, 0.9 -> median 1.0, min 0.9, max 1.25
    assert (out["kale_over_raw"], out["kale_over_raw_min"], out["kale_over_raw_max"]) == (
        1.0, 0.9, 1.25,
    )  # fmt: skip
    assert out["kale_over_ray"] == 2.0 and out["kale_over_ray_min"] == 2.0
    assert out["kale_over_ray_max"] == 2.25
    assert out["kale"] == {"median": 10.0, "min": 9.0, "max": 12.0}


def test_a_round_past_the_budget_is_not_started(monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(bench, "run_once", lambda a, s, i: calls.append(s.name) or {})
    args = argparse.Namespace(repeats=3, deadline=time.monotonic() - 1, last_round=None)
    runs = bench.rounds(args, {"kale": bench.Setting("kale", 8)}, 64)
    assert calls == ["kale"] and len(runs["kale"]) == 1  # the first round always runs
    assert args.last_round[1] == 64


def test_a_size_fits_by_the_last_round_scaled_by_images() -> None:
    args = argparse.Namespace(deadline=time.monotonic() + 100, last_round=None)
    assert bench.fits(args, 4096)  # nothing measured yet: the caller's call
    args.last_round = (30.0, 64)
    assert bench.fits(args, 64) and bench.fits(args, 128)  # 30 s, 60 s
    assert not bench.fits(args, 256)  # 120 s > 100 s left


def test_the_sweep_tries_layouts_then_batch_sizes_at_the_best_layout(monkeypatch) -> None:
    rate = {("ray", 8, 1): 3.0, ("ray", 8, 2): 4.0, ("ray", 16, 2): 5.0,
            ("raw", 8, 1): 6.0, ("raw", 16, 1): 5.0}  # fmt: skip
    tried: list[tuple] = []

    def run_once(args, s, images):
        tried.append((s.name, s.batch_size, s.workers))
        return {"images_per_s": rate[tried[-1]]}

    monkeypatch.setattr(bench, "run_once", run_once)
    args = argparse.Namespace(batch_sizes=[8, 16], workers=[1, 2], sweep_images=64)
    best, table = bench.sweep(args, ["raw", "naive", "ray"])
    assert tried == [("raw", 8, 1), ("raw", 16, 1), ("ray", 8, 1), ("ray", 8, 2), ("ray", 16, 2)]
    assert best["raw"] == bench.Setting("raw", 8, 1) and best["ray"] == bench.Setting("ray", 16, 2)
    assert best["naive"] == bench.Setting("naive", 8, 1)  # the untuned loop is not swept
    assert len(table) == 5


@pytest.mark.parametrize("name", ["ray", "daft"])
def test_ray_and_daft_sweep_their_layouts_too(name) -> None:
    args = argparse.Namespace(batch_sizes=[8, 16], workers=[1, 2])
    assert len(bench.settings_for(name, args)) == 4
    assert [s.workers for s in bench.settings_for("raw", args)] == [1, 1]
    assert bench.settings_for("naive", args) == [bench.Setting("naive", 8, 1)]
