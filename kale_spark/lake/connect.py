"""Spark Connect is refused, at start, with one clear message.

kale-spark needs a classic Spark session, one with a driver JVM in this process: the
lake reads Delta's transaction log through it (`Lake.txn_committed`), and the model
stages' `ChunkWriter` keeps run state on the driver that a Connect `foreachBatch`
(which runs in a separate Python process on the server) cannot carry: a
`threading.Event` binding the streaming query to the writer, and accumulators for
progress and model loads. So a Connect session (`SparkSession.builder.remote(...)`,
`SPARK_REMOTE`, Databricks serverless or shared-access clusters) fails before any work
instead of half-way through a stage. docs/faults.md.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["CONNECT_REFUSED", "ConnectNotSupported", "is_connect", "refuse_connect"]

CONNECT_REFUSED = (
    "kale-spark does not run on Spark Connect ({how}): it needs a classic Spark session "
    "with a driver JVM (the model stages keep a threading.Event and accumulators on the "
    "driver that Connect cannot carry, and the lake reads Delta's log through the JVM). "
    "Use a classic session: unset SPARK_REMOTE / spark.remote; on Databricks, a classic "
    "(single-user) cluster, not serverless or a shared-access cluster."
)
REMOTE_ENV = ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")


class ConnectNotSupported(RuntimeError):
    """The session is (or is about to be) a Spark Connect session."""


def is_connect(spark: Any) -> bool:
    """True for a Spark Connect session (pyspark.sql.connect.session.SparkSession)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def refuse_connect(spark: Any = None) -> None:
    """Raise ConnectNotSupported for a Connect session, or, with no session, when the
    environment asks pyspark for one (SPARK_REMOTE, SPARK_CONNECT_MODE_ENABLED)."""
    if spark is not None and is_connect(spark):
        raise ConnectNotSupported(CONNECT_REFUSED.format(how="a Spark Connect session"))
    if spark is None:
        for name in REMOTE_ENV:
            if os.environ.get(name):
                raise ConnectNotSupported(CONNECT_REFUSED.format(how=f"{name} is set"))
