"""Fetch image bytes over http(s) and file:// URLs, safely, with bounded concurrency.

Built on the standard library (``http.client``, ``socket``, ``ssl``) so that the
network-safety checks hold for every byte sent:

- The host of every URL, the first and every redirect hop, is resolved once and
  each resolved address is checked against the blocked ranges (loopback,
  private, link-local including the cloud metadata address 169.254.169.254,
  multicast, unspecified, reserved, other non-global). A blocked hop returns
  status ``blocked`` and no request is sent.
- The connection goes to the address that was checked, not to a second DNS
  answer (no DNS rebinding); https keeps SNI and certificate/hostname
  verification against the URL's host name.
- Redirects are followed here, hop by hop, up to ``max_redirects``.
- Bodies are streamed and cut off at ``max_bytes`` (status ``too_large``).
- A per-row deadline bounds the whole fetch: every attempt, hop and read.

Nothing in this module raises for a bad URL or a bad server: every outcome is a
:class:`FetchResult` with a status from :class:`kale_spark.images.Status`.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import logging
import os
import random
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import url2pathname

from kale_spark.images import Status

logger = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "kale-spark/0.1 (+https://github.com/kale-spark)"
OPT_OUT_DIRECTIVES = frozenset({"noai", "noimageai"})
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class FetchOptions:
    """How image bytes are fetched.

    connect_timeout_s / read_timeout_s: socket timeouts for connecting and for
        each read. deadline_s: wall-clock budget of one row, all attempts,
        redirects and reads included (status ``timeout`` when exceeded).
    retries: extra attempts after a timeout, connection error or HTTP 5xx
        (never after a 4xx); backoff_s * 2**n seconds apart, n = 0, 1, ...
    max_redirects: redirect hops followed before ``too_many_redirects``.
    max_bytes: body size cap, enforced while streaming (``too_large``).
    user_agent: sent with every request; its first token (before "/") is the
        name matched by user-agent-scoped ``X-Robots-Tag`` directives.
    respect_opt_out: skip responses whose ``X-Robots-Tag`` says ``noai`` or
        ``noimageai`` (status ``opted_out``), as img2dataset does.
    allow_networks: CIDRs exempt from the network-safety block, e.g.
        ("127.0.0.0/8",) for a local test server. Empty by default: loopback,
        private, link-local, multicast, reserved hosts are refused.
    allow_file_urls: accept file:// URLs. True by default because the local
        profile's generated DataComp sample points at local files; turn it off
        when URLs come from untrusted metadata on a shared cluster.
    concurrency: fetch threads per Spark task.
    """

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 20.0
    deadline_s: float = 60.0
    retries: int = 2
    backoff_s: float = 0.5
    max_redirects: int = 5
    max_bytes: int = 32 * 1024 * 1024
    user_agent: str = DEFAULT_USER_AGENT
    respect_opt_out: bool = True
    allow_networks: tuple[str, ...] = ()
    allow_file_urls: bool = True
    concurrency: int = 16

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "read_timeout_s", "deadline_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if (
            isinstance(self.backoff_s, bool)
            or not isinstance(self.backoff_s, int | float)
            or self.backoff_s < 0
        ):
            raise ValueError(f"backoff_s must be a number >= 0, got {self.backoff_s!r}")
        for name, low in (
            ("retries", 0),
            ("max_redirects", 0),
            ("max_bytes", 1),
            ("concurrency", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if not isinstance(self.user_agent, str) or not self.user_agent.strip():
            raise ValueError(f"user_agent must be a non-empty string, got {self.user_agent!r}")
        if any(c in self.user_agent for c in "\r\n"):
            raise ValueError("user_agent must not contain line breaks")
        for name in ("respect_opt_out", "allow_file_urls"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        networks = self.allow_networks
        if isinstance(networks, str) or not isinstance(networks, tuple | list):
            raise ValueError(f"allow_networks must be a tuple of CIDR strings, got {networks!r}")
        for cidr in networks:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"allow_networks: invalid CIDR {cidr!r}: {exc}") from None
        object.__setattr__(self, "allow_networks", tuple(networks))

    @property
    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        return _parse_networks(self.allow_networks)


@functools.lru_cache(maxsize=64)
def _parse_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


@dataclass(frozen=True)
class FetchResult:
    """Outcome of fetching one URL; ``data`` is set only when status is ok."""

    status: str
    error: str | None = None
    data: bytes | None = None
    http_status: int | None = None
    attempts: int = 0
    source: str = "http"
    final_url: str | None = None


# ---------------------------------------------------------------- safety checks


def blocked_reason(ip: IPAddress, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """Why ``ip`` may not be contacted, or None if it may.

    Addresses inside one of ``allowed`` are always permitted.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
    for net in allowed:
        if ip.version == net.version and ip in net:
            return None
    checks = (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("not globally routable", not ip.is_global),
    )
    for name, hit in checks:
        if hit:
            return f"{name} address {ip}"
    return None


class _Outcome(Exception):
    """Internal: ends one attempt with a final status."""

    def __init__(
        self,
        status: str,
        error: str,
        http_status: int | None = None,
        *,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.http_status = http_status
        self.retryable = retryable  # None: decided by status (see _should_retry)
        self.requested = True  # whether this attempt sent any request


def _resolve_checked(host: str, port: int, opts: FetchOptions) -> list[tuple[int, str]]:
    """Resolve ``host`` and check every address; (family, ip) pairs to connect to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        # A name that does not exist will not exist on the next attempt either.
        permanent = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5))
        raise _Outcome(
            Status.CONNECTION_ERROR, f"dns: {host}: {exc}", retryable=not permanent
        ) from None
    except (UnicodeError, ValueError) as exc:
        raise _Outcome(Status.INVALID_URL, f"bad host {host!r}: {exc}") from None
    addresses: list[tuple[int, str]] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        ip_text = sockaddr[0].split("%", 1)[0]
        ip = ipaddress.ip_address(ip_text)
        reason = blocked_reason(ip, opts.allowed_networks)
        if reason is not None:
            raise _Outcome(Status.BLOCKED, f"{host} resolves to {reason}")
        if (family, sockaddr[0]) not in addresses:
            addresses.append((family, sockaddr[0]))
    if not addresses:
        raise _Outcome(Status.CONNECTION_ERROR, f"dns: {host}: no addresses")
    return addresses


# ---------------------------------------------------------------- connections


def _connect(addresses: list[tuple[int, str]], port: int, timeout: float) -> socket.socket:
    last: OSError | None = None
    for family, ip in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect((ip, port))
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    assert last is not None
    raise last


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTPConnection that connects to pre-checked addresses, not a fresh DNS answer."""

    def __init__(
        self, host: str, port: int, addresses: list[tuple[int, str]], connect_timeout: float
    ) -> None:
        super().__init__(host, port, timeout=connect_timeout)
        self._addresses = addresses
        self._connect_timeout = connect_timeout

    def connect(self) -> None:
        self.sock = _connect(self._addresses, self.port, self._connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """TLS over a pinned address; SNI and certificate checks use the URL's host name."""

    default_port = 443

    def __init__(
        self, host: str, port: int, addresses: list[tuple[int, str]], connect_timeout: float
    ) -> None:
        super().__init__(host, port, addresses, connect_timeout)
        self._context = _ssl_context()

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


_SSL_LOCK = threading.Lock()
_SSL_CONTEXT: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    global _SSL_CONTEXT
    with _SSL_LOCK:
        if _SSL_CONTEXT is None:
            _SSL_CONTEXT = ssl.create_default_context()
        return _SSL_CONTEXT


# ---------------------------------------------------------------- opt-out


def opted_out(header_values: Iterable[str], user_agent: str) -> bool:
    """Whether ``X-Robots-Tag`` values forbid AI use for this user agent.

    Directives are comma separated; a ``name: directive`` form applies only to
    the user agent whose first token is ``name`` (like img2dataset).
    """
    our_token = user_agent.split("/", 1)[0].strip().lower()
    for value in header_values:
        scope: str | None = None
        for part in value.lower().split(","):
            part = part.strip()
            if ":" in part:
                name, _, rest = part.partition(":")
                name, rest = name.strip(), rest.strip()
                # "unavailable_after: <date>" is a directive with a value, not a scope.
                if name not in (
                    "unavailable_after",
                    "max-snippet",
                    "max-image-preview",
                    "max-video-preview",
                ):
                    scope, part = name, rest
            if (scope is None or scope == our_token) and part in OPT_OUT_DIRECTIVES:
                return True
    return False


# ---------------------------------------------------------------- fetching


def _remaining(deadline: float) -> float:
    return deadline - time.monotonic()


def _timeout_for(limit: float, deadline: float) -> float:
    left = _remaining(deadline)
    if left <= 0:
        raise _Outcome(Status.TIMEOUT, "deadline exceeded")
    return min(limit, left)


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


def _split_http_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of an http(s) URL, or _Outcome(invalid_url)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _Outcome(Status.INVALID_URL, f"{exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _Outcome(Status.INVALID_URL, f"unsupported scheme {scheme!r}")
    host = parts.hostname
    if not host:
        raise _Outcome(Status.INVALID_URL, "no host")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise _Outcome(Status.INVALID_URL, "control character or space in URL")
    port = port or (443 if scheme == "https" else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return scheme, host, port, target


def _read_body(
    resp: http.client.HTTPResponse, sock: socket.socket, opts: FetchOptions, deadline: float
) -> bytes:
    length = resp.getheader("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) > opts.max_bytes:
        raise _Outcome(
            Status.TOO_LARGE,
            f"Content-Length {int(length)} > max_bytes {opts.max_bytes}",
            resp.status,
        )
    chunks: list[bytes] = []
    total = 0
    while True:
        sock.settimeout(_timeout_for(opts.read_timeout_s, deadline))
        # read1 returns after one socket read, so a slow drip cannot outlive the deadline.
        chunk = resp.read1(_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > opts.max_bytes:
            raise _Outcome(
                Status.TOO_LARGE, f"body exceeds max_bytes {opts.max_bytes}", resp.status
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _attempt(url: str, opts: FetchOptions, deadline: float) -> tuple[bytes, int, str]:
    """One attempt: follow redirects, check every hop, return (body, status, final url)."""
    current = url
    for hop in range(opts.max_redirects + 1):
        try:
            scheme, host, port, target = _split_http_url(current)
            addresses = _resolve_checked(host, port, opts)
        except _Outcome as exc:
            exc.requested = hop > 0  # refused before the first request of this attempt
            raise
        cls = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        conn = cls(host, port, addresses, _timeout_for(opts.connect_timeout_s, deadline))
        resp: http.client.HTTPResponse | None = None
        try:
            conn.putrequest("GET", target, skip_accept_encoding=True)
            conn.putheader("User-Agent", opts.user_agent)
            conn.putheader("Accept", "image/*,*/*;q=0.8")
            conn.putheader("Accept-Encoding", "identity")
            conn.putheader("Connection", "close")
            conn.endheaders()
            # Keep the socket: http.client detaches it from conn for "Connection: close".
            sock = conn.sock
            assert sock is not None
            sock.settimeout(_timeout_for(opts.read_timeout_s, deadline))
            resp = conn.getresponse()
            status = resp.status
            if status in _REDIRECT_CODES:
                location = resp.getheader("Location")
                if not location:
                    raise _Outcome(Status.HTTP_ERROR, f"HTTP {status} without Location", status)
                if hop == opts.max_redirects:
                    raise _Outcome(
                        Status.TOO_MANY_REDIRECTS,
                        f"more than {opts.max_redirects} redirects (last to {location})",
                        status,
                    )
                nxt = urljoin(current, location.strip())
                if urlsplit(nxt).scheme.lower() not in ("http", "https"):
                    raise _Outcome(Status.BLOCKED, f"redirect to non-http URL {nxt!r}", status)
                current = nxt
                continue
            if not 200 <= status < 300:
                raise _Outcome(Status.HTTP_ERROR, f"HTTP {status} {resp.reason}".strip(), status)
            if opts.respect_opt_out and opted_out(
                resp.headers.get_all("X-Robots-Tag") or (), opts.user_agent
            ):
                tags = ", ".join(resp.headers.get_all("X-Robots-Tag") or ())
                raise _Outcome(Status.OPTED_OUT, f"X-Robots-Tag: {tags}", status)
            return _read_body(resp, sock, opts, deadline), status, current
        except _Outcome:
            raise
        except TimeoutError as exc:
            raise _Outcome(Status.TIMEOUT, _short(exc)) from None
        except ssl.SSLCertVerificationError as exc:
            raise _Outcome(Status.CONNECTION_ERROR, _short(exc), retryable=False) from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _Outcome(Status.CONNECTION_ERROR, _short(exc)) from None
        finally:
            if resp is not None:
                resp.close()  # also releases the socket handed over for "Connection: close"
            conn.close()
    raise AssertionError("unreachable")


def _should_retry(outcome: _Outcome) -> bool:
    if outcome.retryable is not None:
        return outcome.retryable
    if outcome.status in (Status.TIMEOUT, Status.CONNECTION_ERROR):
        return True
    if outcome.status == Status.HTTP_ERROR and outcome.http_status is not None:
        return outcome.http_status >= 500
    return False


def fetch_http(url: str, opts: FetchOptions) -> FetchResult:
    """Fetch an http(s) URL with retries, redirects and every guard. Never raises."""
    deadline = time.monotonic() + opts.deadline_s
    attempts = 0
    outcome: _Outcome | None = None
    for attempt in range(opts.retries + 1):
        if attempt:
            pause = opts.backoff_s * (2 ** (attempt - 1)) * (1.0 + 0.1 * random.random())
            if pause >= _remaining(deadline):
                break
            time.sleep(pause)
        attempts += 1
        try:
            body, status, final_url = _attempt(url, opts, deadline)
            return FetchResult(
                Status.OK, data=body, http_status=status, attempts=attempts, final_url=final_url
            )
        except _Outcome as exc:
            outcome = exc
        except Exception as exc:  # a bug or an unforeseen library error stays one row's problem
            logger.warning("unexpected error fetching %s", url, exc_info=True)
            outcome = _Outcome(Status.CONNECTION_ERROR, _short(exc), retryable=False)
        if (
            attempts == 1
            and not outcome.requested
            and outcome.status in (Status.BLOCKED, Status.INVALID_URL)
        ):
            attempts = 0  # refused before any request was sent
        if not _should_retry(outcome):
            break
    assert outcome is not None
    return FetchResult(
        outcome.status, error=outcome.error, http_status=outcome.http_status, attempts=attempts
    )


def fetch_file(url: str, opts: FetchOptions) -> FetchResult:
    """Read a file:// URL (local paths only), with the byte cap. Never raises."""
    if not opts.allow_file_urls:
        return FetchResult(
            Status.BLOCKED, error="file:// URLs are disabled (allow_file_urls=false)", source="file"
        )
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        return FetchResult(
            Status.INVALID_URL, error=f"file URL with remote host {parts.netloc!r}", source="file"
        )
    path = url2pathname(unquote(parts.path))
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > opts.max_bytes:
                return FetchResult(
                    Status.TOO_LARGE,
                    error=f"file size {size} > max_bytes {opts.max_bytes}",
                    attempts=1,
                    source="file",
                )
            data = fh.read(opts.max_bytes + 1)
    except FileNotFoundError:
        return FetchResult(
            Status.HTTP_ERROR, error=f"file not found: {path}", attempts=1, source="file"
        )
    except (IsADirectoryError, PermissionError) as exc:
        return FetchResult(Status.HTTP_ERROR, error=_short(exc), attempts=1, source="file")
    except OSError as exc:
        return FetchResult(Status.CONNECTION_ERROR, error=_short(exc), attempts=1, source="file")
    if len(data) > opts.max_bytes:
        return FetchResult(
            Status.TOO_LARGE,
            error=f"file exceeds max_bytes {opts.max_bytes}",
            attempts=1,
            source="file",
        )
    return FetchResult(Status.OK, data=data, attempts=1, source="file", final_url=url)


def fetch_url(url: str | None, opts: FetchOptions) -> FetchResult:
    """Fetch one http(s):// or file:// URL. Never raises."""
    if not isinstance(url, str) or not url.strip():
        return FetchResult(Status.INVALID_URL, error="empty URL")
    url = url.strip()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "file":
        return fetch_file(url, opts)
    if scheme in ("http", "https"):
        return fetch_http(url, opts)
    return FetchResult(
        Status.INVALID_URL, error=f"unsupported scheme {scheme!r}" if scheme else "not a URL"
    )


# ---------------------------------------------------------------- bounded pool

T = TypeVar("T")
R = TypeVar("R")


def map_bounded(fn: Callable[[T], R], items: Iterable[T], concurrency: int) -> Iterator[R]:
    """``map(fn, items)`` over at most ``concurrency`` threads, results in input order.

    At most ``2 * concurrency`` items are in flight, so a large batch never
    holds more than that many unfinished results (and their bytes) at once.
    The pool lives only as long as the iteration (one per Spark task).
    """
    if concurrency <= 1:
        yield from map(fn, items)
        return
    window: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kale-fetch") as pool:
        for item in items:
            window.append(pool.submit(fn, item))
            if len(window) >= 2 * concurrency:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
