"""Declared stage inputs and outputs: what the checks refuse and what they let through."""

from __future__ import annotations

import pytest

from kale_spark import schema
from kale_spark.lake.contracts import STAGE_IO, UndeclaredTable, check_reads, check_write


def test_a_stage_may_write_what_it_declares_and_runs() -> None:
    assert schema.DENSE_CAPTIONS in STAGE_IO["caption"].writes
    assert schema.RUNS not in STAGE_IO["caption"].writes  # allowed for every stage
    for table in (schema.DENSE_CAPTIONS, schema.RUNS):
        assert check_write({"run_id": "r", "stage": "caption"}, table) is None


def test_an_undeclared_write_is_refused_with_the_declaration() -> None:
    with pytest.raises(UndeclaredTable, match="'caption' writes `kale`.*dense_captions"):
        check_write({"run_id": "r", "stage": "caption"}, schema.KALE)


def test_commits_of_undeclared_stages_are_not_checked() -> None:
    assert "create" not in STAGE_IO and "test-input" not in STAGE_IO
    assert check_write({"stage": "create", "table": "x"}, schema.KALE) is None
    assert check_write({"run_id": "t", "stage": "test-input"}, schema.STAGE1_CAPTIONS) is None


def test_an_undeclared_read_is_refused() -> None:
    check_reads("filter", [schema.STAGE1_CAPTIONS, schema.FILTERED_CAPTIONS])
    with pytest.raises(UndeclaredTable, match="`images`"):
        check_reads("filter", [schema.IMAGES])


def test_every_stage_module_is_declared() -> None:
    import importlib

    names = ["ingest", "fetch", "caption", "augment", "filter", "train_student"]
    names += ["student_caption", "publish"]
    stages = {importlib.import_module(f"kale_spark.stages.{n}").STAGE for n in names}
    assert stages == set(STAGE_IO)
