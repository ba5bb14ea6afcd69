"""Words per caption, dense caption and alt-text, by stage, aggregated in Spark.

The Spark side of :func:`kale_spark.curation.quality.word_stats`: words are counted by
:func:`kale_spark.curation.quality.word_count` in a pandas UDF (one definition of a word),
then averaged and their exact median taken per stage and over all rows. A null
text (the dense caption of a stage-2 row) is left out of its field's figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd  # module level: the pandas UDF's type hints are resolved here

from kale_spark.curation.quality import ALL_STAGES, WORD_STATS_FIELDS, WordStats, word_count

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["word_stats"]


def _words_udf():
    from pyspark.sql import functions as F

    @F.pandas_udf("int")
    def words(texts: pd.Series) -> pd.Series:
        return pd.Series([None if t is None else word_count(t) for t in texts], dtype="Int32")

    return words


def word_stats(df: DataFrame, stage_col: str = "stage") -> list[WordStats]:
    """:class:`WordStats` per stage and field of ``df`` (stages sorted, then ``all``),
    in one Spark job. ``df`` needs ``stage_col`` and the ``WORD_STATS_FIELDS``."""
    from pyspark.sql import functions as F

    words = _words_udf()
    counted = df.select(
        F.col(stage_col).alias("stage"), *[words(F.col(c)).alias(c) for c in WORD_STATS_FIELDS]
    )
    aggs = []
    for c in WORD_STATS_FIELDS:
        aggs += [
            F.count(c).alias(f"{c}__n"),
            F.avg(c).alias(f"{c}__mean"),
            F.percentile(F.col(c), F.lit(0.5)).alias(f"{c}__median"),
        ]
    rows = counted.rollup("stage").agg(F.grouping("stage").alias("total"), *aggs).collect()
    by_stage = {ALL_STAGES if r["total"] else r["stage"]: r for r in rows}
    if len(by_stage) <= 1:
        return []  # no rows: nothing, or only an empty grand total
    out = []
    for stage in [*sorted(s for s in by_stage if s != ALL_STAGES), ALL_STAGES]:
        r = by_stage[stage]
        for c in WORD_STATS_FIELDS:
            n = int(r[f"{c}__n"])
            mean, median = r[f"{c}__mean"], r[f"{c}__median"]
            out.append(
                WordStats(
                    stage,
                    c,
                    n,
                    None if n == 0 else float(mean),
                    None if n == 0 else float(median),
                )
            )
    return out
