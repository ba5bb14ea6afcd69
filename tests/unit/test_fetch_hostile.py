"""Fetch against hostile servers, local files and decoder bombs (issue: fetch hardening).

Every server here is the project's own test server (tests/http_server.py) on
127.0.0.1, with raw-socket routes that drip, flood or never end.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from kale_spark.config import load_config
from kale_spark.fetch.client import fetch_url, to_uri
from kale_spark.fetch.decode import decode_and_resize, decode_gate
from kale_spark.fetch.options import FetchOptions, FetchStageOptions, ImageOptions
from kale_spark.fetch.rows import process_batch
from kale_spark.fetch.status import MAX_ERROR_CHARS, Status, is_retryable
from kale_spark.stages.fetch import stage_options

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 1.5
HOSTILE = FetchOptions(
    allow_networks=("127.0.0.0/8",),
    deadline_s=DEADLINE,
    read_timeout_s=1.0,  # longer than every drip interval below: only the wall clock cuts
    connect_timeout_s=10.0,
    retries=2,
    backoff_s=0.01,
)
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
CHUNKED_HEAD = OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.fixture(scope="module")
def hostile(http_server, route_cls, image_bytes) -> dict[str, str]:
    from tests.support import http_server as hs

    jpeg = image_bytes("JPEG", size=(64, 48))
    routes = {
        "drip-head": route_cls(raw=hs.drip(OK_HEAD + b"X-Pad: " + b"a" * 4000, 0.02)),
        "continue-flood": route_cls(raw=hs.repeat(b"", b"HTTP/1.1 100 Continue\r\n\r\n")),
        "continue-drip": route_cls(raw=hs.drip(b"HTTP/1.1 100 Continue\r\n\r\n" * 4, 0.05)),
        "chunk-drip": route_cls(raw=hs.drip(CHUNKED_HEAD + b"1" * 2000, 0.02)),
        "trailer-flood": route_cls(
            raw=hs.repeat(CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n", b"X-T: 1\r\n")
        ),
        "trailer-drip": route_cls(
            raw=hs.repeat(CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n", b"X-T: 1\r\n", 0.2)
        ),
        "trailer-bytes": route_cls(
            raw=hs.repeat(CHUNKED_HEAD + b"5\r\nhello\r\n0\r\n", b"X-T: " + b"b" * 9000 + b"\r\n")
        ),
        "endless-chunks": route_cls(
            raw=hs.repeat(CHUNKED_HEAD, b"8000\r\n" + b"c" * 0x8000 + b"\r\n")
        ),
        "robots-flood": route_cls(
            raw=hs.repeat(
                OK_HEAD
                + b"".join(b"X-Robots-Tag: noai, " + b"x" * 90 + b"\r\n" for _ in range(150))
                + b"\r\n",
                b"",
                0.05,
            )
        ),
        "noindex": route_cls(body=jpeg, headers={"X-Robots-Tag": "noindex"}),
        "too-many-429": route_cls(body=jpeg, fail_first=1, fail_status=429),
        "/bilder/stra%C3%9Fe-%C3%BC.jpg": route_cls(body=jpeg),
    }
    return {
        name: http_server.add(name if name.startswith("/") else f"/h-{name}", route)
        for name, route in routes.items()
    }


def _timed(url: str, opts: FetchOptions = HOSTILE):
    started = time.monotonic()
    result = fetch_url(url, opts)
    return result, time.monotonic() - started


# ---------------------------------------------------------------- the wall clock


@pytest.mark.parametrize("route", ["drip-head", "chunk-drip", "trailer-drip", "continue-drip"])
def test_dripping_server_is_cut_at_the_deadline(hostile, route: str) -> None:
    result, elapsed = _timed(hostile[route])
    assert result.status != Status.OK
    assert result.data is None
    assert elapsed < DEADLINE + 2.0, (route, elapsed, result)
    if route != "continue-drip":  # 4 slow 1xx then a close: ends before the deadline
        assert result.status == Status.TIMEOUT, result
        assert result.error.startswith("deadline exceeded"), result.error


def test_continue_flood_is_capped(hostile) -> None:
    result, elapsed = _timed(hostile["continue-flood"])
    assert (result.status, result.http_status) == (Status.HTTP_ERROR, 100)
    assert result.error == "more than 4 informational (1xx) responses"
    assert result.attempts == 1  # a 1xx flood is not worth a retry
    assert elapsed < DEADLINE + 2.0


def test_trailer_flood_is_capped_and_counted(hostile) -> None:
    flood, elapsed = _timed(hostile["trailer-flood"])
    assert flood.status == Status.CONNECTION_ERROR
    assert flood.error == "more than 32 trailer lines"
    assert elapsed < DEADLINE + 2.0
    # trailer bytes count against max_bytes like every other byte received
    capped = FetchOptions(**{**HOSTILE.__dict__, "max_bytes": 50_000})
    big, elapsed = _timed(hostile["trailer-bytes"], capped)
    assert (big.status, big.error) == (Status.TOO_LARGE, "response exceeds max_bytes 50000")
    endless, _ = _timed(hostile["endless-chunks"], capped)
    assert (endless.status, endless.attempts) == (Status.TOO_LARGE, 1)


def test_connect_gets_only_the_time_left() -> None:
    """A listener whose accept queue is full drops SYNs: connect hangs until cut."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue (never accepted)
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(server.getsockname())
            fillers.append(s)
        time.sleep(0.1)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/x.jpg"
        result, elapsed = _timed(url)
    finally:
        for s in fillers:
            s.close()
        server.close()
    assert result.status in (Status.TIMEOUT, Status.CONNECTION_ERROR)
    assert elapsed < DEADLINE + 2.0  # connect_timeout_s is 10 s: the deadline cut it


def test_dns_lookup_has_a_time_limit(monkeypatch) -> None:
    """A resolver that never answers (mocked: no hanging DNS server can run here)."""

    def hang(*args, **kwargs):
        time.sleep(DEADLINE + 3)
        raise socket.gaierror("too late")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    opts = FetchOptions(**{**HOSTILE.__dict__, "dns_timeout_s": 0.5, "retries": 0})
    result, elapsed = _timed("http://images.example.com/a.jpg", opts)
    assert result.status == Status.TIMEOUT
    assert result.error == "dns: images.example.com: no answer in 0.5s"
    assert elapsed < 1.5


# ---------------------------------------------------------------- rules


def test_noindex_opts_out_by_default(hostile) -> None:
    result = fetch_url(hostile["noindex"], HOSTILE)
    assert (result.status, result.error) == (Status.OPTED_OUT, "X-Robots-Tag: noindex")
    narrow = FetchOptions(**{**HOSTILE.__dict__, "opt_out_directives": ("noai",)})
    assert fetch_url(hostile["noindex"], narrow).status == Status.OK


def test_errors_are_cut_to_500_chars(hostile) -> None:
    result = fetch_url(hostile["robots-flood"], HOSTILE)
    assert result.status == Status.OPTED_OUT
    assert len(result.error) == MAX_ERROR_CHARS == 500
    assert result.error.endswith("...")


def test_429_is_retried_in_a_run_as_on_a_rerun(hostile) -> None:
    assert is_retryable(Status.HTTP_ERROR, 429)
    result = fetch_url(hostile["too-many-429"], HOSTILE)
    assert (result.status, result.attempts) == (Status.OK, 2)


def test_non_ascii_url_is_fetched(http_server, hostile) -> None:
    url = http_server.url("/bilder/straße-ü.jpg")
    result = fetch_url(url, HOSTILE)
    assert (result.status, result.attempts) == (Status.OK, 1), result.error
    assert http_server.log[-1][1] == "/bilder/stra%C3%9Fe-%C3%BC.jpg"
    assert to_uri("http://bücher.example/ü?q=é") == "http://xn--bcher-kva.example/%C3%BC?q=%C3%A9"
    assert to_uri("http://example.com/a%20b.jpg") == "http://example.com/a%20b.jpg"


# ---------------------------------------------------------------- file://


@pytest.mark.parametrize("profile", ["local", "small", "paper"])
def test_etc_passwd_is_refused_in_every_profile(profile: str) -> None:
    cfg = load_config(ROOT / "conf" / f"{profile}.yaml")
    for url in ("file:///etc/passwd", "file:///proc/self/environ", "file://localhost/etc/hosts"):
        result = fetch_url(url, stage_options(cfg.fetch))
        assert result.status == Status.BLOCKED, (profile, url)
        assert result.data is None
        assert "root:" not in result.error


def test_file_urls_only_under_file_root(tmp_path: Path, image_bytes) -> None:
    root = tmp_path / "sample"
    root.mkdir()
    good = root / "a b.png"
    good.write_bytes(image_bytes("PNG", size=(50, 40)))
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    (root / "link.png").symlink_to(secret)
    os.mkfifo(root / "pipe.png")
    opts = FetchStageOptions(file_root=str(root), deadline_s=1.0)
    urls = {
        "ok": good.as_uri(),
        "gone": (root / "gone.png").as_uri(),
        "outside": secret.as_uri(),
        "dotdot": f"file://{root}/../secret.txt",
        "link": (root / "link.png").as_uri(),
        "fifo": (root / "pipe.png").as_uri(),
        "dir": root.as_uri(),
    }
    started = time.monotonic()
    out = process_batch(
        __import__("pandas").DataFrame({"uid": list(urls), "url": list(urls.values())}),
        opts,
        run_id="r",
    ).set_index("uid")
    assert time.monotonic() - started < 5.0  # the FIFO did not block
    expected = {
        "ok": Status.OK,
        "gone": Status.HTTP_ERROR,
        "outside": Status.BLOCKED,
        "dotdot": Status.BLOCKED,
        "link": Status.BLOCKED,
        "fifo": Status.BLOCKED,
        "dir": Status.BLOCKED,
    }
    assert out["status"].to_dict() == expected
    assert out.loc["fifo", "error"] == f"{root / 'pipe.png'} is not a regular file"
    assert out.loc["outside", "error"] == f"{secret} is outside fetch.file_root"
    assert not out["error"].fillna("").str.contains("hunter2").any()
    off = FetchStageOptions()  # file_root "" by default: file:// is off
    assert fetch_url(good.as_uri(), off).error == "file:// URLs are off (fetch.file_root is empty)"
    small = FetchStageOptions(file_root=str(root), max_bytes=10)
    assert fetch_url(good.as_uri(), small).status == Status.TOO_LARGE


def test_not_an_image_error_has_no_content_preview(tmp_path: Path) -> None:
    (tmp_path / "env.jpg").write_bytes(b"AWS_SECRET_ACCESS_KEY=abc123\n" * 3)
    opts = FetchStageOptions(file_root=str(tmp_path))
    out = process_batch(
        __import__("pandas").DataFrame({"uid": ["u"], "url": [(tmp_path / "env.jpg").as_uri()]}),
        opts,
        run_id="r",
    )
    assert (out.loc[0, "status"], out.loc[0, "error"]) == (
        Status.NOT_AN_IMAGE,
        "unrecognised content (87 bytes)",
    )


# ---------------------------------------------------------------- decoder memory

_PEAK_SCRIPT = """
import resource, sys
from kale_spark.fetch.decode import decode_and_resize
from kale_spark.fetch.options import ImageOptions
data = open(sys.argv[1], "rb").read()
decode_and_resize(b"\\xff\\xd8\\xff", ImageOptions())  # warm imports
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = decode_and_resize(data, ImageOptions())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(result.status, result.width, result.height, (after - before) // 1024)
print(result.error)
"""


def _decode_in_child(path: Path) -> tuple[str, str, int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    first, error = done.stdout.strip().split("\n", 1)
    status, width, height, grown_mb = first.split()
    return status, f"{width}x{height}", int(grown_mb), error


def test_16_bit_png_6000x6000_peaks_under_300_mb(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    img = Image.new("I;16", (6000, 6000), 30000)
    img.paste(60000, (0, 0, 3000, 6000))
    img.save(path, format="PNG")
    del img
    assert path.stat().st_size < 200_000
    status, size, grown_mb, _error = _decode_in_child(path)
    assert (status, size) == (Status.OK, "490x490")
    assert grown_mb < 300, f"decode grew the worker by {grown_mb} MB"


def _ico_with_png(png: bytes) -> bytes:
    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 6 + 16)
    return header + entry + png


def test_ico_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("L", (10_000, 10_000)).save(buf, format="PNG")
    ico = _ico_with_png(buf.getvalue())
    assert len(ico) < 200_000
    path = tmp_path / "bomb.ico"
    path.write_bytes(ico)
    status, _size, grown_mb, error = _decode_in_child(path)
    assert status == Status.TOO_LARGE
    assert error == "ICO entry 0: 10000x10000 = 100000000 pixels > max_pixels 89478485"
    assert grown_mb < 50  # decoding it would take 100 MB at least


def test_small_ico_still_decodes() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 0, 255)).save(buf, format="ICO", sizes=[(32, 32)])
    result = decode_and_resize(buf.getvalue(), ImageOptions())
    assert (result.status, result.mime, result.width) == (Status.OK, "image/x-icon", 32)


def test_large_decodes_wait_for_a_slot(image_bytes) -> None:
    from kale_spark.fetch.client import map_bounded

    data = image_bytes("PNG", size=(300, 300))
    opts = ImageOptions(large_pixels=50_000, large_decodes=1)
    results = list(map_bounded(lambda d: decode_and_resize(d, opts), [data] * 12, 6))
    assert [r.status for r in results] == [Status.OK] * 12
    gate = decode_gate(1)
    assert gate.peak == 1 and gate.active == 0  # never two large decodes at once
    small = ImageOptions(large_pixels=10**9, large_decodes=7)
    decode_and_resize(data, small)
    assert decode_gate(7).peak == 0  # a small image never waits for the gate


def test_exif_that_cannot_be_reserialised_keeps_the_image() -> None:
    entries = [
        struct.pack("<HHII", 0x0112, 3, 1, 6),
        struct.pack("<HHIf", 0x011A, 11, 1, float("nan")),
    ]
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 16
    buf = io.BytesIO()
    raw = Image.new("RGB", (200, 100), (255, 0, 0))
    raw.paste((0, 0, 255), (100, 0, 200, 100))
    raw.save(buf, format="JPEG", exif=exif, quality=95)
    with Image.open(io.BytesIO(buf.getvalue())) as broken, pytest.raises(ValueError):
        ImageOps.exif_transpose(broken)  # the defect is real: Pillow cannot rewrite it
    result = decode_and_resize(buf.getvalue(), ImageOptions())
    assert result.status == Status.OK, result.error
    assert (result.width, result.height) == (100, 200)
    out = Image.open(io.BytesIO(result.image))
    assert out.getpixel((50, 20))[0] > 200  # raw left (red) is on top: rotated
