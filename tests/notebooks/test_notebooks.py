"""Every Databricks notebook runs top to bottom locally, against the generated sample.

A notebook in Databricks source format is split into its cells (`# COMMAND ----------`).
Python cells run in one namespace holding the local Spark session as `spark`, a small
stand-in for `dbutils.widgets` (the test sets the widgets, as a job's parameters would)
and `display`; `%sql` cells (`# MAGIC %sql`) run through `spark.sql`; `%md` cells are
skipped. The notebooks never re-implement a stage: they call `stages.<stage>.run`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.notebooks, pytest.mark.spark]

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.py"))
ROWS = 12


class Widgets:
    """`dbutils.widgets`: values given by the caller win over the notebook's defaults."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)
        self.defined: dict[str, str] = {}

    def text(self, name: str, default: str, label: str | None = None) -> None:
        self.defined[name] = default

    def get(self, name: str) -> str:
        if name not in self.defined:
            raise ValueError(f"widget {name!r} was never defined")  # as Databricks does
        return self.values.get(name, self.defined[name])


class DBUtils:
    def __init__(self, widgets: dict[str, str]) -> None:
        self.widgets = Widgets(widgets)


def cells(path: Path) -> list[tuple[str, str]]:
    """``(kind, source)`` per cell: kind is python, sql or md."""
    text = path.read_text()
    assert text.startswith("# Databricks notebook source\n")
    out = []
    for raw in text.split("# COMMAND ----------"):
        lines = [ln for ln in raw.strip("\n").splitlines() if ln != "# Databricks notebook source"]
        if not lines:
            continue
        if all(ln.startswith("# MAGIC") for ln in lines):
            body = [re.sub(r"^# MAGIC ?", "", ln) for ln in lines]
            magic, rest = body[0].split(" ", 1)[0], body[1:]
            if body[0].strip() != magic:
                rest = [body[0][len(magic) :].strip(), *rest]
            out.append((magic.lstrip("%"), "\n".join(rest)))
        else:
            out.append(("python", "\n".join(lines)))
    return out


def run_notebook(path: Path, spark: Any, widgets: dict[str, str]) -> dict[str, Any]:
    """Run every cell; return the namespace, with `_sql` (each %sql cell's rows) and
    `_displayed` (what display() was given)."""
    displayed: list[list] = []
    sql_results: list[list] = []
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "spark": spark,
        "dbutils": DBUtils(widgets),
        "display": lambda df: displayed.append(df.collect()),
        "_sql": sql_results,
        "_displayed": displayed,
    }
    for i, (kind, source) in enumerate(cells(path)):
        if kind == "python":
            exec(compile(source, f"{path.name}[cell {i}]", "exec"), namespace)
        elif kind == "sql":
            query = "\n".join(ln for ln in source.splitlines() if not ln.strip().startswith("--"))
            sql_results.append(spark.sql(query).collect())
        else:
            assert kind == "md", f"{path.name} cell {i}: unknown magic %{kind}"
    return namespace


@pytest.fixture(scope="module")
def notebook_run(spark, tmp_path_factory):
    from kale_spark.sources.sample import generate_sample

    tmp = tmp_path_factory.mktemp("notebooks")
    sample = generate_sample(tmp / "sample", ROWS, bad_fraction=0.0, seed=3)
    widgets = {
        "profile": str(REPO / "conf" / "local.yaml"),
        "lake_root": str(tmp / "lake"),
        "ingest_input": str(sample.metadata_dir),
        # The notebooks cover stage 1: the teacher takes every image here.
        "overrides": f"models.cache_dir={tmp_path_factory.getbasetemp() / 'kale-model-cache'}; "
        f"fetch.file_root={tmp / 'sample'}; split.teacher_fraction=1.0; "
        "spark.shuffle_partitions=2",
    }
    results = {nb.name: run_notebook(nb, spark, widgets) for nb in NOTEBOOKS}
    return {"results": results, "lake": tmp / "lake", "sample": sample}


def test_there_are_three_notebooks_in_databricks_source_format():
    assert [p.name for p in NOTEBOOKS] == [
        "01_ingest_fetch.py",
        "02_stage1_captions.py",
        "03_filter_publish.py",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_call_the_stages_and_never_reimplement_them(path):
    code = "\n".join(src for kind, src in cells(path) if kind == "python")
    assert re.search(r"\b\w+\.run\(spark, cfg\)", code)
    for forbidden in ("mapInPandas", "pandas_udf", "MERGE INTO", "DeltaTable", "generate("):
        assert forbidden not in code, forbidden
    assert 'widgets.get("profile")' in code and "lake_root" in code


def test_notebooks_run_top_to_bottom_on_the_sample(notebook_run):
    res = notebook_run["results"]
    nb1, nb2, nb3 = (res[p.name] for p in NOTEBOOKS)
    # 01: the lake root and input came from the widgets; every row fetched ok.
    assert nb1["cfg"].lake.root == str(notebook_run["lake"])
    assert nb1["run"].status == "ok"
    quarantine, images, samples_v1 = nb1["_sql"]
    assert quarantine == []
    assert [(r["status"], r["n"]) for r in images] == [("ok", ROWS)]
    assert samples_v1[0][0] == ROWS
    # 02: caption and augment wrote one row per image; the SQL functions ran in display().
    assert nb2["run"].status == "ok"
    per_model, stage1, _ = nb2["_sql"]
    assert [(r["model"], r["prompt_id"], r["n"]) for r in per_model] == [
        ("tiny:vlm", "dense_v1", ROWS)
    ]
    assert len(stage1) == ROWS
    (fused,) = nb2["_displayed"]
    assert len(fused) == 10 and all(r["fused"] for r in fused)
    # 03: a release of the kept captions, its history, and a byte-identical re-export.
    assert nb3["run"].status == "ok"
    outcomes, _, releases, history = nb3["_sql"]
    assert sum(r["n"] for r in outcomes) == ROWS
    kept = sum(r["n"] for r in outcomes if r["outcome"] == "kept")
    assert [(r["release"], r["rows"]) for r in releases] == [(1, kept)]
    assert history and history[0]["operation"]
