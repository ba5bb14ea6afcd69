"""`kale plan`: wall time and device-hours from a figures file (written here by the test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kale_spark.cli.commands import main
from kale_spark.cli.plan import default_figures_dir, plan


@pytest.fixture
def figures(tmp_path: Path) -> Path:
    (tmp_path / "gpu-x.json").write_text(
        json.dumps(
            {
                "device": "gpu-x",
                "stages": {
                    "caption": {
                        "images_per_s": 10.0,
                        "model": "bench-vlm",
                        "label": "engine without Spark, tiny model",
                    },
                    "augment": {"rows_per_s": 40.0},
                },
            }
        )
    )
    (tmp_path / "gpu-y.json").write_text(json.dumps({"stages": {}}))
    return tmp_path


def test_plan_scales_measured_rates_by_devices(figures: Path) -> None:
    caption, augment, student = plan(720_000, 4, "gpu-x", figures)
    # 720k images / (10 img/s x 4 devices) = 18,000 s = 5 h wall; 20 device-hours.
    assert caption.wall_hours == pytest.approx(5.0)
    assert caption.device_hours == pytest.approx(20.0)
    assert caption.model == "bench-vlm"
    assert augment.wall_hours == pytest.approx(1.25)
    assert augment.device_hours == pytest.approx(5.0)
    assert student.rate_per_device is None and student.wall_hours is None


def test_plan_cli_prints_the_table(figures: Path, capsys) -> None:
    assert main(["plan", "--images", "720000", "--gpus", "4", "--gpu-type", "gpu-x",
                 "--figures", str(figures)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "plan on 4 x gpu-x" in out
    caption = next(line for line in out.splitlines() if line.startswith("caption"))
    assert "720,000" in caption and "5.0 h" in caption and "20.0" in caption
    assert caption.endswith("[engine without Spark, tiny model]")  # beside the estimate
    student = next(line for line in out.splitlines() if line.startswith("student"))
    assert "not measured" in student
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert "6.2 h" in total and "25.0" in total


def test_unknown_gpu_type_lists_the_known_ones(figures: Path, capsys) -> None:
    code = main(["plan", "--images", "10", "--gpu-type", "tpu-v9", "--figures", str(figures)])
    assert code == 2
    err = capsys.readouterr().err
    assert "'tpu-v9'" in err and "known types: gpu-x, gpu-y" in err


def test_bad_counts_are_rejected(figures: Path) -> None:
    with pytest.raises(ValueError, match="--gpus"):
        plan(10, 0, "gpu-x", figures)
    with pytest.raises(ValueError, match="--images"):
        plan(0, 1, "gpu-x", figures)


def test_the_committed_cpu_figures_plan_out_of_the_box(capsys) -> None:
    assert (default_figures_dir() / "cpu.json").is_file()
    assert main(["plan", "--images", "1000", "--gpus", "1", "--gpu-type", "cpu"]) == 0
    caption = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("caption"))
    assert "not measured" not in caption


def test_the_committed_gpu_figure_says_what_it_measures(capsys) -> None:
    """The H200 rate is the engine without Spark on the tiny bench model: the plan says so."""
    assert main(["plan", "--images", "1000", "--gpus", "1", "--gpu-type", "nvidia-h200"]) == 0
    caption = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("caption"))
    assert "[engine without Spark, tiny model]" in caption
