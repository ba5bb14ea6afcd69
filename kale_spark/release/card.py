"""The dataset card of an export: README.md text and a caption-length histogram PNG.

Pure (no Spark): the figures are computed elsewhere (kale_spark/release/charts.py aggregates
them in Spark) and passed in as a :class:`CardInfo`. Both outputs are deterministic -
the same figures give the same bytes - so re-exporting a release reproduces its card.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kale_spark.curation.quality import KALE_MEAN_CAPTION_WORDS, WordStats

__all__ = [
    "BIN_WORDS",
    "COLUMN_DOCS",
    "N_BINS",
    "CardInfo",
    "bin_index",
    "card_text",
    "draw_histogram",
    "histogram",
    "word_stats_section",
]

# Caption-length histogram: bins of BIN_WORDS words; the last bin holds everything longer.
BIN_WORDS = 10
N_BINS = 16

COLUMN_DOCS: dict[str, str] = {
    "uid": "DataComp uid (32 hex digits); one row per uid",
    "url": "image URL from the DataComp metadata",
    "alt_text": "the web alt-text of the image",
    "dense_caption": "the VLM's dense caption (stage 1 input to the fusion LLM; null for stage 2)",
    "caption": "the knowledge-augmented caption, leaked-prompt sentences removed",
    "stage": "stage1 (teacher: VLM + fusion LLM) or stage2 (student VLM)",
    "model": "model id that wrote `caption`",
    "model_revision": "pinned revision of that model",
    "prompt_id": "stable id of the prompt template used",
    "gen_params": "generation parameters (canonical JSON)",
    "dense_model": "model id that wrote `dense_caption`",
    "word_count": "words in `caption`",
    "knowledge_retention": "share of the alt-text's names/numbers found in `caption` "
    "(null when the alt-text has none)",
    "novel_share": "share of the caption's content words found in neither source",
    "novel_share_basis": "the sources novel_share checks: alt_text+dense_caption (stage 1) "
    "or alt_text (stage 2 has no dense caption)",
    "removed_sentences": "sentences the artifact filter removed from the raw caption",
    "caption_run_id": "run that generated the caption",
    "filter_run_id": "run that filtered it",
}


def bin_index(words: int, bin_words: int = BIN_WORDS, n_bins: int = N_BINS) -> int:
    """The histogram bin of a caption of `words` words (the last bin is open-ended)."""
    return min(max(int(words), 0) // bin_words, n_bins - 1)


def histogram(
    word_counts: Iterable[int] | Mapping[int, int],
    bin_words: int = BIN_WORDS,
    n_bins: int = N_BINS,
) -> list[int]:
    """Captions per bin, of a list of word counts or of a `{word count: captions}`
    mapping (what kale_spark/release/charts.py counts in Spark)."""
    pairs = (
        word_counts.items() if isinstance(word_counts, Mapping) else ((w, 1) for w in word_counts)
    )
    counts = [0] * n_bins
    for words, n in pairs:
        counts[bin_index(words, bin_words, n_bins)] += n
    return counts


def bin_label(i: int, bin_words: int = BIN_WORDS, n_bins: int = N_BINS) -> str:
    lo = i * bin_words
    return f"{lo}+" if i == n_bins - 1 else f"{lo}-{lo + bin_words - 1}"


def draw_histogram(
    counts: Sequence[int],
    bin_words: int = BIN_WORDS,
    title: str = "caption length (words)",
    size: tuple[int, int] = (800, 420),
) -> bytes:
    """A bar chart of `counts` as PNG bytes, drawn with Pillow."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    left, right, top, bottom = 70, 20, 40, 60
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    n = max(len(counts), 1)
    peak = max(max(counts, default=0), 1)
    plot_w, plot_h = width - left - right, height - top - bottom
    draw.text((left, 12), title, fill="black", font=font)
    # axes and y ticks
    draw.line([(left, top), (left, top + plot_h), (left + plot_w, top + plot_h)], fill="black")
    for k in range(5):
        value = round(peak * k / 4)
        y = top + plot_h - plot_h * value / peak
        draw.line([(left - 4, y), (left, y)], fill="black")
        draw.text((8, y - 6), str(value), fill="black", font=font)
    bar_w = plot_w / n
    for i, c in enumerate(counts):
        x0 = left + i * bar_w + 2
        x1 = left + (i + 1) * bar_w - 2
        y0 = top + plot_h - plot_h * c / peak
        if c:
            draw.rectangle([x0, y0, x1, top + plot_h], fill=(66, 120, 190), outline="black")
        if i % 2 == 0 or n <= 10:
            draw.text((x0, top + plot_h + 6), bin_label(i, bin_words, n), fill="black", font=font)
    draw.text((left + plot_w // 2 - 20, height - 22), "words", fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


@dataclass(frozen=True)
class CardInfo:
    """The figures a dataset card shows."""

    table: str
    version: int
    rows: int
    shards: Sequence[tuple[str, int]]  # (file name, rows)
    columns: Sequence[tuple[str, str]]  # (name, Arrow type)
    rows_by_stage: Mapping[str, int] = field(default_factory=dict)
    rows_by_model: Mapping[str, int] = field(default_factory=dict)
    mean_words: float | None = None
    median_words: float | None = None
    mean_retention: float | None = None
    mean_novel_share: float | None = None
    rows_with_removals: int = 0
    sentences_removed: int = 0
    histogram: Sequence[int] = ()
    histogram_file: str = "caption_length_hist.png"
    release: int | None = None
    published_at: str | None = None
    config_hash: str | None = None
    run_id: str | None = None
    source_versions: Mapping[str, int] = field(default_factory=dict)
    webdataset_shards: Sequence[tuple[str, int]] = ()
    database: str = "kale"
    word_stats: Sequence[WordStats] = ()  # words per text by stage (quality.word_stats)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def word_stats_section(stats: Sequence[WordStats]) -> list[str]:
    """The card's "Words per text" section: mean and median words of the caption, the
    dense caption and the alt-text by stage, beside KALE's published average."""
    lines = [
        "## Words per text",
        "",
        f"KALE's captions average {KALE_MEAN_CAPTION_WORDS} words (BLIP3-KALE, Table 1). "
        "Stage 2 rows have no dense caption; they are left out of its figures.",
        "",
        "| stage | text | rows | mean words | median words |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {s.stage} | `{s.field}` | {s.n} | {_fmt(s.mean, 1)} | {_fmt(s.median, 1)} |"
        for s in stats
    ]
    lines.append(f"| KALE (paper) | `caption` | n/a | {KALE_MEAN_CAPTION_WORDS} | n/a |")
    return [*lines, ""]


def card_text(info: CardInfo) -> str:
    """README.md of an export: Hugging Face front matter, figures, columns, lineage."""
    sections = (_front_matter, _figures, _word_stats, _columns, _files, _lineage, _reproduce)
    return "\n".join(line for section in sections for line in section(info))


def _front_matter(info: CardInfo) -> list[str]:
    """The `datasets` config, the title, what the data is and where it comes from."""
    rel = f"release {info.release}" if info.release is not None else "not a recorded release"
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        '    path: "part-*.parquet"',
        "---",
        "",
        f"# {info.table} v{info.version}",
        "",
        "Knowledge-augmented dense image captions built the BLIP3-KALE way by kale-spark: "
        "a VLM's dense caption fused with the image's web alt-text by an LLM (stage 1), "
        "or written by the distilled student (stage 2), with leaked-prompt sentences removed.",
        "",
        f"- Delta table `{info.database}.{info.table}` at version {info.version} ({rel})",
    ]
    if info.published_at:
        lines.append(f"- published {info.published_at}")
    if info.run_id:
        lines.append(f"- publish run `{info.run_id}`, config hash `{info.config_hash}`")
    return lines + [
        f"- {info.rows} rows in {len(info.shards)} Parquet shard(s)",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("parquet", data_files="part-*.parquet", split="train")',
        "```",
        "",
    ]


def _figures(info: CardInfo) -> list[str]:
    """The figures table and the caption-length histogram (image and table)."""
    lines = [
        "## Figures",
        "",
        "| figure | value |",
        "|---|---|",
        f"| rows | {info.rows} |",
        f"| mean caption words | {_fmt(info.mean_words, 1)} |",
        f"| median caption words | {_fmt(info.median_words, 1)} |",
        f"| mean knowledge retention | {_fmt(info.mean_retention)} |",
        f"| mean novel share | {_fmt(info.mean_novel_share)} |",
        f"| rows with sentences removed | {info.rows_with_removals} |",
        f"| sentences removed | {info.sentences_removed} |",
    ]
    lines += [f"| rows from {stage} | {n} |" for stage, n in sorted(info.rows_by_stage.items())]
    lines += [f"| rows by `{model}` | {n} |" for model, n in sorted(info.rows_by_model.items())]
    lines += ["", f"![caption length histogram]({info.histogram_file})", ""]
    if info.histogram:
        n_bins = len(info.histogram)
        lines += ["| words | captions |", "|---|---|"]
        lines += [f"| {bin_label(i, n_bins=n_bins)} | {c} |" for i, c in enumerate(info.histogram)]
        lines.append("")
    return lines


def _word_stats(info: CardInfo) -> list[str]:
    return word_stats_section(info.word_stats) if info.word_stats else []


def _columns(info: CardInfo) -> list[str]:
    lines = ["## Columns", "", "| column | type | meaning |", "|---|---|---|"]
    return lines + [f"| `{c}` | {t} | {COLUMN_DOCS.get(c, '')} |" for c, t in info.columns]


def _files(info: CardInfo) -> list[str]:
    lines = ["", "## Files", "", "| file | rows |", "|---|---|"]
    lines += [f"| {f} | {n} |" for f, n in info.shards]
    if info.webdataset_shards:
        lines += [
            "",
            "WebDataset tars (`<uid>.jpg|png|webp`, `<uid>.txt` caption, `<uid>.json` row):",
            "",
            "| file | samples |",
            "|---|---|",
        ]
        lines += [f"| {f} | {n} |" for f, n in info.webdataset_shards]
    return lines


def _lineage(info: CardInfo) -> list[str]:
    if not info.source_versions:
        return []
    lines = ["", "## Lineage", "", "| source table | version |", "|---|---|"]
    return lines + [f"| {t} | {v} |" for t, v in sorted(info.source_versions.items())]


def _reproduce(info: CardInfo) -> list[str]:
    return [
        "",
        "Reproduce these files exactly with "
        f"`kale export --version {info.version}`; query the rows with "
        f"`SELECT * FROM {info.database}.{info.table} VERSION AS OF {info.version}`.",
        "",
    ]
