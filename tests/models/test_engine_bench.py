"""bench/engine_gpu.py: its ``--smoke`` run (the GPU script's code path on the CPU, tiny
dims) writes a complete, stamped figures file without importing pyspark; fusion's
prefix sharing gives the same greedy text as the plain engine; ``choose`` only picks an
option measured at the profile's settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

# Runs the script with every pyspark import refused and recorded (the GPU machine has none).
NO_PYSPARK = """
import runpy, sys
attempts = []
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pyspark":
            attempts.append(name)
            raise ImportError("pyspark is refused in this run")
sys.meta_path.insert(0, Refuse())
sys.argv = ["bench/engine_gpu.py", "--smoke", "--out", sys.argv[1]]
try:
    runpy.run_path("bench/engine_gpu.py", run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
finally:
    print("PYSPARK_ATTEMPTS", attempts)
"""
ROLES = {"caption": "images_per_s", "augment": "rows_per_s", "student": "rows_per_s"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("engine-smoke")
    proc = subprocess.run(
        [sys.executable, "-c", NO_PYSPARK, str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "cpu-smoke.json").read_text()), proc.stdout


def test_smoke_writes_every_role_and_option(smoke) -> None:
    from bench.engine_gpu import OPTIONS

    data, _ = smoke
    assert data["complete"] is True and data["smoke"] is True
    assert set(data["roles"]) == set(OPTIONS)
    for role, options in OPTIONS.items():
        measured = data["roles"][role]["options"]
        assert set(measured) == set(options)
        for figures in measured.values():  # a rate, or the error that stopped it
            assert ("rows_per_s" in figures) != ("error" in figures), figures
        assert measured["dynamic"]["rows_per_s"] > 0  # today's option always runs
        assert measured["dynamic"]["busy_method"].startswith("cpu")
        assert data["chosen"][role] in options
        settings = data["settings"][role]
        assert settings["min_new_tokens"] == settings["max_new_tokens"]
        assert settings["parameters"] > 0 and settings["model_id"]
    assert data["roles"]["fuse"]["options"]["static_compile"]["compiled_graphs"] > 0
    assert data["roles"]["fuse"]["options"]["static"]["compiled_graphs"] == 0
    assert data["settings"]["fuse"]["num_beams"] == 3
    assert data["settings"]["caption"]["image_side"] == 490
    assert set(data["roles"]["fuse"]["prefix_sharing"]) == {
        "off_rows_per_s",
        "on_rows_per_s",
        "keep",
    }


def test_smoke_stages_are_what_kale_plan_reads_and_say_smoke(smoke) -> None:
    data, _ = smoke
    for stage, key in ROLES.items():
        entry = data["stages"][stage]
        assert entry[key] > 0
        assert entry["model_id"].startswith("smoke:")  # never taken for the real size
        assert "smoke" in entry["label"]


def test_smoke_is_stamped_and_imports_no_pyspark(smoke) -> None:
    from bench.report import provenance

    data, stdout = smoke
    assert provenance(Path("cpu-smoke.json"), data)["command"].startswith("python bench/engine_gpu")
    assert "PYSPARK_ATTEMPTS []" in stdout


def test_kale_plan_reads_the_figure_and_refuses_smoke_dims_for_the_paper(
    smoke, tmp_path: Path, capsys
) -> None:
    from kale_spark.cli.commands import main

    data, _ = smoke
    (tmp_path / "gpu-s.json").write_text(json.dumps(data))
    argv = ["plan", "--images", "1000", "--config", str(REPO / "conf" / "paper.yaml"),
            "--gpu-type", "gpu-s", "--figures", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    assert "smoke dims (NOT the real size)" in capsys.readouterr().err
    real = {stage: {**entry, "model_id": entry["model_id"].removeprefix("smoke:")}
            for stage, entry in data["stages"].items()}  # fmt: skip
    (tmp_path / "gpu-s.json").write_text(json.dumps({**data, "stages": real}))
    assert main(argv) == 0
    out = capsys.readouterr().out
    for stage in ("caption", "augment", "student-caption"):
        line = next(ln for ln in out.splitlines() if ln.startswith(stage))
        assert "not measured" not in line and line.endswith("[engine without Spark, smoke model]")


def test_choose_takes_the_fastest_comparable_option() -> None:
    from bench.engine_gpu import choose

    options = {
        "dynamic": {"rows_per_s": 2.0, "comparable": True},
        "static": {"rows_per_s": 3.0, "comparable": True},
        "continuous": {"rows_per_s": 9.0, "comparable": False},  # greedy, not 3 beams
        "static_compile": {"error": "boom"},
    }
    assert choose(options) == "static"
    assert choose({"static_compile": {"error": "boom"}}) is None


@pytest.mark.parametrize("beams", [1, 3])
def test_prefix_sharing_gives_the_plain_engines_text(lm, beams: int) -> None:
    import pandas as pd

    from bench.engine_prefix import PrefixFuseEngine
    from kale_spark.models.fusion import FusionRewriter
    from kale_spark.models.inference import FuseEngine, results_in_order
    from kale_spark.models.spec import GenerationParams, ModelSpec

    model, tokenizer = lm
    spec = ModelSpec(id="tiny:lm", prompt_id="fuse_capsfusion_v1", batch_size=4,
                     generation=GenerationParams(max_new_tokens=8, num_beams=beams))  # fmt: skip
    frame = pd.DataFrame(
        {
            "alt_text": ["a red kite", "Zebra crossing at night", "", "old brick mill"],
            "dense_caption": ["a kite in a blue sky", "a road", "two dogs", "a tall building"],
        }
    )
    plain = results_in_order(FuseEngine(FusionRewriter(model, tokenizer, spec)), frame, spec)
    shared = PrefixFuseEngine(FusionRewriter(model, tokenizer, spec))
    assert len(shared.prefix) > 20  # the templated instruction, computed once
    out = results_in_order(shared, frame, spec)
    assert out["reason"].isna().all(), out["error"].tolist()
    assert out["text"].tolist() == plain["text"].tolist()
