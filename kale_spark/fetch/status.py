"""The outcome of one ``images`` row: its ``Status``, its error text, and the one
retry rule, in a Python form (``is_retryable``, used within a run) and a Spark form
(``retryable_condition``, used to pick the rows a rerun fetches again).

Pure: pyspark is imported only inside ``retryable_condition``.
"""

from __future__ import annotations


class Status:
    """Status strings of the ``images`` table, one per row."""

    OK = "ok"
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    DECODE_ERROR = "decode_error"
    BLOCKED = "blocked"
    OPTED_OUT = "opted_out"
    HASH_MISMATCH = "hash_mismatch"
    INVALID_URL = "invalid_url"
    NOT_FOUND_IN_SHARDS = "not_found_in_shards"
    HOST_SKIPPED = "host_skipped"  # its host kept failing in this task: no request sent

    ALL: frozenset[str] = frozenset(
        {
            OK,
            HTTP_ERROR,
            TIMEOUT,
            CONNECTION_ERROR,
            TOO_MANY_REDIRECTS,
            TOO_LARGE,
            NOT_AN_IMAGE,
            DECODE_ERROR,
            BLOCKED,
            OPTED_OUT,
            HASH_MISMATCH,
            INVALID_URL,
            NOT_FOUND_IN_SHARDS,
            HOST_SKIPPED,
        }
    )


# The one retry policy: within a run (client.fetch_http) and on a rerun (the fetch
# stage's candidates, through retryable_condition below).
# A skipped host is tried again by the next run (never again within the task).
RETRYABLE_STATUSES: tuple[str, ...] = (
    Status.TIMEOUT,
    Status.CONNECTION_ERROR,
    Status.HOST_SKIPPED,
)
RETRYABLE_HTTP_CODES: tuple[int, ...] = (429,)  # besides every 5xx
RETRYABLE_HTTP_RANGE: tuple[int, int] = (500, 599)


def is_retryable(status: str, http_status: int | None = None) -> bool:
    """Whether a row with this outcome is worth fetching again, in-run and on a rerun.

    Timeouts, connection errors, skipped hosts, and HTTP 5xx / 429 are; everything else
    (4xx, not an image, blocked, opted out, ...) is a permanent answer.
    """
    if status in RETRYABLE_STATUSES:
        return True
    if status == Status.HTTP_ERROR and http_status is not None:
        low, high = RETRYABLE_HTTP_RANGE
        return http_status in RETRYABLE_HTTP_CODES or low <= http_status <= high
    return False


MAX_ERROR_CHARS = 500


def cut_error(text: str | None) -> str | None:
    """An ``error`` value cut to MAX_ERROR_CHARS characters (None stays None)."""
    if text is None or len(text) <= MAX_ERROR_CHARS:
        return text
    return text[: MAX_ERROR_CHARS - 3] + "..."


def retryable_condition():  # -> pyspark Column
    """``is_retryable`` as a Spark condition on (status, http_status): the same rule."""
    from pyspark.sql import functions as F

    low, high = RETRYABLE_HTTP_RANGE
    code = F.col("http_status")
    return F.col("status").isin(*RETRYABLE_STATUSES) | (
        (F.col("status") == Status.HTTP_ERROR)
        & code.isNotNull()
        & (code.isin(*RETRYABLE_HTTP_CODES) | code.between(low, high))
    )
