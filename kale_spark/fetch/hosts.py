"""Politeness per host: whose rows go together, and how hard one task may press a host.

``registered_domain`` names the party behind a host (``cdn.example.co.uk`` →
``example.co.uk``): the fetch stage partitions rows by it, so one task owns a host's
rows (a host with more than ``fetch.host_rows_per_task`` rows is salted into
``fetch.host_salt`` tasks), and :class:`HostGates` bounds what that task does to it:

- at most ``per_host_concurrency`` connections open to it at once;
- a 429/503 with ``Retry-After`` pauses its queue for the time asked; without one,
  the pause doubles with each refusal in a row (``backoff_s * 2**n``);
- after ``host_fail_limit`` connection errors or 429s in a row, its remaining rows
  end ``host_skipped`` without a request (retried by the next run).

The registered domain is computed without the public suffix list (no network, no
data file): the last two labels, or three when the last two are one of the common
multi-part suffixes below (``co.uk``, ``com.au``, ... and a few hosting suffixes under
which every customer is a separate site, ``github.io``, ``cloudfront.net``, ...).
A rarer multi-part suffix groups its sites into one "host": politer than needed,
never less. IP literals are their own host.

Pure Python; ``registered_domain_column`` is the same rule as a Spark expression
(pyspark imported inside), as ``split.py`` keeps its hash rule in both forms.
"""

from __future__ import annotations

import ipaddress
import string
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kale_spark.fetch.status import Status

MAX_PAUSE_S = 3600.0  # the longest a host's queue pauses without Retry-After

# Two-label public suffixes under which a site registers its own name (a short list
# of the common country and hosting ones, not the whole public suffix list).
MULTI_PART_SUFFIXES: frozenset[str] = frozenset(
    f"{second}.{cc}"
    for cc, seconds in {
        "uk": ("co", "org", "ac", "gov", "me", "ltd", "plc", "net"),
        "au": ("com", "net", "org", "edu", "gov", "id"),
        "nz": ("co", "org", "net", "ac", "govt"),
        "jp": ("co", "ne", "or", "ac", "go"),
        "kr": ("co", "or", "ne", "ac", "go"),
        "br": ("com", "net", "org", "gov", "edu"),
        "cn": ("com", "net", "org", "gov", "edu"),
        "in": ("co", "net", "org", "gov", "ac"),
        "za": ("co", "org", "gov", "ac"),
        "mx": ("com", "org", "gob", "edu"),
        "ar": ("com", "org", "gob", "edu"),
        "tr": ("com", "org", "gov", "edu"),
        "tw": ("com", "org", "gov", "edu"),
        "hk": ("com", "org", "gov", "edu"),
        "sg": ("com", "org", "gov", "edu"),
        "il": ("co", "org", "ac", "gov"),
        "id": ("co", "or", "ac", "go"),
        "th": ("co", "or", "ac", "go"),
        "ru": ("com", "org", "net"),
        "ua": ("com", "org", "net"),
        "pl": ("com", "org", "net"),
    }.items()
    for second in seconds
) | frozenset(
    (
        "github.io",
        "gitlab.io",
        "blogspot.com",
        "wordpress.com",
        "cloudfront.net",
        "herokuapp.com",
        "appspot.com",
        "netlify.app",
        "pages.dev",
        "vercel.app",
    )
)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def registered_domain(host: str | None) -> str:
    """The registered domain of a host name, lower-cased; "" for no host.

    >>> registered_domain("Cdn.Images.Example.co.uk"), registered_domain("a.b.example.com")
    ('example.co.uk', 'example.com')
    >>> registered_domain("127.0.0.1"), registered_domain("localhost")
    ('127.0.0.1', 'localhost')
    """
    host = (host or "").strip().lower().rstrip(".")
    if not host or _is_ip(host):
        return host
    labels = host.split(".")
    if len(labels) > 2 and ".".join(labels[-2:]) in MULTI_PART_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def host_of(url: object) -> str:
    """The registered domain of an http(s) URL's host; "" for anything else (file://,
    shards, a URL without a host): those rows open no connection."""
    if not isinstance(url, str):
        return ""
    try:
        parts = urlsplit(url.strip())
        if parts.scheme.lower() not in ("http", "https"):
            return ""
        return registered_domain(parts.hostname)
    except ValueError:
        return ""


def _ascii_lower(sql: str) -> str:
    """``sql`` with A-Z lowered: SQL's lower() maps case with ICU, whose first use costs
    about a second of CPU on a fresh JVM (measured: a 3000-row plan job 2.3 s -> 1.1 s),
    on the critical path of every fetch. ASCII is all a host can hold here:
    try_parse_url (java.net.URI) gives no host for a non-ASCII one, so such a row
    goes by uid, as a row without a host does."""
    return f"translate({sql}, '{string.ascii_uppercase}', '{string.ascii_lowercase}')"


def host_sql(url_col: str = "url") -> str:
    """The URL's host as a Spark SQL expression: lowered, without IPv6 brackets or a
    trailing dot; NULL where the URL has none."""
    parsed = _ascii_lower(f"try_parse_url(trim(`{url_col}`), 'HOST')")
    return rf"regexp_replace(regexp_replace({parsed}, '^\\[|\\]$', ''), '\\.$', '')"


def registered_domain_sql(url_col: str = "url", host_col: str | None = None) -> str:
    """``host_of`` as one Spark SQL expression over a URL column (same rule, no Python
    UDF). One string, parsed once: built from Column calls it took some 150 round trips
    to the JVM (the suffix list alone 103), a quarter second on a cold driver.

    ``host_col``: a column already holding ``host_sql(url_col)``. The rule names the
    host eight times; given as a column it is parsed and computed once per row, and
    the expression is half the size to analyse (see with_registered_domain)."""
    host = f"`{host_col}`" if host_col else host_sql(url_col)
    labels = rf"split({host}, '\\.')"
    last2 = f"concat_ws('.', slice({labels}, -2, 2))"
    last3 = f"concat_ws('.', slice({labels}, -3, 3))"
    is_ip = rf"(({host}) RLIKE '^[0-9]+(\\.[0-9]+){{3}}$' OR contains({host}, ':'))"
    suffixes = ", ".join(f"'{x}'" for x in sorted(MULTI_PART_SUFFIXES))
    domain = (
        f"CASE WHEN {is_ip} OR size({labels}) <= 2 THEN {host} "
        f"WHEN {last2} IN ({suffixes}) THEN {last3} ELSE {last2} END"
    )
    scheme = _ascii_lower(f"split(trim(`{url_col}`), ':')[0]")
    web = f"{scheme} IN ('http', 'https') AND {host} IS NOT NULL AND {host} <> ''"
    return f"CASE WHEN {web} THEN {domain} ELSE '' END"


def with_registered_domain(frame, url_col: str, out_col: str, keep: list[str]):  # DataFrames
    """``frame``'s ``keep`` columns (SQL expressions) and ``out_col``, the registered
    domain of ``url_col``, in two projections: the host first, then the rule over it.
    Spark keeps them apart (an expensive column used more than once is not inlined),
    so each URL is parsed once."""
    host = "_kale_host"
    inner = frame.selectExpr(*keep, f"{host_sql(url_col)} AS {host}")
    names = [f"`{name}`" for name in inner.columns if name != host]
    return inner.selectExpr(*names, f"{registered_domain_sql(url_col, host)} AS `{out_col}`")


def registered_domain_column(url_col: str = "url"):  # -> pyspark Column
    """``host_of`` as a Spark expression over a URL column (same rule, no Python UDF)."""
    from pyspark.sql import functions as F

    return F.expr(registered_domain_sql(url_col))


# ---------------------------------------------------------------- one task's gates


@dataclass
class Refusal:
    """Why a row gets no request to its host: a final status for the row."""

    status: str
    error: str
    http_status: int | None = None


@dataclass
class _Host:
    """One host's state in one task (guarded by HostGates' condition)."""

    open: int = 0
    paused_until: float = 0.0
    paused_by: int | None = None  # the HTTP status that asked for the pause
    refusals: int = 0  # 429/503 in a row: the exponent of the pause without Retry-After
    fail_streak: int = 0
    skipped: bool = False


@dataclass
class HostGates:
    """Per-host limits inside one Spark task, shared by its fetch threads.

    ``enter(host, left)`` waits (at most ``left`` seconds) until ``host`` is not paused
    and has a free connection slot, or says why the row gets no request;
    ``leave(host, status, http_status, retry_after)`` frees the slot and learns from
    the outcome. Rows with an empty host ("" : file://, shards) pass freely.
    """

    per_host: int
    fail_limit: int
    backoff_s: float
    hosts: dict[str, _Host] = field(default_factory=dict)
    rows: Counter = field(default_factory=Counter)  # rows per host, counted by callers
    ok: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)  # 429 responses per host
    http_429: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def for_options(cls, opts) -> HostGates:
        """The gates of one task from its FetchOptions."""
        return cls(opts.per_host_concurrency, opts.host_fail_limit, opts.backoff_s)

    def enter(self, host: str, left: float) -> Refusal | None:
        if not host:
            return None
        ends = time.monotonic() + left
        with self._cond:
            state = self.hosts.setdefault(host, _Host())
            while True:
                if state.skipped:
                    return _skipped(host, self.fail_limit)
                now = time.monotonic()
                if state.paused_until > now:
                    if state.paused_until >= ends:
                        return _paused_past_deadline(host, state, state.paused_until - now)
                    self._cond.wait(state.paused_until - now)
                    continue
                if state.open < self.per_host:
                    state.open += 1
                    return None
                if now >= ends:
                    return Refusal(Status.TIMEOUT, f"deadline exceeded (waiting for {host})")
                self._cond.wait(ends - now)

    def leave(
        self, host: str, status: str, http_status: int | None, retry_after: float | None
    ) -> None:
        if not host:
            return
        with self._cond:
            state = self.hosts[host]
            state.open -= 1
            if http_status == 429:
                self.http_429 += 1
                self.refused[host] += 1
            self._learn(state, status, http_status, retry_after)
            self._cond.notify_all()

    def _learn(
        self, state: _Host, status: str, http_status: int | None, retry_after: float | None
    ) -> None:
        refused = http_status in (429, 503) and status == Status.HTTP_ERROR
        if refused:
            state.refusals += 1
            pause = retry_after
            if pause is None:
                pause = min(self.backoff_s * 2 ** min(state.refusals - 1, 30), MAX_PAUSE_S)
            until = time.monotonic() + pause
            if until > state.paused_until:
                state.paused_until, state.paused_by = until, http_status
        elif http_status is not None:
            state.refusals = 0
        if status == Status.CONNECTION_ERROR or http_status == 429:
            state.fail_streak += 1
            state.skipped = state.skipped or state.fail_streak >= self.fail_limit
        elif status not in (Status.BLOCKED, Status.INVALID_URL, Status.TIMEOUT):
            state.fail_streak = 0  # an answer from the host (a timeout is no answer)

    def count(self, host: str, status: str) -> None:
        """Count one finished row of ``host`` (the task's per-host figures)."""
        with self._cond:
            self.rows[host] += 1
            if status == Status.OK:
                self.ok[host] += 1


def _skipped(host: str, limit: int) -> Refusal:
    return Refusal(
        Status.HOST_SKIPPED,
        f"{host} skipped for the rest of this task after {limit} connection errors "
        "or 429s in a row (retried on the next run)",
    )


def _paused_past_deadline(host: str, state: _Host, wait: float) -> Refusal:
    return Refusal(
        Status.HTTP_ERROR,
        f"{host} asked to wait {wait:.1f}s (HTTP {state.paused_by}), past this row's "
        "deadline: retried on the next run",
        state.paused_by,
    )


# ---------------------------------------------------------------- per-host figures

TOP_HOSTS = 10


def task_summary(gates: HostGates, salted: set[str], top: int = TOP_HOSTS) -> Counter:
    """What one task adds to the stage's host accumulator, bounded: its ``top`` hosts
    by rows and every salted host it holds (rows, ok, 429s each), how many other
    hosts it saw, and its 429s. A host that is not salted lives in one task only, so
    a global top-``top`` host is in its task's top ``top``: the merge is exact."""
    out: Counter = Counter(http_429=gates.http_429)
    mine = [h for h in gates.rows if h not in salted]
    out["hosts"] = len(mine)
    largest = sorted(mine, key=lambda h: (-gates.rows[h], h))[:top]
    for host in [*largest, *(h for h in gates.rows if h in salted)]:
        out[f"rows\t{host}"] += gates.rows[host]
        out[f"ok\t{host}"] += gates.ok[host]
        out[f"http_429\t{host}"] += gates.refused[host]
        if host in salted:
            out[f"salted\t{host}"] = 1
    return out


def run_figures(merged: Counter, top: int = TOP_HOSTS) -> tuple[dict[str, int], dict[str, float]]:
    """(counts, metrics) for the fetch run's ``runs`` row from the merged task summaries:
    ``hosts.seen``, ``hosts.http_429``, and per top host ``top_host.<host>.rows`` /
    ``.ok`` / ``.http_429`` (counts) and ``top_host.<host>.ok_share`` (metrics)."""
    rows = {k.split("\t", 1)[1]: n for k, n in merged.items() if k.startswith("rows\t")}
    salted = sum(1 for k in merged if k.startswith("salted\t"))
    counts = {"hosts.seen": merged["hosts"] + salted, "hosts.http_429": merged["http_429"]}
    metrics: dict[str, float] = {}
    for host in sorted(rows, key=lambda h: (-rows[h], h))[:top]:
        ok = merged[f"ok\t{host}"]
        counts[f"top_host.{host}.rows"] = rows[host]
        counts[f"top_host.{host}.ok"] = ok
        counts[f"top_host.{host}.http_429"] = merged[f"http_429\t{host}"]
        metrics[f"top_host.{host}.ok_share"] = round(ok / rows[host], 4) if rows[host] else 0.0
    return counts, metrics
