"""kale_spark.fetch.client and fetch_batch.process_batch against a real local HTTP server."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from kale_spark import schema
from kale_spark.fetch.client import blocked_reason, fetch_url, map_bounded, opted_out
from kale_spark.fetch.options import (
    DEFAULT_USER_AGENT,
    FetchOptions,
    FetchStageOptions,
    ImageOptions,
)
from kale_spark.fetch.rows import IMAGES_COLUMNS, IMAGES_DTYPES, process_batch
from kale_spark.fetch.status import Status

# The local server lives on loopback, which is blocked unless allowed.
LOOP_KW = dict(
    allow_networks=("127.0.0.0/8",),
    connect_timeout_s=1.0,
    read_timeout_s=1.0,
    deadline_s=3.0,
    retries=2,
    backoff_s=0.01,
    max_redirects=3,
)
LOOP = FetchOptions(**LOOP_KW)
STAGE = FetchStageOptions(**LOOP_KW)


def _batch(
    urls: dict[str, str | None], opts: FetchStageOptions = STAGE, hashes: dict | None = None
) -> pd.DataFrame:
    uids = list(urls)
    pdf = pd.DataFrame(
        {
            "uid": uids,
            "url": [urls[u] for u in uids],
            "sha256": [(hashes or {}).get(u) for u in uids],
        }
    )
    out = process_batch(pdf, opts, run_id="run-1")
    assert list(out.columns) == IMAGES_COLUMNS
    assert list(out["uid"]) == uids
    return out.set_index("uid", drop=False)


@pytest.fixture(scope="module")
def served(http_server, route_cls, image_bytes) -> dict[str, str]:
    """Register every route once; name -> URL."""
    s, R = http_server, route_cls
    jpeg = image_bytes("JPEG", size=(800, 600), color=(200, 30, 30))
    big = Image.effect_noise((300, 300), 80).convert("RGB")
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    big_png = buf.getvalue()  # ~270 kB of noise
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = io.BytesIO()
    Image.new("RGB", (200, 100), (0, 90, 0)).save(rotated, format="JPEG", exif=exif.tobytes())
    bomb = bytearray(image_bytes("PNG", size=(1, 1), mode="L", color=0))
    import struct
    import zlib

    bomb[16:24] = struct.pack(">II", 100_000, 100_000)
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])) & 0xFFFFFFFF)
    routes = {
        "jpeg": R(body=jpeg),
        "png": R(body=image_bytes("PNG", size=(40, 30)), content_type="image/png"),
        "webp": R(body=image_bytes("WEBP", size=(40, 30)), content_type="image/webp"),
        "gif": R(
            body=image_bytes("GIF", size=(40, 30), mode="P", color=3), content_type="image/gif"
        ),
        "truncated": R(body=jpeg[: len(jpeg) // 2]),
        "empty": R(body=b""),
        "html": R(
            body=b"<!doctype html><html><body>Image not available</body></html>",
            content_type="image/jpeg",
        ),
        "missing": R(body=b"<html>404</html>", status=404, content_type="text/html"),
        "flaky": R(body=jpeg, fail_first=1),
        "down": R(body=jpeg, fail_first=10**9),
        "drip": R(body=jpeg[:200], drip_interval_s=0.05),
        "loop": R(status=302, headers={"Location": "/loop"}),
        "hop1": R(status=301, headers={"Location": "/hop2"}),
        "hop2": R(status=307, headers={"Location": s.url("/jpeg")}),
        "to-private": R(status=302, headers={"Location": "http://10.0.0.1/x.jpg"}),
        "to-metadata": R(
            status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
        ),
        "to-file": R(status=302, headers={"Location": "file:///etc/passwd"}),
        "big": R(body=big_png, content_type="image/png"),
        "big-nolength": R(body=big_png, content_type="image/png", send_length=False),
        "bomb": R(body=bytes(bomb), content_type="image/png"),
        "cmyk": R(body=image_bytes("JPEG", size=(20, 20), mode="CMYK", color=(0, 255, 255, 0))),
        "deep": R(
            body=image_bytes("PNG", size=(20, 20), mode="I;16", color=32768),
            content_type="image/png",
        ),
        "rotated": R(body=rotated.getvalue()),
        "noai": R(body=jpeg, headers={"X-Robots-Tag": "noai"}),
        "noimageai": R(body=jpeg, headers={"X-Robots-Tag": "noindex, NoImageAI"}),
        "other-bot": R(body=jpeg, headers={"X-Robots-Tag": "otherbot: noai"}),
        "our-bot": R(body=jpeg, headers={"X-Robots-Tag": "kale-spark: noimageai"}),
        "slow-headers": R(body=jpeg, delay_s=2.0),
    }
    return {name: s.add(f"/{name}", route) for name, route in routes.items()}


# ---------------------------------------------------------------- statuses end to end


def test_good_images(served) -> None:
    out = _batch({"j": served["jpeg"], "p": served["png"], "w": served["webp"], "g": served["gif"]})
    assert list(out["status"]) == [Status.OK] * 4
    assert list(out["mime"]) == ["image/jpeg", "image/png", "image/webp", "image/gif"]
    assert list(out["http_status"]) == [200] * 4
    assert list(out["attempts"]) == [1] * 4
    assert list(out["source"]) == ["http"] * 4
    assert list(out["run_id"]) == ["run-1"] * 4
    j = out.loc["j"]
    assert (j.original_width, j.original_height, j.width, j.height) == (800, 600, 490, 368)
    assert Image.open(io.BytesIO(j.image)).size == (490, 368)
    assert out["error"].isna().all()
    assert out["sha256_match"].isna().all()  # no expected hash given


def test_bad_content(served) -> None:
    out = _batch(
        {"t": served["truncated"], "e": served["empty"], "h": served["html"], "b": served["bomb"]}
    )
    assert list(out["status"]) == [
        Status.DECODE_ERROR,
        Status.NOT_AN_IMAGE,
        Status.NOT_AN_IMAGE,
        Status.TOO_LARGE,
    ]
    assert out["image"].isna().all()
    assert list(out["http_status"]) == [200] * 4
    assert out.loc["e", "sha256"] == hashlib.sha256(b"").hexdigest()


def test_http_errors_and_retries(http_server, served) -> None:
    before_down = http_server.requests_to("/down")
    out = _batch({"404": served["missing"], "flaky": served["flaky"], "down": served["down"]})
    assert list(out["status"]) == [Status.HTTP_ERROR, Status.OK, Status.HTTP_ERROR]
    assert list(out["http_status"]) == [404, 200, 500]
    assert list(out["attempts"]) == [1, 2, 3]  # 4xx never retried; 5xx retried `retries` times
    assert out.loc["404", "error"] == "HTTP 404 Not Found"
    assert http_server.requests_to("/down") - before_down == 3


def test_slow_drip_hits_deadline(served) -> None:
    opts = FetchStageOptions(allow_networks=("127.0.0.0/8",), deadline_s=0.5, backoff_s=0.01)
    started = time.monotonic()
    out = _batch({"d": served["drip"]}, opts)
    elapsed = time.monotonic() - started
    assert out.loc["d", "status"] == Status.TIMEOUT
    assert out.loc["d", "attempts"] == 1  # no time left for a retry
    assert elapsed < 1.5


def test_read_timeout_is_retried(served) -> None:
    fetch = FetchOptions(
        allow_networks=("127.0.0.0/8",),
        read_timeout_s=0.3,
        deadline_s=1.9,  # room for both 0.3 s attempts on a busy machine; the server waits 2 s
        retries=1,
        backoff_s=0.01,
    )
    result = fetch_url(served["slow-headers"], fetch)
    assert (result.status, result.attempts) == (Status.TIMEOUT, 2)
    assert result.error == "TimeoutError: timed out"  # the read timeout, not the deadline


def test_connection_refused_is_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = fetch_url(f"http://127.0.0.1:{port}/x.jpg", LOOP)
    assert result.status == Status.CONNECTION_ERROR
    assert result.attempts == 3
    assert "Connection refused" in result.error or "ConnectionRefusedError" in result.error


def test_redirects(http_server, served) -> None:
    before = http_server.requests_to("/loop")
    out = _batch({"loop": served["loop"], "chain": served["hop1"]})
    assert out.loc["loop", "status"] == Status.TOO_MANY_REDIRECTS
    assert out.loc["loop", "attempts"] == 1
    assert http_server.requests_to("/loop") - before == 4  # first request + max_redirects=3 hops
    assert out.loc["chain", "status"] == Status.OK
    assert fetch_url(served["hop1"], LOOP).final_url == served["jpeg"]


def test_redirect_to_private_or_file_is_blocked(served) -> None:
    out = _batch({"p": served["to-private"], "m": served["to-metadata"], "f": served["to-file"]})
    assert list(out["status"]) == [Status.BLOCKED] * 3
    assert list(out["attempts"]) == [1, 1, 1]
    assert out.loc["p", "error"] == "10.0.0.1 resolves to private address 10.0.0.1"
    assert out.loc["m", "error"] == "169.254.169.254 resolves to link-local address 169.254.169.254"
    assert out.loc["f", "error"] == "redirect to non-http URL 'file:///etc/passwd'"


def test_byte_cap(served) -> None:
    opts = FetchStageOptions(allow_networks=("127.0.0.0/8",), max_bytes=50_000)
    out = _batch(
        {"len": served["big"], "stream": served["big-nolength"], "small": served["png"]}, opts
    )
    assert list(out["status"]) == [Status.TOO_LARGE, Status.TOO_LARGE, Status.OK]
    assert out.loc["len", "error"].startswith("Content-Length ")
    assert out.loc["stream", "error"] == "response exceeds max_bytes 50000"
    assert list(out["attempts"]) == [1, 1, 1]


def test_colour_modes_and_orientation(served) -> None:
    out = _batch({"c": served["cmyk"], "d": served["deep"], "r": served["rotated"]})
    assert list(out["status"]) == [Status.OK] * 3
    r = out.loc["r"]
    assert (r.original_width, r.original_height, r.width, r.height) == (100, 200, 100, 200)
    red = Image.open(io.BytesIO(out.loc["c", "image"])).getpixel((10, 10))
    assert red[0] > 240 and red[1] < 15 and red[2] < 15
    grey = Image.open(io.BytesIO(out.loc["d", "image"])).getpixel((10, 10))
    assert all(126 <= v <= 130 for v in grey)


def test_x_robots_tag_opt_out(served) -> None:
    urls = {k: served[k] for k in ("noai", "noimageai", "other-bot", "our-bot")}
    out = _batch(urls)
    assert list(out["status"]) == [Status.OPTED_OUT, Status.OPTED_OUT, Status.OK, Status.OPTED_OUT]
    assert out.loc["noai", "error"] == "X-Robots-Tag: noai"
    assert out.loc["noai", "image"] is None
    ignoring = FetchStageOptions(allow_networks=("127.0.0.0/8",), respect_opt_out=False)
    assert list(_batch(urls, ignoring)["status"]) == [Status.OK] * 4


def test_opted_out_parsing() -> None:
    assert opted_out(["noai"], DEFAULT_USER_AGENT)
    assert opted_out(["noindex,noimageai"], DEFAULT_USER_AGENT)
    assert opted_out(["noindex, nofollow"], DEFAULT_USER_AGENT)  # img2dataset's list
    assert opted_out(["NoImageIndex"], DEFAULT_USER_AGENT)
    assert not opted_out(["nofollow, nosnippet"], DEFAULT_USER_AGENT)
    assert not opted_out(["noindex"], DEFAULT_USER_AGENT, directives=("noai",))
    assert not opted_out(["googlebot: noai"], DEFAULT_USER_AGENT)
    assert opted_out(["googlebot: noindex", "kale-spark: noai"], DEFAULT_USER_AGENT)
    assert not opted_out(["unavailable_after: 25 Jun 2010 15:00:00 PST"], DEFAULT_USER_AGENT)


def test_user_agent_sent(http_server, served) -> None:
    fetch_url(
        served["png"], FetchOptions(allow_networks=("127.0.0.0/8",), user_agent="my-crawler/2.0")
    )
    method, path, headers = http_server.log[-1]
    assert (method, path) == ("GET", "/png")
    assert headers["User-Agent"] == "my-crawler/2.0"
    assert headers["Accept-Encoding"] == "identity"


# ---------------------------------------------------------------- network safety


def test_loopback_blocked_by_default_and_never_requested(http_server, served) -> None:
    requests_before = len(http_server.log)
    port = http_server.port
    urls = {
        "ip": served["jpeg"],
        "name": f"http://localhost:{port}/jpeg",
        "decimal": f"http://2130706433:{port}/jpeg",
        "v6": f"http://[::1]:{port}/jpeg",
        "mapped": f"http://[::ffff:127.0.0.1]:{port}/jpeg",
    }
    out = _batch(urls, FetchStageOptions())
    assert list(out["status"]) == [Status.BLOCKED] * 5
    assert list(out["attempts"]) == [0] * 5
    assert out["http_status"].isna().all()
    assert out.loc["ip", "error"] == "127.0.0.1 resolves to loopback address 127.0.0.1"
    assert out.loc["decimal", "error"] == "2130706433 resolves to loopback address 127.0.0.1"
    assert len(http_server.log) == requests_before


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback address 127.0.0.1"),
        ("10.1.2.3", "private address 10.1.2.3"),
        ("172.16.0.1", "private address 172.16.0.1"),
        ("192.168.1.1", "private address 192.168.1.1"),
        ("169.254.169.254", "link-local address 169.254.169.254"),
        ("0.0.0.0", "unspecified address 0.0.0.0"),
        ("224.0.0.1", "multicast address 224.0.0.1"),
        ("240.0.0.1", "private address 240.0.0.1"),
        ("100.64.0.1", "not globally routable address 100.64.0.1"),
        ("::1", "loopback address ::1"),
        ("fe80::1", "link-local address fe80::1"),
        ("fd00::1", "private address fd00::1"),
        ("::ffff:10.0.0.1", "private address 10.0.0.1"),
        ("fec0::1", "site-local address fec0::1"),
        ("feff:ffff::1", "site-local address feff:ffff::1"),
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
    ],
)
def test_blocked_reason(address: str, reason: str | None) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) == reason


def test_allow_networks_opens_only_named_networks() -> None:
    allowed = FetchOptions(allow_networks=("10.0.0.0/8",)).allowed_networks
    assert blocked_reason(ipaddress.ip_address("10.9.9.9"), allowed) is None
    assert (
        blocked_reason(ipaddress.ip_address("192.168.0.1"), allowed)
        == "private address 192.168.0.1"
    )


def test_invalid_urls() -> None:
    urls = {
        "none": None,
        "empty": "  ",
        "ftp": "ftp://example.com/a.jpg",
        "nohost": "http:///a.jpg",
        "port": "http://example.com:99999/a.jpg",
        "text": "not a url",
        "space": "http://exa mple.com/a.jpg",
    }
    out = _batch(urls)
    assert list(out["status"]) == [Status.INVALID_URL] * len(urls)
    assert list(out["attempts"]) == [0] * len(urls)
    assert out.loc["ftp", "error"] == "unsupported scheme 'ftp'"


# ---------------------------------------------------------------- file URLs


def test_file_urls(tmp_path: Path, image_bytes) -> None:
    path = tmp_path / "a b.png"
    path.write_bytes(image_bytes("PNG", size=(50, 40)))
    url = path.as_uri()
    rooted = FetchStageOptions(file_root=str(tmp_path))
    out = _batch({"ok": url, "gone": (tmp_path / "gone.png").as_uri()}, rooted)
    assert list(out["status"]) == [Status.OK, Status.HTTP_ERROR]
    assert list(out["source"]) == ["file", "file"]
    assert out.loc["ok", "sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert out.loc["gone", "error"] == f"file not found: {tmp_path / 'gone.png'}"
    assert _batch({"ok": url}, FetchStageOptions()).loc["ok", "status"] == Status.BLOCKED


# ---------------------------------------------------------------- hashes, batch contract


def test_hash_policies(served, http_server) -> None:
    jpeg_sha = hashlib.sha256(http_server.routes["/jpeg"].body).hexdigest()
    urls = {"match": served["jpeg"], "wrong": served["jpeg"], "none": served["jpeg"]}
    hashes = {"match": jpeg_sha.upper(), "wrong": "0" * 64, "none": None}
    flag = _batch(urls, STAGE, hashes)
    assert list(flag["status"]) == [Status.OK] * 3
    assert list(flag["sha256_match"].astype(object)) == [True, False, pd.NA]
    assert flag["sha256"].eq(jpeg_sha).all()
    reject = _batch(urls, FetchStageOptions(**LOOP_KW, hash_policy="reject"), hashes)
    assert list(reject["status"]) == [Status.OK, Status.HASH_MISMATCH, Status.OK]
    assert reject.loc["wrong", "image"] is None
    assert reject.loc["wrong", "error"] == f"sha256 {jpeg_sha} != expected {'0' * 64}"
    ignore = _batch(urls, FetchStageOptions(**LOOP_KW, hash_policy="ignore"), hashes)
    assert ignore["sha256_match"].isna().all()


def test_batch_contract(served) -> None:
    pdf = pd.DataFrame(
        {
            "uid": ["a", "b", None, "a", "c"],
            "url": [served["jpeg"], "ftp://x", served["png"], served["png"], served["missing"]],
            "sha256": [None] * 5,
        }
    )
    out = process_batch(pdf, STAGE, run_id="r9")
    assert list(out["uid"]) == ["a", "b", "c"]  # null and duplicate uids dropped
    assert list(out["status"]) == [Status.OK, Status.INVALID_URL, Status.HTTP_ERROR]
    assert {c: str(t) for c, t in out.dtypes.items()} == IMAGES_DTYPES
    assert str(out["fetched_at"].dt.tz) == "UTC"
    no_hash_column = process_batch(pdf[["uid", "url"]].head(1), STAGE, run_id="r9")
    assert list(no_hash_column["status"]) == [Status.OK]
    import pyarrow as pa

    table = pa.Table.from_pandas(
        out, schema=schema.arrow_schema(schema.IMAGES_SCHEMA), preserve_index=False, safe=False
    )
    assert table.schema.names == IMAGES_COLUMNS
    assert table.column("image").type == pa.binary()
    empty = process_batch(pdf.head(0), STAGE, run_id="r9")
    assert (list(empty.columns), len(empty)) == (IMAGES_COLUMNS, 0)
    assert {c: str(t) for c, t in empty.dtypes.items()} == IMAGES_DTYPES


def test_every_route_returns_a_status(served) -> None:
    out = _batch(
        {name: url for name, url in served.items() if name not in ("drip", "slow-headers")}
    )
    assert set(out["status"]) <= Status.ALL
    assert out.loc[out["status"] == Status.OK, "image"].notna().all()
    assert out.loc[out["status"] != Status.OK, "image"].isna().all()
    # Every route's row fits the images table's Arrow schema: pyarrow refuses a null in
    # the non-nullable columns (uid, status, attempts, run_id).
    import pyarrow as pa

    arrow = schema.arrow_schema(schema.IMAGES_SCHEMA)
    assert [f.name for f in arrow if not f.nullable] == ["uid", "status", "attempts", "run_id"]
    table = pa.Table.from_pandas(out, schema=arrow, preserve_index=False, safe=False)
    assert table.num_rows == len(out) > 10


def test_images_frame_refuses_a_missing_run_id() -> None:
    pdf = pd.DataFrame({"uid": ["a"], "url": ["ftp://x"], "sha256": [None]})
    with pytest.raises(ValueError, match="run_id"):
        process_batch(pdf, STAGE, run_id="")


def test_concurrency_is_bounded(http_server, route_cls, image_bytes) -> None:
    body = image_bytes("PNG", size=(8, 8))
    urls = {f"c{i}": http_server.add(f"/conc{i}", route_cls(body=body)) for i in range(12)}
    opts = FetchStageOptions(allow_networks=("127.0.0.0/8",), concurrency=3)
    out = _batch(urls, opts)
    assert list(out["status"]) == [Status.OK] * 12


def test_map_bounded_runs_exactly_concurrency_at_once() -> None:
    """Counts kept by the code under test's caller, not clocks: the first 3 items
    meet at a barrier (so 3 must run at once), and no more than 3 ever do."""
    lock = threading.Lock()
    active = peak = 0
    barrier = threading.Barrier(3, timeout=30)

    def work(i: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        if i < 3:
            barrier.wait()  # BrokenBarrierError (a failure) if fewer than 3 run at once
        with lock:
            active -= 1
        return i

    assert list(map_bounded(work, range(12), 3)) == list(range(12))
    assert peak == 3


def test_map_bounded_keeps_order() -> None:
    def slow_square(x: int) -> int:
        time.sleep(0.001 * (10 - x))
        return x * x

    assert list(map_bounded(slow_square, range(10), 4)) == [x * x for x in range(10)]
    assert list(map_bounded(slow_square, range(3), 1)) == [0, 1, 4]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"connect_timeout_s": 0}, "connect_timeout_s"),
        ({"deadline_s": -1.0}, "deadline_s"),
        ({"retries": -1}, "retries"),
        ({"backoff_s": -0.1}, "backoff_s"),
        ({"max_redirects": 1.5}, "max_redirects"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"concurrency": 0}, "concurrency"),
        ({"user_agent": ""}, "user_agent"),
        ({"respect_opt_out": 1}, "respect_opt_out"),
        ({"allow_networks": "127.0.0.0/8"}, "allow_networks"),
        ({"allow_networks": ("not-a-cidr",)}, "allow_networks"),
    ],
)
def test_fetch_options_validation(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}"):
        FetchOptions(**kwargs)


def test_stage_options_validation() -> None:
    with pytest.raises(ValueError, match="^hash_policy"):
        FetchStageOptions(hash_policy="strict")
    assert FetchStageOptions().image == ImageOptions()
    assert FetchOptions(allow_networks=["10.0.0.0/8"]).allow_networks == ("10.0.0.0/8",)


# ---------------------------------------------------------------- https


@pytest.fixture(scope="module")
def self_signed_https(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not available to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_https_verifies_certificates(self_signed_https) -> None:
    result = fetch_url(f"https://127.0.0.1:{self_signed_https}/a.jpg", LOOP)
    assert result.status == Status.CONNECTION_ERROR
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    # one retry policy: a connection error is retried, in a run as on a rerun
    assert result.attempts == 3


def test_process_partition_streams_batches_into_fixed_frames(served) -> None:
    from kale_spark.fetch.rows import process_partition

    batches = [
        (pd.DataFrame({"uid": [f"b{b}r{r}" for r in range(3)], "url": [served["png"]] * 3}), None)
        for b in range(4)
    ]
    frames = list(process_partition(iter(batches), STAGE, "run-p", False, out_rows=5))
    assert [len(f) for f in frames] == [5, 5, 2]  # 12 rows across 4 input batches
    out = pd.concat(frames)
    assert list(out["uid"]) == [f"b{b}r{r}" for b in range(4) for r in range(3)]
    assert set(out["status"]) == {Status.OK}
    assert all({c: str(t) for c, t in f.dtypes.items()} == IMAGES_DTYPES for f in frames)
