"""Human-readable summaries of the lake: rows and versions per table, recent runs."""

from __future__ import annotations

from kale_spark import schema
from kale_spark.config import Config
from kale_spark.curation import quality
from kale_spark.lake.tables import Lake
from kale_spark.release import stats as caption_stats


def lake_summary(spark, cfg: Config) -> str:
    lake = Lake(spark, cfg.lake)
    names = lake.register_all()
    lines = [f"lake: {lake.root}  (catalog database `{lake.database}`)", ""]
    tiny = [s.id for s in (cfg.caption, cfg.augment) if s.id.startswith("tiny:")]
    if tiny:
        lines += [
            f"  NOTE: {' and '.join(tiny)} are tiny random-weight models: captions come from "
            "untrained smoke-test models",
            "  (they exercise the pipeline, not caption quality; see conf/small.yaml for real "
            "models).",
            "",
        ]
    lines.append(f"  {'table':<18}{'rows':>10}{'version':>9}")
    for name in names:
        lines.append(f"  {name:<18}{lake.count(name):>10}{lake.version(name):>9}")
    if schema.QUARANTINE in names:
        reasons = (
            lake.read(schema.QUARANTINE)
            .groupBy("stage", "reason")
            .count()
            .orderBy("stage", "reason")
            .collect()
        )
        if reasons:
            lines += ["", "  quarantine by reason:"]
            lines += [f"    {r['stage']}/{r['reason']}: {r['count']}" for r in reasons]
    lines += _word_stats(lake, names)
    if schema.RUNS in names:
        runs = lake.read(schema.RUNS).orderBy("started_at").collect()[-8:]
        lines += ["", "  recent runs:"]
        for r in runs:
            counts = ", ".join(f"{k}={v}" for k, v in sorted((r["counts"] or {}).items()))
            lines.append(f"    {r['stage']:<8} {r['status']:<6} {r['duration_s']:6.1f}s  {counts}")
    lines += [
        "",
        '  try:  .venv/bin/kale sql "SELECT count(*) FROM kale.samples VERSION AS OF 1"',
        "        .venv/bin/kale history samples",
        '        .venv/bin/kale sql "SELECT kale_fuse(s.text, d.dense_caption) '
        'FROM kale.samples s JOIN kale.dense_captions d USING (uid) LIMIT 3"',
    ]
    return "\n".join(lines)


def _word_stats(lake: Lake, names: list[str]) -> list[str]:
    """Words per caption, dense caption and alt-text by stage: of the gold table's
    latest version, or of the kept filtered captions before the first publish."""
    if schema.KALE in names:
        version = lake.version(schema.KALE)
        what, df = f"kale v{version}", lake.read(schema.KALE, version=version)
    elif schema.FILTERED_CAPTIONS in names:
        what = "kept filtered_captions"
        df = lake.read(schema.FILTERED_CAPTIONS).where("NOT rejected")
    else:
        return []
    words = quality.word_stats_lines(caption_stats.word_stats(df))
    return ["", f"  {what}, {words[0]}", *[f"  {line}" for line in words[1:]]]
