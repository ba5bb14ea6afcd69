"""bench/RESULTS.md is rendered from the figures files, provenance first."""

from __future__ import annotations

import json

import pytest

from bench.report import MissingProvenance, flatten, render

STAMP = {"machine": "m1", "cores": 2, "date": "2026-12-06", "commit": "abc", "command": "x"}


def test_flatten_gives_dotted_scalars_and_keeps_lists_of_scalars() -> None:
    data = {"a": {"b": 1, "c": [1, 2]}, "d": [{"x": 1}], "e": "s"}
    assert flatten(data) == [("a.b", 1), ("a.c", [1, 2]), ("d", "1 entries"), ("e", "s")]


def test_figures_of_the_old_method_are_not_shown() -> None:
    data = {"stages": {"augment": {"rows_per_s": 6.3, "old_method": "stage time"}, "x": 1}}
    assert flatten(data) == [
        ("stages.augment", "old method, not shown: stage time"),
        ("stages.x", 1),
    ]


def test_each_file_gets_a_section_with_its_provenance_and_ratios_per_size(tmp_path) -> None:
    sizes = {
        "1024": {"kale_over_raw": 0.9, "kale_over_raw_min": 0.8, "kale_over_raw_max": 0.95},
        "256": {"kale_over_raw": 0.5, "kale_over_raw_min": 0.4, "kale_over_raw_max": 0.6,
                "kale": {"median": 1.5, "min": 1.0, "max": 2.0}},
    }  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps({**STAMP, "ratio": 0.9, "sizes": sizes}))
    # older spellings: measured_at, git_commit, cores inside a machine mapping
    old = {"machine": {"cores": 2}, "measured_at": "d", "git_commit": "f", "command": "y"}
    (tmp_path / "b.json").write_text(json.dumps({**old, "ratio": 2.0}))
    page = render(tmp_path)
    a, b = page.index("## a.json"), page.index("## b.json")
    assert page.startswith("# Benchmark results") and "## Method" in page
    assert "- machine: `m1`" in page[a:b] and "- commit: `abc`" in page[a:b]
    assert "- cores: `2`" in page[a:b] and "- command: `x`" in page[a:b]
    assert (
        "| 256 |  |  | 0.5 (0.4–0.6) |" in page[a:b] and "| 1024 |  |  | 0.9 (0.8–0.95) |" in page
    )
    assert page[a:b].index("| 256 |") < page[a:b].index("| 1024 |")
    assert "| 256 | 1.5 (1.0–2.0) |" in page[a:b] and "| 1024 | - |" in page[a:b]
    assert "| `ratio` | 0.9 |" in page[a:b] and "| `sizes.256.kale_over_raw` | 0.5 |" in page
    assert "- date: `d`" in page[b:] and "- commit: `f`" in page[b:] and "- cores: `2`" in page[b:]


@pytest.mark.parametrize("missing", sorted(STAMP))
def test_a_file_without_provenance_stops_the_rendering(tmp_path, missing) -> None:
    (tmp_path / "ok.json").write_text(json.dumps({**STAMP, "ratio": 1.0}))
    stamp = {k: v for k, v in STAMP.items() if k != missing}
    (tmp_path / "bad.json").write_text(json.dumps({**stamp, "ratio": 2.0}))
    with pytest.raises(MissingProvenance, match=rf"bad\.json: no {missing}"):
        render(tmp_path)


def test_the_committed_figures_all_carry_provenance() -> None:
    assert render().startswith("# Benchmark results")


def test_the_readme_quotes_the_caption_and_gpu_figures_as_the_json_holds_them() -> None:
    """A bench run that changes a headline figure fails here until the README follows."""
    from bench.report import FIGURES, REPO

    readme = " ".join((REPO / "README.md").read_text().split())
    # The README's table: one row per size, kale over raw, Ray and Daft ("not run" where
    # a peer was left out), from the two caption files.
    sizes = {}
    for name in ("caption-cpu.json", "caption-cpu-4096.json"):
        sizes.update(json.loads((FIGURES / name).read_text())["sizes"])
    assert sorted(sizes, key=int) == ["256", "1024", "4096"]
    for size, figures in sizes.items():
        cells = []
        for peer in ("raw", "ray", "daft"):
            key = f"kale_over_{peer}"
            cells.append(
                f"{figures[key]} ({figures[key + '_min']}–{figures[key + '_max']})"
                if key in figures
                else "not run"
            )
        assert f"| {size} | " + " | ".join(cells) + " |" in readme
    gpu = json.loads((FIGURES / "nvidia-h200.json").read_text())["stages"]["caption"]
    assert f'{gpu["images_per_s"]} images/s) is labelled "{gpu["label"]}"' in readme


def test_the_readme_quotes_the_fetch_and_scale_figures_as_the_json_holds_them() -> None:
    from bench.report import FIGURES, REPO

    readme = " ".join((REPO / "README.md").read_text().split())
    fetch = json.loads((FIGURES / "fetch-cpu.json").read_text())["urls"]
    for figures in fetch.values():
        key = "kale_over_img2dataset"
        quoted = f"**{figures[key]}** ({figures[key + '_min']}–{figures[key + '_max']})"
        assert quoted in readme
    summary = json.loads((FIGURES / "scale-cpu.json").read_text())["summary"]
    for name, stage in summary["stages"].items():
        assert f'"{name}": {{"growth": {stage["growth"]}, "rss_growth": {stage["rss_growth"]}' in (
            readme
        )
    assert (
        f"raw engine loop at 10^5 64-px images and one new token {summary['caption_over_raw']}"
        in (readme)
    )
