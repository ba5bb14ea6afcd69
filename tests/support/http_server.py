"""A real threaded HTTP server on 127.0.0.1 for fetch tests.

Tests register routes, each a :class:`Route` (status, body, headers, and
behaviours such as a slow drip or failing the first N requests), then fetch
``server.url(path)``. Every request is logged so a test can assert that a
blocked URL was never requested.

A route with ``raw`` set writes raw bytes to the socket instead of a well-formed
response: a hostile server (dripping the head a byte at a time, flooding
``100 Continue`` or chunked trailers). ``raw`` is a callable given a ``write(bytes)``
function and a ``stopped()`` check; :func:`drip`, :func:`repeat` and
:func:`chunked_then` build the common ones.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RawWriter = Callable[[Callable[[bytes], None], Callable[[], bool]], None]
RAW_LIMIT_S = 20.0  # a raw handler never writes for longer than this (the test server is bounded)


def drip(data: bytes, interval_s: float) -> RawWriter:
    """Send ``data`` one byte every ``interval_s`` seconds."""

    def write_all(write: Callable[[bytes], None], stopped: Callable[[], bool]) -> None:
        for i in range(len(data)):
            if stopped():
                return
            write(data[i : i + 1])
            time.sleep(interval_s)

    return write_all


def repeat(head: bytes, unit: bytes, interval_s: float = 0.0) -> RawWriter:
    """Send ``head`` then ``unit`` again and again (every ``interval_s``) until stopped."""

    def write_all(write: Callable[[bytes], None], stopped: Callable[[], bool]) -> None:
        write(head)
        while not stopped():
            write(unit)
            if interval_s:
                time.sleep(interval_s)

    return write_all


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "image/jpeg"
    fail_first: int = 0  # answer fail_status to the first N requests
    fail_status: int = 500
    fail_headers: dict[str, str] = field(default_factory=dict)  # sent with the failures
    drip_interval_s: float = 0.0  # > 0: send the body one byte at a time
    send_length: bool = True  # False: no Content-Length, body ends when the connection closes
    delay_s: float = 0.0  # sleep before answering
    raw: RawWriter | None = None  # hostile: write raw bytes instead of a response


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs under concurrent fetches (1 s retransmit)


class LocalHTTPServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        # Requests being answered now, and the most at once, per Host header (port cut).
        # A request counts from its arrival until just before its answer is written:
        # inside the client's own connection, so the server never counts more than the
        # client holds open (a count ending after the write would lag the client).
        self.answers: list[tuple[str, int, float, float]] = []  # (path, status, start, end)
        self.open_by_host: Counter[str] = Counter()
        self.peak_by_host: Counter[str] = Counter()
        self.spans: list[
            tuple[str, float, float]
        ] = []  # (path, start, end) of each answered request
        self._httpd = _Server(("127.0.0.1", 0), _handler(self))
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="test-http", daemon=True
        )

    def start(self) -> LocalHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def max_concurrent(self, prefix: str) -> int:
        """Most requests to paths starting with ``prefix`` that were being answered at once."""
        with self._lock:
            events = sorted(
                (t, delta)
                for path, start, end in self.spans
                if path.startswith(prefix)
                for t, delta in ((start, 1), (end, -1))
            )
        current = peak = 0
        for _t, delta in events:
            current += delta
            peak = max(peak, current)
        return peak

    def peak_for(self, host: str) -> int:
        """Most requests with this Host header (without its port) answered at once."""
        with self._lock:
            return self.peak_by_host[host]

    def reset_peaks(self) -> None:
        with self._lock:
            self.peak_by_host.clear()

    def requests_to(self, path: str) -> int:
        with self._lock:
            return self.counts[path]


def _handler(server: LocalHTTPServer) -> type[BaseHTTPRequestHandler]:
    """The request handler class of ``server``: its routes, log and spans."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            path = self.path.split("?", 1)[0]
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            with server._lock:
                server.log.append(("GET", self.path, dict(self.headers.items())))
                server.counts[path] += 1
                count = server.counts[path]
                server.open_by_host[host] += 1
                peak = max(server.peak_by_host[host], server.open_by_host[host])
                server.peak_by_host[host] = peak
            start = time.monotonic()
            self.answered_status = 0
            self.host = host
            self.counted = True
            try:
                self._answer(server.routes.get(path), count)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                with server._lock:
                    end = time.monotonic()
                    server.spans.append((path, start, end))
                    server.answers.append((path, self.answered_status, start, end))
                    if self.counted:
                        server.open_by_host[host] -= 1

        def _answer(self, route: Route | None, count: int) -> None:
            if route is None:
                route = Route(body=b"<html>not found</html>", status=404, content_type="text/html")
            if route.delay_s:
                time.sleep(route.delay_s)
            self._uncount()
            if route.raw is not None:
                self._raw(route.raw)
                return
            if count <= route.fail_first:
                route = Route(
                    body=b"<html>try again</html>",
                    status=route.fail_status,
                    content_type="text/html",
                    headers=route.fail_headers,
                )
            self.answered_status = route.status
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.send_length:
                self.send_header("Content-Length", str(len(route.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if route.drip_interval_s:
                for i in range(len(route.body)):
                    self.wfile.write(route.body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(route.drip_interval_s)
            else:
                self.wfile.write(route.body)
            self.close_connection = True

        def _uncount(self) -> None:
            with server._lock:
                if self.counted:
                    server.open_by_host[self.host] -= 1
                    self.counted = False

        def _raw(self, writer: RawWriter) -> None:
            """Write until the writer ends, the client hangs up, or RAW_LIMIT_S passes."""
            ends = time.monotonic() + RAW_LIMIT_S
            gone = threading.Event()

            def write(data: bytes) -> None:
                try:
                    self.wfile.write(data)
                    self.wfile.flush()
                except OSError:
                    gone.set()

            writer(write, lambda: gone.is_set() or time.monotonic() > ends)
            self.close_connection = True

    return Handler
