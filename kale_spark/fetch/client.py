"""Fetch image bytes over http(s) and file:// URLs, safely, with bounded concurrency.

Built on the standard library (``socket``, ``ssl``) with a small HTTP/1.1 response
reader of its own, so that every guard holds for every byte received:

- The host of every URL, the first and every redirect hop, is resolved (with a
  time limit) and each resolved address is checked against the blocked ranges
  (loopback, private, link-local including the cloud metadata address
  169.254.169.254, site-local fec0::/10, multicast, unspecified, reserved, other
  non-global). A blocked hop returns status ``blocked`` and no request is sent.
- The connection goes to the address that was checked, not to a second DNS
  answer (no DNS rebinding); https keeps SNI and certificate/hostname
  verification against the URL's host name.
- ``deadline_s`` is a wall clock over everything a row does: DNS, each connect
  (given the time left, not a fresh timeout), the TLS handshake, the status line
  and headers, 1xx responses (at most ``MAX_INFORMATIONAL``), the body, chunk
  framing, trailers (at most ``MAX_TRAILER_LINES``), redirects and retries. Every
  socket read is given only the time left, so a server that drips bytes cannot
  hold a row past its deadline.
- Every byte received (status line, headers, 1xx, framing, trailers, body) counts
  against ``max_bytes`` (status ``too_large``).
- file:// URLs are read only under ``file_root`` (empty: file:// is off), and
  only regular files.

Why not urllib3: it parses responses with ``http.client``, whose header, 1xx and
trailer loops have no count or time limit of their own, and its timeouts are per
socket operation, so it would need the same deadline-aware socket as this module
and would still not let us cap 1xx responses or trailers. Connecting to a checked
address with the URL's host name for TLS is a few lines of ``ssl`` here.

Nothing in this module raises for a bad URL or a bad server: every outcome is a
:class:`FetchResult` with a status from :class:`kale_spark.fetch.decode.Status`.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import os
import random
import socket
import ssl
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit
from urllib.request import url2pathname

from kale_spark.fetch.hosts import HostGates
from kale_spark.fetch.options import (
    DEFAULT_OPT_OUT_DIRECTIVES,
    FetchOptions,
    IPNetwork,
)
from kale_spark.fetch.status import Status, cut_error, is_retryable

logger = logging.getLogger(__name__)

MAX_INFORMATIONAL = 4  # 1xx responses skipped before the real one; more is an error
MAX_HEADER_LINES = 200  # per response head (and per trailer block)
MAX_TRAILER_LINES = 32
MAX_LINE = 16 * 1024  # one status / header / chunk-size line
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_RECV = 256 * 1024
MAX_RETRY_AFTER_S = 3600.0  # a longer wait asked for pauses the host for this long
_HEAD_RECV = 8 * 1024  # small reads while parsing a head: its limits apply before the body's

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "error", cut_error(self.error))


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
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
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

    def __init__(self, status: str, error: str, http_status: int | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.http_status = http_status
        self.requested = True  # whether this attempt sent any request
        self.retry_after: float | None = None  # seconds a 429/503 asked us to wait


class _Clock:
    """One row's wall-clock deadline."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def limit(self, most: float, what: str) -> float:
        """``most`` or the time left, whichever is less; timeout once none is left."""
        left = self.left()
        if left <= 0:
            raise _Outcome(Status.TIMEOUT, f"deadline exceeded ({what})")
        return min(most, left)


_DNS_LOCK = threading.Lock()
_DNS_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _dns_pool() -> ThreadPoolExecutor:
    """Threads that run getaddrinfo (which has no timeout), one pool per process."""
    global _DNS_POOL
    with _DNS_LOCK:
        if _DNS_POOL is None or _DNS_POOL[0] != os.getpid():
            _DNS_POOL = (os.getpid(), ThreadPoolExecutor(32, thread_name_prefix="kale-dns"))
        return _DNS_POOL[1]


def _lookup(host: str, port: int, timeout: float) -> list[tuple[int, str]]:
    """(family, ip) pairs for ``host``; an IP literal needs no lookup."""
    try:
        ip = ipaddress.ip_address(host)
        return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, host)]
    except ValueError:
        pass
    future = _dns_pool().submit(
        socket.getaddrinfo, host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    try:
        infos = future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        raise _Outcome(Status.TIMEOUT, f"dns: {host}: no answer in {timeout:.1f}s") from None
    except socket.gaierror as exc:
        raise _Outcome(Status.CONNECTION_ERROR, f"dns: {host}: {exc}") from None
    except (UnicodeError, ValueError) as exc:
        raise _Outcome(Status.INVALID_URL, f"bad host {host!r}: {exc}") from None
    return [(family, sockaddr[0]) for family, _t, _p, _c, sockaddr in infos]


def _resolve_checked(
    host: str, port: int, opts: FetchOptions, clock: _Clock
) -> list[tuple[int, str]]:
    """Resolve ``host`` and check every address; (family, ip) pairs to connect to."""
    found = _lookup(host, port, clock.limit(opts.dns_timeout_s, "dns"))
    addresses: list[tuple[int, str]] = []
    for family, ip_text in found:
        ip = ipaddress.ip_address(ip_text.split("%", 1)[0])
        reason = blocked_reason(ip, opts.allowed_networks)
        if reason is not None:
            raise _Outcome(Status.BLOCKED, f"{host} resolves to {reason}")
        if (family, ip_text) not in addresses:
            addresses.append((family, ip_text))
    if not addresses:
        raise _Outcome(Status.CONNECTION_ERROR, f"dns: {host}: no addresses")
    return addresses


# ---------------------------------------------------------------- connections


def _connect(
    addresses: list[tuple[int, str]], port: int, opts: FetchOptions, clock: _Clock
) -> socket.socket:
    """Connect to the first address that answers; each try gets only the time left."""
    last: OSError | None = None
    for family, ip in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(clock.limit(opts.connect_timeout_s, "connect"))
            sock.connect((ip, port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
        except _Outcome:
            sock.close()
            raise
    assert last is not None
    raise last


_SSL_LOCK = threading.Lock()
_SSL_CONTEXT: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    global _SSL_CONTEXT
    with _SSL_LOCK:
        if _SSL_CONTEXT is None:
            _SSL_CONTEXT = ssl.create_default_context()
        return _SSL_CONTEXT


def _tls(sock: socket.socket, host: str, opts: FetchOptions, clock: _Clock) -> ssl.SSLSocket:
    """TLS over a pinned address; SNI and certificate checks use the URL's host name."""
    tls = _ssl_context().wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    # The handshake as a whole is bounded by the socket timeout (CPython's _ssl).
    tls.settimeout(clock.limit(opts.connect_timeout_s, "tls handshake"))
    tls.do_handshake()
    return tls


class _Reader:
    """Reads a response with the row's deadline and byte budget applied to every recv."""

    def __init__(self, sock: socket.socket, opts: FetchOptions, clock: _Clock) -> None:
        self.sock = sock
        self.opts = opts
        self.clock = clock
        self.buf = bytearray()
        self.received = 0
        self.eof = False

    def _fill(self, size: int = _RECV) -> bool:
        if self.eof:
            return False
        self.sock.settimeout(self.clock.limit(self.opts.read_timeout_s, "reading the response"))
        # Never ask for more than one byte past the budget.
        chunk = self.sock.recv(max(1, min(size, self.opts.max_bytes + 1 - self.received)))
        if not chunk:
            self.eof = True
            return False
        self.received += len(chunk)
        if self.received > self.opts.max_bytes:
            raise _Outcome(Status.TOO_LARGE, f"response exceeds max_bytes {self.opts.max_bytes}")
        self.buf += chunk
        return True

    def line(self, what: str) -> bytes:
        """One line without its CRLF; at most MAX_LINE bytes."""
        start = 0
        while True:
            end = self.buf.find(b"\n", start)
            if end >= 0:
                out = bytes(self.buf[:end])
                del self.buf[: end + 1]
                return out[:-1] if out.endswith(b"\r") else out
            if len(self.buf) > MAX_LINE:
                raise _Outcome(Status.CONNECTION_ERROR, f"{what} line longer than {MAX_LINE}")
            start = len(self.buf)
            if not self._fill(_HEAD_RECV):
                raise _Outcome(Status.CONNECTION_ERROR, f"connection closed in {what}")

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill(n - len(self.buf)):
                raise _Outcome(
                    Status.CONNECTION_ERROR, f"connection closed {n - len(self.buf)} bytes early"
                )
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def rest(self) -> bytes:
        while self._fill():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out


class _Head:
    """Status and headers of one response (header names lower-cased)."""

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def get(self, name: str) -> str | None:
        values = self.all(name)
        return values[-1] if values else None


def _read_fields(reader: _Reader, what: str, most: int) -> list[tuple[str, str]]:
    """Header (or trailer) lines up to the blank line; at most ``most`` lines."""
    fields: list[tuple[str, str]] = []
    while True:
        line = reader.line(what)
        if not line:
            return fields
        if len(fields) >= most:
            raise _Outcome(Status.CONNECTION_ERROR, f"more than {most} {what} lines")
        name, sep, value = line.partition(b":")
        if not sep:
            continue  # an obsolete folded line or garbage: ignored, but counted above
        text = value.strip().decode("latin-1")
        fields.append((name.strip().decode("latin-1").lower(), text))


def _read_head(reader: _Reader) -> _Head:
    """The final response's status line and headers, after at most MAX_INFORMATIONAL 1xx."""
    for _ in range(MAX_INFORMATIONAL + 1):
        line = reader.line("status")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise _Outcome(Status.CONNECTION_ERROR, "not an HTTP/1.x status line")
        status = int(parts[1])
        reason = parts[2].decode("latin-1").strip() if len(parts) > 2 else ""
        headers = _read_fields(reader, "header", MAX_HEADER_LINES)
        if not 100 <= status < 200:
            return _Head(status, reason, headers)
        if status == 101:
            raise _Outcome(Status.HTTP_ERROR, "HTTP 101 to a plain GET", status)
    raise _Outcome(
        Status.HTTP_ERROR, f"more than {MAX_INFORMATIONAL} informational (1xx) responses", status
    )


def _read_body(reader: _Reader, head: _Head, opts: FetchOptions) -> bytes:
    encoding = (head.get("transfer-encoding") or "").lower()
    if encoding:
        if encoding != "chunked":
            raise _Outcome(
                Status.HTTP_ERROR, f"unsupported Transfer-Encoding {encoding!r}", head.status
            )
        return _read_chunked(reader, opts, head.status)
    lengths = {v.strip() for v in head.all("content-length")}
    if not lengths:
        return reader.rest()
    if len(lengths) > 1 or not next(iter(lengths)).isdigit():
        raise _Outcome(Status.HTTP_ERROR, "bad Content-Length", head.status)
    length = int(next(iter(lengths)))
    if length > opts.max_bytes:
        raise _Outcome(
            Status.TOO_LARGE, f"Content-Length {length} > max_bytes {opts.max_bytes}", head.status
        )
    return reader.exactly(length)


def _read_chunked(reader: _Reader, opts: FetchOptions, status: int) -> bytes:
    parts: list[bytes] = []
    while True:
        size_text = reader.line("chunk size").split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _Outcome(Status.CONNECTION_ERROR, "bad chunk size line") from None
        if size > opts.max_bytes:
            raise _Outcome(
                Status.TOO_LARGE, f"chunk of {size} bytes > max_bytes {opts.max_bytes}", status
            )
        if size == 0:
            break
        parts.append(reader.exactly(size))
        if reader.exactly(2) != b"\r\n":
            raise _Outcome(Status.CONNECTION_ERROR, "chunk not followed by CRLF")
    _read_fields(reader, "trailer", MAX_TRAILER_LINES)  # counted against max_bytes too
    return b"".join(parts)


# ---------------------------------------------------------------- opt-out


_VALUED_DIRECTIVES = ("unavailable_after", "max-snippet", "max-image-preview", "max-video-preview")


def opted_out(
    header_values: Iterable[str],
    user_agent: str,
    directives: Iterable[str] = DEFAULT_OPT_OUT_DIRECTIVES,
) -> bool:
    """Whether ``X-Robots-Tag`` values name one of ``directives`` for this user agent.

    Directives are comma separated; a ``name: directive`` form applies only to
    the user agent whose first token is ``name`` (like img2dataset).
    """
    wanted = frozenset(d.lower() for d in directives)
    our_token = user_agent.split("/", 1)[0].strip().lower()
    for value in header_values:
        scope: str | None = None
        for part in value.lower().split(","):
            part = part.strip()
            if ":" in part:
                name, _, rest = part.partition(":")
                name, rest = name.strip(), rest.strip()
                # "unavailable_after: <date>" is a directive with a value, not a scope.
                if name not in _VALUED_DIRECTIVES:
                    scope, part = name, rest
            if (scope is None or scope == our_token) and part in wanted:
                return True
    return False


# ---------------------------------------------------------------- URLs


_URI_SAFE = "/%:@!$&'()*+,;=-._~?[]"


def to_uri(url: str) -> str:
    """An IRI (non-ASCII host or path) as a URI: IDNA host, UTF-8 percent-encoding.

    ASCII URLs come back unchanged. Raises ValueError for a host IDNA rejects.
    """
    if url.isascii():
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if not netloc.isascii():
        userinfo, at, hostport = netloc.rpartition("@")
        host, colon, port = hostport.rpartition(":") if "]" not in hostport else ("", "", "")
        if not colon or not port.isdigit():
            host, colon, port = hostport, "", ""
        try:
            ascii_host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"host is not a valid international domain name: {exc}") from None
        netloc = f"{quote(userinfo, safe=':%')}{at}{ascii_host}{colon}{port}"
    return urlunsplit(
        (
            parts.scheme,
            netloc,
            quote(parts.path, safe=_URI_SAFE),
            quote(parts.query, safe=_URI_SAFE),
            quote(parts.fragment, safe=_URI_SAFE),
        )
    )


def _split_http_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of an http(s) URL, or _Outcome(invalid_url)."""
    try:
        url = to_uri(url)
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


# ---------------------------------------------------------------- fetching


def _short(exc: BaseException) -> str:
    return cut_error(f"{type(exc).__name__}: {exc}") or ""


def _request(host: str, port: int, scheme: str, target: str, opts: FetchOptions) -> bytes:
    default = 443 if scheme == "https" else 80
    host_header = host if ":" not in host else f"[{host}]"
    if port != default:
        host_header += f":{port}"
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {opts.user_agent}\r\n"
        "Accept: image/*,*/*;q=0.8\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


def _one_hop(url: str, opts: FetchOptions, clock: _Clock, hop: int) -> tuple[_Head, bytes | None]:
    """Request ``url`` once; (head, body) where body is None for a redirect."""
    try:
        scheme, host, port, target = _split_http_url(url)
        addresses = _resolve_checked(host, port, opts, clock)
    except _Outcome as exc:
        exc.requested = hop > 0  # refused before the first request of this attempt
        raise
    sock: socket.socket | None = None
    try:
        sock = _connect(addresses, port, opts, clock)
        if scheme == "https":
            sock = _tls(sock, host, opts, clock)
        sock.settimeout(clock.limit(opts.read_timeout_s, "sending the request"))
        sock.sendall(_request(host, port, scheme, target, opts))
        reader = _Reader(sock, opts, clock)
        head = _read_head(reader)
        if head.status in _REDIRECT_CODES or not 200 <= head.status < 300:
            return head, None
        if opts.respect_opt_out and opted_out(
            head.all("x-robots-tag"), opts.user_agent, opts.opt_out_directives
        ):
            tags = ", ".join(head.all("x-robots-tag"))
            raise _Outcome(Status.OPTED_OUT, f"X-Robots-Tag: {tags}", head.status)
        return head, _read_body(reader, head, opts)
    except _Outcome:
        raise
    except TimeoutError as exc:
        cut = clock.left() <= 0.01  # the read was given only the time left, and used it
        raise _Outcome(Status.TIMEOUT, "deadline exceeded" if cut else _short(exc)) from None
    except (OSError, ValueError, UnicodeError) as exc:
        raise _Outcome(Status.CONNECTION_ERROR, _short(exc)) from None
    finally:
        if sock is not None:
            sock.close()


def _attempt(url: str, opts: FetchOptions, clock: _Clock) -> tuple[bytes, int, str]:
    """One attempt: follow redirects, check every hop, return (body, status, final url)."""
    current = url
    for hop in range(opts.max_redirects + 1):
        head, body = _one_hop(current, opts, clock, hop)
        status = head.status
        if body is not None:
            return body, status, current
        if status not in _REDIRECT_CODES:
            refused = _Outcome(Status.HTTP_ERROR, f"HTTP {status} {head.reason}".strip(), status)
            if status in (429, 503):
                refused.retry_after = retry_after_s(head.get("retry-after"))
            raise refused
        location = head.get("location")
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
    raise AssertionError("unreachable")


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), at
    most MAX_RETRY_AFTER_S; None when absent or unreadable."""
    if not value or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, when - (time.time() if now is None else now)), MAX_RETRY_AFTER_S)


def fetch_http(
    url: str, opts: FetchOptions, gates: HostGates | None = None, host: str = ""
) -> FetchResult:
    """Fetch an http(s) URL with retries, redirects and every guard. Never raises.

    With ``gates``, every attempt holds one of ``host``'s connection slots and waits
    out the pauses the host asked for (fetch/hosts.py)."""
    clock = _Clock(opts.deadline_s)
    attempts = 0
    outcome: _Outcome | None = None
    for attempt in range(opts.retries + 1):
        if attempt and not _host_paces(outcome, gates):
            pause = opts.backoff_s * (2 ** (attempt - 1)) * (1.0 + 0.1 * random.random())
            if pause >= clock.left():
                break
            time.sleep(pause)
        refusal = gates.enter(host, max(0.0, clock.left())) if gates is not None else None
        if refusal is not None:
            if refusal.status != Status.TIMEOUT or outcome is None:
                outcome = _Outcome(refusal.status, refusal.error, refusal.http_status)
            break
        attempts += 1
        outcome = _attempt_once(url, opts, clock)
        if gates is not None:
            gates.leave(host, outcome.status, outcome.http_status, outcome.retry_after)
        if outcome.status == Status.OK:
            return outcome.result(attempts)
        if not outcome.requested and outcome.status in (Status.BLOCKED, Status.INVALID_URL):
            attempts -= 1  # refused before any request was sent: not an attempt
        if not is_retryable(outcome.status, outcome.http_status):
            break
    assert outcome is not None
    return FetchResult(
        outcome.status, error=outcome.error, http_status=outcome.http_status, attempts=attempts
    )


def _host_paces(outcome: _Outcome | None, gates: HostGates | None) -> bool:
    """Whether the host's pause (a 429/503) replaces this row's own backoff."""
    return gates is not None and outcome is not None and outcome.http_status in (429, 503)


class _Done(_Outcome):
    """Internal: an attempt that succeeded (carried like an outcome through the loop)."""

    def __init__(self, body: bytes, http_status: int, final_url: str) -> None:
        super().__init__(Status.OK, "", http_status)
        self.body = body
        self.final_url = final_url

    def result(self, attempts: int) -> FetchResult:
        return FetchResult(
            Status.OK,
            data=self.body,
            http_status=self.http_status,
            attempts=attempts,
            final_url=self.final_url,
        )


def _attempt_once(url: str, opts: FetchOptions, clock: _Clock) -> _Outcome:
    """One attempt as an outcome (a ``_Done`` when it succeeded). Never raises."""
    try:
        body, status, final_url = _attempt(url, opts, clock)
        return _Done(body, status, final_url)
    except _Outcome as exc:
        return exc
    except Exception as exc:  # a bug or an unforeseen library error stays one row's problem
        logger.warning("unexpected error fetching %s", url, exc_info=True)
        return _Outcome(Status.CONNECTION_ERROR, _short(exc))


def _under_root(path: str, root: str) -> str | None:
    """The real path of ``path`` if it lies inside ``root``, else None."""
    real = os.path.realpath(path)
    real_root = os.path.realpath(root)
    try:
        inside = os.path.commonpath([real, real_root]) == real_root
    except ValueError:
        return None
    return real if inside else None


def fetch_file(url: str, opts: FetchOptions) -> FetchResult:
    """Read a file:// URL below ``opts.file_root``: regular files only, capped. Never raises."""

    def result(status: str, error: str | None = None, data: bytes | None = None) -> FetchResult:
        return FetchResult(status, error=error, data=data, attempts=1, source="file")

    if not opts.file_root:
        return FetchResult(
            Status.BLOCKED, error="file:// URLs are off (fetch.file_root is empty)", source="file"
        )
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        return FetchResult(
            Status.INVALID_URL, error=f"file URL with remote host {parts.netloc!r}", source="file"
        )
    path = url2pathname(unquote(parts.path))
    real = _under_root(path, opts.file_root)
    if real is None:
        return FetchResult(
            Status.BLOCKED, error=f"{path} is outside fetch.file_root", source="file"
        )
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return result(Status.HTTP_ERROR, f"file not found: {path}")
    except OSError as exc:
        return result(Status.HTTP_ERROR, f"cannot open {path}: {exc.strerror}")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return result(Status.BLOCKED, f"{path} is not a regular file")
        if info.st_size > opts.max_bytes:
            return result(
                Status.TOO_LARGE, f"file size {info.st_size} > max_bytes {opts.max_bytes}"
            )
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(opts.max_bytes + 1)
    except OSError as exc:
        return result(Status.CONNECTION_ERROR, f"reading {path}: {exc.strerror}")
    finally:
        os.close(fd)
    if len(data) > opts.max_bytes:
        return result(Status.TOO_LARGE, f"file exceeds max_bytes {opts.max_bytes}")
    return FetchResult(Status.OK, data=data, attempts=1, source="file", final_url=url)


def fetch_url(
    url: str | None, opts: FetchOptions, gates: HostGates | None = None, host: str = ""
) -> FetchResult:
    """Fetch one http(s):// or file:// URL. Never raises. ``gates``/``host``: see
    :func:`fetch_http`."""
    if not isinstance(url, str) or not url.strip():
        return FetchResult(Status.INVALID_URL, error="empty URL")
    url = url.strip()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "file":
        return fetch_file(url, opts)
    if scheme in ("http", "https"):
        return fetch_http(url, opts, gates, host)
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
