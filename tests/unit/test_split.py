"""The uid-hash split (pure-Python side; tests/spark/test_stage2.py checks that the Spark
expression agrees row by row)."""

from __future__ import annotations

import hashlib

import pytest

from kale_spark import split


def _expected_bucket(uid: str, salt: str) -> int:
    # The rule as documented: first 8 hex digits of sha256("<salt>:<uid>").
    return int(hashlib.sha256(f"{salt}:{uid}".encode()).hexdigest()[:8], 16)


def test_bucket_is_the_documented_hash():
    for uid in ("0" * 32, "f" * 32, "abc123"):
        assert split.bucket(uid, "kale-teacher") == _expected_bucket(uid, "kale-teacher")


def test_teacher_share_matches_the_fraction():
    uids = [hashlib.md5(str(i).encode()).hexdigest() for i in range(20000)]
    for fraction in (100 / 218, 0.5, 0.1):
        share = sum(split.is_teacher(u, fraction) for u in uids) / len(uids)
        assert abs(share - fraction) < 0.015, (fraction, share)


def test_extremes_and_monotonic():
    uids = [hashlib.md5(str(i).encode()).hexdigest() for i in range(500)]
    assert not any(split.is_teacher(u, 0.0) for u in uids)
    assert all(split.is_teacher(u, 1.0) for u in uids)
    small = {u for u in uids if split.is_teacher(u, 0.3)}
    large = {u for u in uids if split.is_teacher(u, 0.6)}
    assert small < large  # a larger teacher share only adds uids


def test_salts_are_independent():
    uids = [hashlib.md5(str(i).encode()).hexdigest() for i in range(4000)]
    teacher = {u for u in uids if split.is_teacher(u, 0.5)}
    val = {u for u in uids if split.in_share(u, split.VALIDATION_SALT, 0.5)}
    both = len(teacher & val) / len(uids)
    assert abs(both - 0.25) < 0.03


def test_threshold_rejects_bad_fractions():
    assert split.threshold(0.5) == 2**31
    with pytest.raises(ValueError):
        split.threshold(1.5)
