"""Config loading: YAML profiles, dotted overrides, clear errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from kale_spark.config import Config, ConfigError, apply_override, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("profile", ["local", "small", "paper"])
def test_every_profile_loads(profile: str) -> None:
    cfg = load_config(ROOT / "conf" / f"{profile}.yaml")
    assert cfg.profile == profile


def test_local_profile_values() -> None:
    cfg = load_config(ROOT / "conf" / "local.yaml")
    assert cfg.lake.root == "./lake"
    assert cfg.spark.master == "local[2]"
    assert cfg.caption.id == "tiny:vlm"
    assert cfg.augment.id == "tiny:lm"


def test_overrides_apply_dotted_and_parse_values() -> None:
    cfg = load_config(
        ROOT / "conf" / "local.yaml",
        [
            "lake.root=/tmp/x",
            "spark.master=local[2]",
            "spark.shuffle_partitions=3",
            "fetch.allow_networks=[127.0.0.0/8, 10.1.0.0/16]",
            "caption.generation.max_new_tokens=12",
        ],
    )
    assert cfg.lake.root == "/tmp/x"
    assert cfg.spark.master == "local[2]"
    assert cfg.spark.shuffle_partitions == 3
    assert cfg.fetch.allow_networks == ("127.0.0.0/8", "10.1.0.0/16")
    # a partial section keeps the defaults it does not name
    assert cfg.caption.generation.max_new_tokens == 12
    assert cfg.caption.id == "tiny:vlm"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lake.rot=/x", "unknown config key 'lake.rot'"),
        ("nope=1", "unknown config key 'nope'"),
        ("spark.shuffle_partitions=abc", "spark.shuffle_partitions: expected an integer"),
        ("spark.shuffle_partitions=0", "spark.shuffle_partitions must be >= 1"),
        ("spark.ui=maybe", "spark.ui: expected true/false"),
        ("sample.bad_fraction=1.5", "sample.bad_fraction must be in [0, 1)"),
        ("fetch.hash_policy=sometimes", "fetch.hash_policy: unknown policy"),
        ("fetch.per_host_concurrency=0", "fetch.per_host_concurrency must be an int >= 1"),
        ("fetch.host_fail_limit=0", "fetch.host_fail_limit must be an int >= 1"),
        ("fetch.host_salt=0", "fetch.host_salt must be >= 1"),
        ("fetch.host_rows_per_task=0", "fetch.host_rows_per_task must be >= 1"),
        ("caption.dtype=int3", "caption: dtype must be one of"),
        ("lake=3", "lake: expected a mapping"),
        ("noequals", "--set expects key=value"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_unknown_key_in_yaml_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("lake:\n  root: /x\n  colour: blue\n")
    with pytest.raises(ConfigError, match="unknown config key 'lake.colour'"):
        load_config(f)


def test_yaml_must_be_a_mapping(tmp_path: Path) -> None:
    f = tmp_path / "list.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(f)


def test_config_is_frozen_and_hash_is_stable() -> None:
    a = load_config(None, ["lake.root=/a"])
    b = load_config(None, ["lake.root=/a"])
    c = load_config(None, ["lake.root=/b"])
    assert a.config_hash() == b.config_hash() != c.config_hash()
    with pytest.raises(AttributeError):
        a.lake.root = "/c"  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.spark.conf["x"] = "y"  # type: ignore[index]


def test_override_does_not_mutate_its_input() -> None:
    data = {"lake": {"root": "/a"}}
    out = apply_override(data, "lake.root=/b")
    assert data == {"lake": {"root": "/a"}}
    assert out == {"lake": {"root": "/b"}}


def test_default_config_is_the_local_embedded_default() -> None:
    cfg = Config()
    assert cfg.lake.database == "kale"
    assert cfg.spark.delta_packages is True


def test_release_browser_settings() -> None:
    assert Config().browse.sample_rows == 2000 and Config().publish.browser is False
    local = load_config(ROOT / "conf" / "local.yaml")
    assert local.publish.browser is True and local.browse.sample_rows == 2000
    assert load_config(None, ["browse.sample_rows=50"]).browse.sample_rows == 50
    with pytest.raises(ConfigError, match="browse.sample_rows"):
        load_config(None, ["browse.sample_rows=0"])
    with pytest.raises(ConfigError, match="publish.browser"):
        load_config(None, ["publish.browser=maybe"])


def test_student_nests_a_model_a_train_and_a_caption_section() -> None:
    from kale_spark.models.spec import ModelSpec

    paper = load_config(ROOT / "conf" / "paper.yaml").student
    assert paper.model.language_model == "Qwen/Qwen2-1.5B" and paper.model.image_size == 490
    assert paper.train.max_steps == 200000 and paper.train.num_processes == 8
    assert isinstance(paper.caption, ModelSpec)
    assert (paper.caption.prompt_id, paper.caption.batch_size) == ("student_v1", 64)
    assert paper.caption.id == "student:latest" and paper.caption.dtype == "bfloat16"
    # A section override keeps the section's other keys.
    s = load_config(None, ["student.caption.batch_size=3"]).student
    assert (s.caption.batch_size, s.caption.generation.max_new_tokens) == (3, 32)
    with pytest.raises(ConfigError, match="unknown config key 'student.lr'"):
        load_config(None, ["student.lr=0.1"])
    with pytest.raises(ConfigError, match="student.train.max_steps"):
        load_config(None, ["student.train.max_steps=0"])
    with pytest.raises(ConfigError, match="student.caption.prompt_id"):
        load_config(None, ["student.caption.prompt_id=dense_v1"])
