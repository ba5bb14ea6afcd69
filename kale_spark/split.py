"""Deterministic splits by uid hash: teacher vs student, train vs validation.

One rule, in two forms that agree bit for bit: a Spark Column expression (for stages)
and a pure-Python twin (for tests, notebooks and the training data reader).

    bucket(uid, salt) = first 8 hex digits of sha256(salt + ":" + uid), as an integer
                        in [0, 2**32)
    in_share(uid, salt, fraction)  <=>  bucket < floor(fraction * 2**32)

Integer arithmetic on both sides, so no float rounding differs between the JVM and
Python. Different salts give independent splits: the train/validation split of the
teacher's share does not correlate with the teacher/student split.

The teacher captions an ok image iff ``is_teacher(uid)``; the student captions the
rest. KALE's ratio is 100M teacher of 218M (``split.teacher_fraction`` = 0.4587).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = [
    "BUCKETS",
    "TEACHER_SALT",
    "VALIDATION_SALT",
    "bucket",
    "bucket_col",
    "in_share",
    "in_share_col",
    "is_teacher",
    "is_teacher_col",
    "teacher_only",
    "threshold",
]

BUCKETS = 2**32
HEX_DIGITS = 8
TEACHER_SALT = "kale-teacher"
VALIDATION_SALT = "kale-student-val"


def threshold(fraction: float) -> int:
    """Buckets below this number are in the share ``fraction`` (0 → none, 1 → all)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    return int(fraction * BUCKETS)


def bucket(uid: str, salt: str) -> int:
    """The uid's bucket in [0, 2**32) under ``salt`` (pure Python)."""
    digest = hashlib.sha256(f"{salt}:{uid}".encode()).hexdigest()
    return int(digest[:HEX_DIGITS], 16)


def in_share(uid: str, salt: str, fraction: float) -> bool:
    return bucket(uid, salt) < threshold(fraction)


def is_teacher(uid: str, teacher_fraction: float) -> bool:
    """Does the teacher (stage 1) caption this uid? The student captions the others."""
    return in_share(uid, TEACHER_SALT, teacher_fraction)


def bucket_col(uid: Column, salt: str) -> Column:
    """``bucket`` as a Spark Column (a bigint)."""
    from pyspark.sql import functions as F

    digest = F.sha2(F.concat(F.lit(f"{salt}:"), uid.cast("string")), 256)
    return F.conv(F.substring(digest, 1, HEX_DIGITS), 16, 10).cast("bigint")


def in_share_col(uid: Column, salt: str, fraction: float) -> Column:
    from pyspark.sql import functions as F

    return bucket_col(uid, salt) < F.lit(threshold(fraction)).cast("bigint")


def is_teacher_col(uid: Column, teacher_fraction: float) -> Column:
    """``is_teacher`` as a Spark Column: ``df.where(is_teacher_col(F.col("uid"), f))``."""
    return in_share_col(uid, TEACHER_SALT, teacher_fraction)


def teacher_only(df: DataFrame, teacher_fraction: float) -> DataFrame:
    """The rows of ``df`` (with a ``uid`` column) whose uid the teacher captions."""
    from pyspark.sql import functions as F

    return df.where(is_teacher_col(F.col("uid"), teacher_fraction))
