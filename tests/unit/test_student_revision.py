"""The student's revision (its content hash) names its weights and config, not the
folders its base models were loaded from."""

from __future__ import annotations

import json
from pathlib import Path

from kale_spark.student.captioner import content_hash


def _saved(root: Path, base_dir: str, weights: bytes) -> Path:
    root.mkdir(parents=True)
    config = {
        "model_type": "kale_student",
        "vision_config": {"_name_or_path": f"{base_dir}/vision", "hidden_size": 32},
        "text_config": {"_name_or_path": f"{base_dir}/lm", "hidden_size": 64},
    }
    (root / "config.json").write_text(json.dumps(config))
    (root / "model.safetensors").write_bytes(weights)
    (root / "provenance.json").write_text(json.dumps({"built_at": base_dir}))
    return root


def test_base_model_folders_do_not_change_the_revision(tmp_path: Path) -> None:
    a = _saved(tmp_path / "a", "/home/one/.cache/models", b"\x00\x01\x02")
    b = _saved(tmp_path / "b", "/mnt/cluster/cache", b"\x00\x01\x02")
    assert content_hash(a) == content_hash(b)


def test_weights_and_config_do_change_it(tmp_path: Path) -> None:
    a = _saved(tmp_path / "a", "/cache", b"\x00\x01\x02")
    other_weights = _saved(tmp_path / "b", "/cache", b"\x00\x01\x03")
    assert content_hash(a) != content_hash(other_weights)
    other_config = _saved(tmp_path / "c", "/cache", b"\x00\x01\x02")
    config = json.loads((other_config / "config.json").read_text())
    config["text_config"]["hidden_size"] = 128
    (other_config / "config.json").write_text(json.dumps(config))
    assert content_hash(a) != content_hash(other_config)
