"""Filter: caption tables → `filtered_captions` (leaked-prompt sentences removed, scored).

Reads `stage1_captions` (and `stage2_captions` once the student has written it; its
rows have no dense caption, so their `novel_share` compares with the alt-text alone and
`novel_share_basis` says so) and,
for every caption it has not seen yet, removes the sentences that leak the fusion
prompt (:func:`kale_spark.curation.clean_caption`, given the instruction actually
sent for the row: the template of its `prompt_id`, after the system turn its
`gen_params` names; each removed sentence keeps the name of the rule that removed it,
and the run counts `rule.<name>` for every rule), scores the cleaned caption
(:mod:`kale_spark.curation.quality`) and decides:

    kept       reject_reason null
    rejected   reject_reason `empty_after_cleaning` | `too_short` (< filter.min_words)

A rejected caption stays in the table with its reason; nothing vanishes. Every caption
row ends in exactly one filtered row (key: uid, stage, model, prompt_id), so

    input = already_filtered + inserted,   inserted = kept + rejected

and a rerun on the same input inserts nothing. Scores and the decision live side by
side (score, then decide): publish takes the rows with `rejected = false`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kale_spark import schema
from kale_spark.config import Config
from kale_spark.curation import RULE_NAMES, clean_caption, quality
from kale_spark.curation.injection import INJECTION_SUSPECT, injection_suspect
from kale_spark.curation.leaks import CHECKS, RULES
from kale_spark.lake.progress import Progress, counter_accumulator
from kale_spark.lake.runs import StageRun, stage_run
from kale_spark.lake.tables import Lake
from kale_spark.prompts import get_prompt
from kale_spark.release import stats as caption_stats

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

STAGE = "filter"

# Columns the pure batch function reads (and `gen_params` when present) ...
BATCH_INPUT = ("uid", "stage", "model", "prompt_id", "alt_text", "dense_caption", "caption_raw")
# ... and the columns it adds.
BATCH_OUTPUT = (
    "caption",
    "removed_sentences",
    "removal_reasons",
    "rejected",
    "reject_reason",
    quality.WORD_COUNT,
    quality.KNOWLEDGE_RETENTION,
    quality.NOVEL_SHARE,
    "novel_share_basis",
    INJECTION_SUSPECT,
)


def _prompt_template(prompt_id: str, gen_params: str | None = None) -> str | None:
    """The instruction a caption was generated from: its prompt template, after the
    system turn that ``gen_params`` names (``system_prompt_id``, see
    ``ModelSpec.lineage``), if any. None for an unknown prompt id (the structural cues
    of clean_caption still apply, only the overlap with the instruction is lost)."""
    try:
        template = get_prompt(prompt_id).template
    except KeyError:
        return None
    try:
        system_id = json.loads(gen_params or "{}").get("system_prompt_id")
        if system_id:
            return get_prompt(system_id).template + "\n" + template
    except (ValueError, AttributeError, KeyError):
        log.warning("gen_params %r: no readable system_prompt_id", gen_params)
    return template


def decide(caption: str, words: int, min_words: int) -> str | None:
    """The reject reason of a cleaned caption, or None to keep it."""
    if not caption.strip():
        return schema.REJECT_EMPTY
    if words < min_words:
        return schema.REJECT_TOO_SHORT
    return None


def filter_batch(pdf: pd.DataFrame, min_words: int, learned: bool = False) -> pd.DataFrame:
    """Clean, score and decide one pandas batch (pure; no Spark, no model).

    Takes a frame with at least :data:`BATCH_INPUT` and returns a copy with
    :data:`BATCH_OUTPUT` added. Missing caption text counts as empty. ``learned``
    (``filter.learned_leaks``): the learned leak step runs after the hand rules.
    """
    import pandas as pd

    schema.require_columns(pdf.columns, BATCH_INPUT, "filter_batch input")
    templates: dict[tuple[str, str | None], str | None] = {}
    params = pdf["gen_params"] if "gen_params" in pdf.columns else [None] * len(pdf)
    captions, removed, reasons = [], [], []
    rules = CHECKS if learned else RULES
    for raw, prompt_id, gen in zip(pdf["caption_raw"], pdf["prompt_id"], params, strict=True):
        key = (prompt_id, gen)
        if key not in templates:
            templates[key] = _prompt_template(prompt_id, gen)
            if templates[key] is None:
                log.warning("unknown prompt id %r: n-gram overlap check is off", prompt_id)
        cleaned = clean_caption(raw if isinstance(raw, str) else "", templates[key], rules)
        captions.append(cleaned.text.strip())
        removed.append(list(cleaned.removed))
        reasons.append(list(cleaned.reasons))
    out = pdf.copy()
    out["caption"] = pd.Series(captions, index=pdf.index, dtype="object")
    out["removed_sentences"] = pd.Series(removed, index=pdf.index, dtype="object")
    out["removal_reasons"] = pd.Series(reasons, index=pdf.index, dtype="object")
    out = quality.score_frame(out, "caption", "dense_caption", "alt_text")
    # Stage-2 rows have no dense caption: their novel_share compares with the alt-text only.
    out["novel_share_basis"] = pd.Series(
        [
            schema.BASIS_ALT_AND_DENSE if isinstance(d, str) and d else schema.BASIS_ALT_ONLY
            for d in pdf["dense_caption"]
        ],
        index=pdf.index,
        dtype="object",
    )
    verdicts = [
        decide(c, int(w), min_words)
        for c, w in zip(out["caption"], out[quality.WORD_COUNT], strict=True)
    ]
    out[INJECTION_SUSPECT] = pd.Series(
        [injection_suspect(c, a) for c, a in zip(out["caption"], pdf["alt_text"], strict=True)],
        index=pdf.index,
        dtype="bool",
    )
    out["reject_reason"] = pd.Series(verdicts, index=pdf.index, dtype="object")
    out["rejected"] = out["reject_reason"].notna()
    return out


def _caption_sources(lake: Lake, run: StageRun) -> DataFrame | None:
    """The caption tables that exist, pinned to their current versions, with `stage`."""
    from pyspark.sql import functions as F

    frames = []
    for stage_name, table in schema.CAPTION_STAGES.items():
        if not lake.exists(table):
            log.info("filter: no %s table yet; skipping it", table)
            continue
        version = lake.version(table)
        run.input_versions[table] = version
        upstream = F.coalesce(F.col("source_versions"), F.create_map().cast("map<string,bigint>"))
        frames.append(
            lake.read(table, version=version).select(
                "uid",
                F.lit(stage_name).alias("stage"),
                "alt_text",
                "dense_caption",
                "dense_model",
                "caption_raw",
                "model",
                "model_revision",
                "prompt_id",
                "gen_params",
                F.col("run_id").alias("caption_run_id"),
                F.map_concat(
                    upstream, F.create_map(F.lit(table), F.lit(version).cast("bigint"))
                ).alias("source_versions"),
            )
        )
    if not frames:
        return None
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out


def filtered_rows(
    source: DataFrame, min_words: int, run_id: str, progress: Any = None, learned: bool = False
) -> DataFrame:
    """`source` (caption rows with `stage`) cleaned, scored and decided, as
    FILTERED_CAPTIONS_SCHEMA rows. `progress`: a Counter accumulator that each
    batch adds its kept/rejected counts to; `learned`: see :func:`filter_batch`."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructField, StructType

    # The map column travels through pandas as JSON (Arrow maps round-trip poorly).
    staged = source.withColumn("source_versions_json", F.to_json("source_versions")).drop(
        "source_versions"
    )
    target = {f.name: f for f in schema.FILTERED_CAPTIONS_SCHEMA.fields}
    out_schema = StructType(
        [
            *staged.schema.fields,
            *[StructField(name, target[name].dataType, True) for name in BATCH_OUTPUT],
        ]
    )
    names = out_schema.fieldNames()

    def apply(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from collections import Counter

        for pdf in batches:
            out = filter_batch(pdf, min_words, learned)[names]
            if progress is not None:
                rejected = int(out["rejected"].sum())
                progress.add(Counter(kept=len(out) - rejected, rejected=rejected))
            yield out

    result = staged.mapInPandas(apply, out_schema)
    columns = []
    for name, field in target.items():
        if name == "source_versions":
            col = F.from_json("source_versions_json", field.dataType)
        elif name == "run_id":
            col = F.lit(run_id)
        elif name == "created_at":
            col = F.current_timestamp()
        else:
            col = F.col(name).cast(field.dataType)
        columns.append(col.alias(name))
    return result.select(*columns)


def filter_stats(df: DataFrame, run_id: str) -> tuple[dict[str, float], dict[str, int]]:
    """Figures of a `filtered_captions` version in two Spark jobs: whole-table stats,
    and this run's counts: rejects by reason, and `rule.<name>` for every leak rule (the
    sentences, labels or markup it removed in this run, 0 when it fired on none), so a
    release shows which rules fired how often."""
    from pyspark.sql import functions as F

    kept = ~F.col("rejected")
    this_run = (F.col("run_id") == run_id).alias("this_run")
    groups = (
        df.groupBy(this_run, "reject_reason")
        .agg(
            F.count("*").alias("rows"),
            F.sum(F.when(kept, F.col("word_count"))).alias("words"),
            F.sum(F.when(kept, F.col("knowledge_retention"))).alias("retention"),
            F.count(F.when(kept, F.col("knowledge_retention"))).alias("with_retention"),
            F.sum(F.when(kept, F.col("novel_share"))).alias("novel"),
            F.sum((F.size("removed_sentences") > 0).cast("long")).alias("with_removals"),
        )
        .collect()
    )
    removed = (
        df.select(this_run, F.explode("removal_reasons").alias("reason"))
        .groupBy("this_run", "reason")
        .count()
        .collect()
    )
    rows = sum(g["rows"] for g in groups)
    n_kept = sum(g["rows"] for g in groups if g["reject_reason"] is None)
    n_ret = sum(g["with_retention"] for g in groups)

    def mean(total: float | None, n: int) -> float:
        return float(total or 0) / n if n else float("nan")

    stats: dict[str, float] = {
        "rows": rows,
        "rejected": rows - n_kept,
        "share_rejected": (rows - n_kept) / rows if rows else 0.0,
        "rows_with_removals": sum(g["with_removals"] or 0 for g in groups),
        "mean_words_kept": mean(sum(g["words"] or 0 for g in groups), n_kept),
        "mean_retention_kept": mean(sum(g["retention"] or 0 for g in groups), n_ret),
        "mean_novel_share_kept": mean(sum(g["novel"] or 0 for g in groups), n_kept),
    }
    for r in removed:
        stats[f"rule.{r['reason']}"] = stats.get(f"rule.{r['reason']}", 0) + r["count"]
    counts: dict[str, int] = {"kept": 0, "rejected": 0, **{f"rule.{n}": 0 for n in RULE_NAMES}}
    for g in groups:
        if not g["this_run"]:
            continue
        if g["reject_reason"] is None:
            counts["kept"] += g["rows"]
        else:
            counts["rejected"] += g["rows"]
            counts[f"rejected.{g['reject_reason']}"] = g["rows"]
    for r in removed:
        if r["this_run"]:
            counts[f"rule.{r['reason']}"] = r["count"]
    return stats, dict(sorted(counts.items()))


def run(spark: SparkSession, cfg: Config) -> StageRun:
    """Filter every caption not yet in `filtered_captions`."""

    lake = Lake(spark, cfg.lake)
    with stage_run(lake, cfg, STAGE) as run:
        lake.ensure_table(schema.FILTERED_CAPTIONS, schema.FILTERED_CAPTIONS_SCHEMA)
        run.input_versions[schema.FILTERED_CAPTIONS] = lake.version(schema.FILTERED_CAPTIONS)
        source = _caption_sources(lake, run)
        if source is None:
            run.counts.update(input=0, inserted=0, already_filtered=0)
            run.notes.append("no caption tables yet (run caption and augment first)")
            return run

        key = list(schema.FILTERED_KEY)
        done = lake.read(schema.FILTERED_CAPTIONS).select(*key)
        todo = source.join(done, key, "left_anti")
        total = source.count()
        acc = counter_accumulator(spark)
        progress = Progress(STAGE, interval_s=cfg.progress.interval_s, poll=lambda: acc.value)
        with progress:
            progress.set_total(todo.count())
            written = lake.insert_new(
                schema.FILTERED_CAPTIONS,
                filtered_rows(
                    todo,
                    cfg.filter.min_words,
                    run.run_id,
                    progress=acc,
                    learned=cfg.filter.learned_leaks,
                ),
                key,
                run.commit(),
            )
        run.counts.update(progress.counts())
        run.metrics.update(progress.metrics())
        run.output_versions[schema.FILTERED_CAPTIONS] = written.version

        table = lake.read(schema.FILTERED_CAPTIONS, version=written.version)
        stats, counts = filter_stats(table, run.run_id)
        run.counts.update(
            input=total,
            already_filtered=total - written.rows_inserted,
            inserted=written.rows_inserted,
            **counts,
        )
        removed = {k.split(".", 1)[1]: v for k, v in stats.items() if k.startswith("rule.")}
        run.notes += [
            f"input {total} = already filtered {total - written.rows_inserted} "
            f"+ inserted {written.rows_inserted}",
            f"table: {stats['rows']} rows, {stats['share_rejected']:.1%} rejected, "
            f"{stats['rows_with_removals']} with sentences removed; kept captions: "
            f"mean {stats['mean_words_kept']:.1f} words, "
            f"knowledge retention {stats['mean_retention_kept']:.2f}, "
            f"novel share {stats['mean_novel_share_kept']:.2f}",
            "table sentences removed by rule: "
            + (", ".join(f"{k}={v}" for k, v in sorted(removed.items())) or "none"),
        ]
        words = quality.word_stats_lines(caption_stats.word_stats(table.where("NOT rejected")))
        run.notes += [f"kept captions, {words[0]}", *words[1:]]
    return run
