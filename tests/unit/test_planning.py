"""`kale plan`: wall time and device-hours from a figures file (written here by the test),
rows split as the profile splits them, and figures of another model refused unless
`--proxy` (then marked PROXY)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kale_spark.cli.commands import main
from kale_spark.cli.plan import ProxyFigure, Workload, default_figures_dir, plan
from kale_spark.config import load_config

REPO = Path(__file__).resolve().parents[2]
PAPER = str(REPO / "conf" / "paper.yaml")


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
                        "model_id": "tiny:vlm",
                        "label": "engine without Spark, tiny model",
                    },
                    "augment": {"rows_per_s": 40.0, "model_id": "tiny:lm"},
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
    """The local profile: teacher_fraction 0.5, so half the rows go to caption and augment."""
    local = str(REPO / "conf" / "local.yaml")
    assert main(["plan", "--images", "720000", "--gpus", "4", "--gpu-type", "gpu-x",
                 "--figures", str(figures), "--config", local]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "plan on 4 x gpu-x" in out and "WARNING" not in out
    caption = next(line for line in out.splitlines() if line.startswith("caption"))
    assert "360,000" in caption and "2.5 h" in caption and "10.0" in caption
    assert caption.endswith("[engine without Spark, tiny model]")  # beside the estimate
    student = next(line for line in out.splitlines() if line.startswith("student-caption"))
    assert "360,000" in student and "not measured" in student
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert "3.1 h" in total and "12.5" in total


def _paper_figures(path: Path, caption_model: str = "Qwen/Qwen2-VL-7B-Instruct") -> Path:
    student = "apple/DFN5B-CLIP-ViT-H-14-378 + Qwen/Qwen2-1.5B"
    stages = {
        "caption": {"images_per_s": 4.0, "model_id": caption_model, "label": "caption label"},
        "augment": {"rows_per_s": 2.0, "model_id": "mistralai/Mistral-7B-Instruct-v0.2"},
        "student": {"rows_per_s": 8.0, "model_id": student},
        "train_student": {"samples_per_s": 32.0, "model_id": student},
    }
    data = {"device": "gpu-p", "date": "2026-12-01T00:00:00Z", "commit": "ab" * 20,
            "command": "python bench/engine_gpu.py", "stages": stages}  # fmt: skip
    (path / "gpu-p.json").write_text(json.dumps(data))
    return path


def test_paper_profile_plans_the_teacher_share_and_the_student(tmp_path: Path) -> None:
    """teacher_fraction 0.4587 of 100M for caption and augment; the rest for the student;
    train-student is max_steps x batch x processes samples at the measured rate."""
    workload = Workload.from_config(load_config(PAPER))
    caption, augment, student, train = plan(
        100_000_000, 1, "gpu-p", _paper_figures(tmp_path), workload
    )
    assert caption.rows == augment.rows == 45_870_000
    assert student.stage == "student-caption" and student.rows == 54_130_000
    assert caption.device_hours == pytest.approx(45_870_000 / 4.0 / 3600)
    assert student.device_hours == pytest.approx(54_130_000 / 8.0 / 3600)
    assert train.stage == "train-student" and train.rows == 200_000 * 16 * 8
    assert train.device_hours == pytest.approx(200_000 * 16 * 8 / 32.0 / 3600)
    assert not any(p.proxy for p in (caption, augment, student, train))


def test_paper_plan_prints_its_figures_label_date_and_commit(tmp_path: Path, capsys) -> None:
    argv = ["plan", "--images", "100000000", "--config", PAPER, "--gpu-type", "gpu-p",
            "--figures", str(_paper_figures(tmp_path))]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "gpu-p.json, measured 2026-12-01T00:00:00Z at commit abababababab" in out
    assert "python bench/engine_gpu.py" in out
    caption = next(line for line in out.splitlines() if line.startswith("caption"))
    assert "45,870,000" in caption and caption.endswith("[caption label]")
    assert next(ln for ln in out.splitlines() if ln.startswith("train-student"))


def test_a_figure_of_another_model_is_refused_unless_proxy(tmp_path: Path, capsys) -> None:
    figures = str(_paper_figures(tmp_path, caption_model="tiny:vlm"))
    argv = ["plan", "--images", "1000", "--config", PAPER, "--gpu-type", "gpu-p",
            "--figures", figures]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        "measured with tiny:vlm" in err
        and "'Qwen/Qwen2-VL-7B-Instruct'" in err
        and "--proxy" in err
    )
    assert main([*argv, "--proxy"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("WARNING: PROXY figure")
    caption = next(line for line in out.splitlines() if line.startswith("caption"))
    assert caption.endswith("[PROXY: caption label]")
    augment = next(line for line in out.splitlines() if line.startswith("augment"))
    assert "PROXY" not in augment  # its figure is the config's model
    with pytest.raises(ProxyFigure):
        plan(1000, 1, "gpu-p", Path(figures), Workload.from_config(load_config(PAPER)))


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


def test_the_committed_cpu_figures_plan_as_a_proxy(capsys) -> None:
    """cpu.json measured the bench models, not the local profile's tiny ones: a proxy."""
    assert (default_figures_dir() / "cpu.json").is_file()
    assert main(["plan", "--images", "1000", "--gpus", "1", "--gpu-type", "cpu"]) == 2
    assert main(["plan", "--images", "1000", "--gpu-type", "cpu", "--proxy"]) == 0
    caption = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("caption"))
    assert "not measured" not in caption and "[PROXY: " in caption


def test_the_committed_gpu_figure_is_refused_for_the_paper_models(capsys) -> None:
    """The H200 rate is the engine without Spark on the tiny bench model: the paper
    profile's plan refuses it, naming it; with --proxy it is marked PROXY."""
    argv = ["plan", "--images", "100000000", "--config", PAPER, "--gpu-type", "nvidia-h200"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "tiny model" in err and "Qwen/Qwen2-VL-7B-Instruct" in err
    assert main([*argv, "--proxy"]) == 0
    caption = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("caption"))
    assert "[PROXY: engine without Spark, tiny model]" in caption
