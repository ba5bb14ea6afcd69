"""Small DataFrames built on the driver, as local relations: a stage's `runs` row, a
release's `releases` row, the quarantine rows of unreadable input files, a fetch's big
hosts.

``spark.createDataFrame`` of a Python list makes an RDD of pickled rows, and its first
action is a Spark job whose Python workers convert them: 0.4-1 s on a fresh driver, on
the critical path of the stage that needs the rows (a fetch's big hosts cost 0.4-0.8 s
in the event log before its fetch job could start). From pandas, with Arrow on (every
kale session sets it), the rows become a LocalRelation in the driver: no job. Without
Arrow (a notebook's own session) pyspark converts the frame itself, as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType


def local_frame(spark: SparkSession, rows: Iterable[tuple], schema: StructType) -> DataFrame:
    """``rows`` (tuples in ``schema``'s field order) as a DataFrame of ``schema``."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=schema.fieldNames())
    return spark.createDataFrame(frame, schema=schema)
