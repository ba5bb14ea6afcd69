"""Politeness per host (fetch/hosts.py) against the real local server: the connection
bound within a task, the pause a host asks for, skipping a failing host, and the
bounded per-host figures. Two host names reach the server: `localhost` and `127.0.0.1`
(each its own registered domain; loopback allowed as in the other fetch tests)."""

from __future__ import annotations

import socket
from collections import Counter

import pandas as pd
import pytest

from kale_spark.fetch.client import retry_after_s
from kale_spark.fetch.hosts import (
    HostGates,
    host_of,
    registered_domain,
    run_figures,
    task_summary,
)
from kale_spark.fetch.options import FetchStageOptions, ImageOptions
from kale_spark.fetch.rows import process_batch, process_partition
from kale_spark.fetch.status import Status

LOOP = dict(
    allow_networks=("127.0.0.0/8",),
    connect_timeout_s=5.0,
    read_timeout_s=5.0,
    backoff_s=0.01,
    image=ImageOptions(resolution=16),
)


def _opts(**kw) -> FetchStageOptions:
    return FetchStageOptions(**{**LOOP, **kw})


def _frame(urls: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"uid": [f"u{i:05d}" for i in range(len(urls))], "url": urls})


def _on(server, host: str, path: str) -> str:
    return f"http://{host}:{server.port}{path}"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("images.example.com", "example.com"),
        ("A.B.Example.COM.", "example.com"),
        ("cdn.shop.example.co.uk", "example.co.uk"),
        ("www.abc.net.au", "abc.net.au"),
        ("i0.wp.com", "wp.com"),
        ("someone.github.io", "someone.github.io"),
        ("d1234.cloudfront.net", "d1234.cloudfront.net"),
        ("co.uk", "co.uk"),
        ("localhost", "localhost"),
        ("10.1.2.3", "10.1.2.3"),
        ("::1", "::1"),
        ("", ""),
    ],
)
def test_registered_domain(host: str, expected: str) -> None:
    assert registered_domain(host) == expected


def test_host_of_urls() -> None:
    assert host_of("https://img.example.co.uk:8443/a.jpg?x=1") == "example.co.uk"
    assert host_of("http://[::1]:80/x") == "::1"
    assert host_of("file:///data/a.jpg") == ""
    assert host_of("http://[bad/x") == ""
    assert host_of(None) == ""


def test_retry_after_values() -> None:
    assert retry_after_s("2") == 2.0
    assert retry_after_s(" 120 ") == 120.0
    assert retry_after_s("99999") == 3600.0  # capped
    assert retry_after_s("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_s("soon") is None
    assert retry_after_s(None) is None


@pytest.fixture(scope="module")
def tiny_jpeg(image_bytes) -> bytes:
    return image_bytes("JPEG", size=(8, 8))


def test_one_task_never_opens_more_than_per_host_concurrency(
    http_server, route_cls, tiny_jpeg
) -> None:
    """2000 URLs on one host through one task's 32 threads: at most 4 at once there,
    while the task's other host is not held back by it."""
    http_server.add("/bound/a.jpg", route_cls(body=tiny_jpeg, delay_s=0.002))
    urls = [_on(http_server, "localhost", f"/bound/a.jpg?n={i}") for i in range(2000)]
    urls += [_on(http_server, "127.0.0.1", f"/bound/a.jpg?m={i}") for i in range(100)]
    http_server.reset_peaks()
    opts = _opts(concurrency=32, per_host_concurrency=4)
    frames = list(process_partition(iter([(_frame(urls), None)]), opts, "run-h", False, 500))
    out = pd.concat(frames)
    assert Counter(out["status"]) == {Status.OK: 2100}
    assert 2 <= http_server.peak_for("localhost") <= 4  # 28 threads wait, 4 fetch
    assert http_server.peak_for("127.0.0.1") <= 4


def test_retry_after_pauses_the_host_and_rows_finish_in_their_deadline(
    http_server, route_cls, tiny_jpeg
) -> None:
    """The first request gets 429 + Retry-After: 2; the host's queue pauses 2 s (no
    request reaches it meanwhile) and every row ends ok within its 15 s deadline."""
    http_server.add(
        "/ra/a.jpg",
        route_cls(body=tiny_jpeg, fail_first=1, fail_status=429, fail_headers={"Retry-After": "2"}),
    )
    urls = [_on(http_server, "localhost", f"/ra/a.jpg?n={i}") for i in range(12)]
    opts = _opts(concurrency=8, per_host_concurrency=1, deadline_s=15.0, retries=2)
    out = process_batch(_frame(urls), opts, "run-ra")
    assert list(out["status"]) == [Status.OK] * 12
    assert sorted(out["attempts"]) == [1] * 11 + [2]
    answers = [a for a in http_server.answers if a[0] == "/ra/a.jpg"]
    (refused,) = [a for a in answers if a[1] == 429]
    # The pause runs from the client's receipt of the 429, which follows the server's
    # start of it (refused[2]); the server's end (refused[3]) is stamped after the write
    # and, on a busy machine, can fall after the client's receipt.
    later = [start for _p, _s, start, _e in answers if start > refused[2]]
    assert len(later) == 12 and min(later) >= refused[2] + 2.0


def test_retry_after_past_the_deadline_ends_rows_http_error_for_the_next_run(
    http_server, route_cls, tiny_jpeg
) -> None:
    http_server.add(
        "/ra-long/a.jpg",
        route_cls(
            body=tiny_jpeg, fail_first=1, fail_status=503, fail_headers={"Retry-After": "120"}
        ),
    )
    urls = [_on(http_server, "localhost", f"/ra-long/a.jpg?n={i}") for i in range(6)]
    opts = _opts(concurrency=4, per_host_concurrency=1, deadline_s=5.0)
    out = process_batch(_frame(urls), opts, "run-ral")
    assert list(out["status"]) == [Status.HTTP_ERROR] * 6
    assert list(out["http_status"]) == [503] * 6  # retryable: the next run tries again
    assert all("retried on the next run" in e for e in out["error"])
    assert http_server.requests_to("/ra-long/a.jpg") == 1  # the pause held every other row


def test_a_host_that_keeps_failing_is_skipped(http_server, route_cls, tiny_jpeg) -> None:
    """`localhost` answers 429 (no Retry-After) every time: after host_fail_limit 429s in
    a row its other rows end host_skipped with no request; `127.0.0.1` is unaffected."""
    http_server.add("/skip/busy.jpg", route_cls(body=b"", status=429))
    http_server.add("/skip/ok.jpg", route_cls(body=tiny_jpeg))
    urls = [_on(http_server, "localhost", f"/skip/busy.jpg?n={i}") for i in range(20)]
    urls += [_on(http_server, "127.0.0.1", f"/skip/ok.jpg?n={i}") for i in range(5)]
    opts = _opts(concurrency=8, per_host_concurrency=1, host_fail_limit=3, retries=0)
    out = process_batch(_frame(urls), opts, "run-skip")
    statuses = Counter(out["status"])
    assert statuses == {Status.HTTP_ERROR: 3, Status.HOST_SKIPPED: 17, Status.OK: 5}
    assert http_server.requests_to("/skip/busy.jpg") == 3
    skipped = out[out["status"] == Status.HOST_SKIPPED]
    assert set(skipped["attempts"]) == {0}
    assert all("localhost skipped" in e for e in skipped["error"])


def test_connection_errors_skip_a_host_too() -> None:
    with socket.socket() as s:  # a port with nothing listening: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    urls = [f"http://localhost:{port}/x{i}.jpg" for i in range(10)]
    opts = _opts(concurrency=4, per_host_concurrency=1, host_fail_limit=2, retries=0)
    out = process_batch(_frame(urls), opts, "run-refused")
    assert Counter(out["status"]) == {Status.CONNECTION_ERROR: 2, Status.HOST_SKIPPED: 8}


def test_task_summaries_merge_to_the_exact_top_hosts() -> None:
    """Each task sends its top hosts and its salted hosts only; the merge equals the
    figures of all rows together (expected values counted here by hand)."""
    a, b = HostGates(4, 10, 0.1), HostGates(4, 10, 0.1)
    for host, n, ok in [("big.com", 30, 20), ("x.org", 5, 5), ("y.org", 1, 0)]:
        for i in range(n):
            a.count(host, Status.OK if i < ok else Status.HTTP_ERROR)
    for host, n, ok in [("big.com", 10, 10), ("z.net", 7, 7)]:
        for i in range(n):
            b.count(host, Status.OK if i < ok else Status.HTTP_ERROR)
    b.http_429, b.refused["z.net"] = 2, 2
    merged = task_summary(a, {"big.com"}, top=2) + task_summary(b, {"big.com"}, top=2)
    counts, metrics = run_figures(merged, top=2)
    assert counts["hosts.seen"] == 4 and counts["hosts.http_429"] == 2
    assert {k for k in counts if k.startswith("top_host.")} == {
        f"top_host.{h}.{f}" for h in ("big.com", "z.net") for f in ("rows", "ok", "http_429")
    }
    assert counts["top_host.big.com.rows"] == 40 and counts["top_host.big.com.ok"] == 30
    assert counts["top_host.z.net.http_429"] == 2
    assert metrics == {"top_host.big.com.ok_share": 0.75, "top_host.z.net.ok_share": 1.0}


def test_without_retry_after_the_pause_doubles_per_refusal_in_a_row() -> None:
    """The host's pause, read back through the refusal a short-deadline row gets."""
    gates = HostGates(per_host=4, fail_limit=100, backoff_s=10.0)

    def answer(status: str, http_status: int | None, retry_after: float | None = None) -> None:
        assert gates.enter("h.com", left=1000.0) is None
        gates.leave("h.com", status, http_status, retry_after)

    def asked_wait() -> str:
        refusal = gates.enter("h.com", left=1.0)
        assert refusal is not None and refusal.status == Status.HTTP_ERROR
        return refusal.error.split("wait ", 1)[1].split("s ", 1)[0]

    answer(Status.HTTP_ERROR, 429)
    assert asked_wait() == "10.0"
    gates.hosts["h.com"].paused_until = 0.0  # as if the pause were over
    answer(Status.HTTP_ERROR, 503)
    assert asked_wait() == "20.0"  # the second refusal in a row: twice as long
    gates.hosts["h.com"].paused_until = 0.0
    answer(Status.OK, 200)  # an answer resets the doubling
    answer(Status.HTTP_ERROR, 429)
    assert asked_wait() == "10.0"
    gates.hosts["h.com"].paused_until = 0.0
    answer(Status.HTTP_ERROR, 429, retry_after=3.0)  # the host's own figure wins
    assert asked_wait() == "3.0"
    assert gates.http_429 == 3 and gates.refused["h.com"] == 3
