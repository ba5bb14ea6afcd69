"""bench/RESULTS.md is rendered from the figures files, provenance first."""

from __future__ import annotations

import json

from bench.report import flatten, render


def test_flatten_gives_dotted_scalars_and_keeps_lists_of_scalars() -> None:
    data = {"a": {"b": 1, "c": [1, 2]}, "d": [{"x": 1}], "e": "s"}
    assert flatten(data) == [("a.b", 1), ("a.c", [1, 2]), ("d", "1 entries"), ("e", "s")]


def test_each_file_gets_a_section_with_its_provenance_or_a_warning(tmp_path) -> None:
    (tmp_path / "a.json").write_text(
        json.dumps({"machine": "m1", "commit": "abc", "ratio": 0.9, "sizes": {"256": 1.5}})
    )
    (tmp_path / "b.json").write_text(json.dumps({"ratio": 2.0}))
    page = render(tmp_path)
    a, b = page.index("## a.json"), page.index("## b.json")
    assert page.startswith("# Benchmark results") and "## Method" in page
    assert "- machine: `m1`" in page[a:b] and "- commit: `abc`" in page[a:b]
    assert "| `ratio` | 0.9 |" in page[a:b] and "| `sizes.256` | 1.5 |" in page[a:b]
    assert "provenance: not recorded" in page[b:] and "| `ratio` | 2.0 |" in page[b:]
