"""kale_spark.fetch.decode: sniffing, guards, orientation, colour modes, resizing."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import pytest
from PIL import Image

from kale_spark.fetch.decode import decode_and_resize, sha256_matches, sniff_mime, target_size
from kale_spark.fetch.options import ImageOptions
from kale_spark.fetch.status import Status, is_retryable

DEFAULT = ImageOptions()


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _close(pixel: tuple[int, ...], expected: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel, expected, strict=True))


def _png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose IHDR claims width x height."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes of header data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


# ---------------------------------------------------------------- sniffing


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
    ],
)
def test_sniff_and_decode_each_format(image_bytes, fmt: str, mime: str) -> None:
    data = image_bytes(fmt, size=(40, 30))
    assert sniff_mime(data) == mime
    result = decode_and_resize(data, DEFAULT)
    assert result.status == Status.OK, result.error
    assert result.mime == mime
    assert (result.original_width, result.original_height) == (40, 30)
    assert (result.width, result.height) == (40, 30)
    out = _open(result.image)
    assert (out.format, out.mode, out.size) == ("JPEG", "RGB", (40, 30))


def test_a_digest_the_caller_computed_is_used_not_recomputed(image_bytes) -> None:
    data = image_bytes("PNG", size=(40, 30))
    assert decode_and_resize(data, DEFAULT).sha256 == hashlib.sha256(data).hexdigest()
    given = "ab" * 32  # not the bytes' hash: proves the given digest is the one kept
    result = decode_and_resize(data, DEFAULT, digest=given)
    assert (result.status, result.sha256) == (Status.OK, given)
    bad = decode_and_resize(b"<html>gone</html>", DEFAULT, digest=given)
    assert (bad.status, bad.sha256) == (Status.NOT_AN_IMAGE, given)


def test_sniff_ignores_non_images() -> None:
    assert sniff_mime(b"<!DOCTYPE html><html><body>404</body></html>") is None
    assert sniff_mime(b"") is None
    assert sniff_mime(b"BM") is None  # too short to be a bitmap
    assert sniff_mime(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None


def test_html_page_is_not_an_image() -> None:
    result = decode_and_resize(b"<html><body>Sorry, this image is gone</body></html>", DEFAULT)
    assert result.status == Status.NOT_AN_IMAGE
    assert result.image is None
    # the error never quotes the content (a file:// or private answer must not leak)
    assert result.error == "unrecognised content (51 bytes)"


def test_empty_body_is_not_an_image() -> None:
    result = decode_and_resize(b"", DEFAULT)
    assert (result.status, result.error) == (Status.NOT_AN_IMAGE, "empty body")
    assert result.sha256 == hashlib.sha256(b"").hexdigest()


def test_truncated_jpeg_is_decode_error(image_bytes) -> None:
    data = image_bytes("JPEG", size=(300, 200), color=(10, 200, 10))
    result = decode_and_resize(data[: len(data) // 2], DEFAULT)
    assert result.status == Status.DECODE_ERROR
    assert result.mime == "image/jpeg"
    assert result.image is None
    assert "truncated" in result.error


# ---------------------------------------------------------------- guards


def test_decompression_bomb_is_too_large_without_decoding() -> None:
    bomb = _png_with_declared_size(100_000, 100_000)
    assert len(bomb) < 100
    result = decode_and_resize(bomb, DEFAULT)
    assert result.status == Status.TOO_LARGE
    assert result.mime == "image/png"
    assert result.image is None


def test_max_pixels_checked_from_header() -> None:
    declared = _png_with_declared_size(20_000, 5_000)  # 1e8 pixels, pixel data absent
    with pytest.warns(Image.DecompressionBombWarning):
        result = decode_and_resize(declared, DEFAULT)
    assert result.status == Status.TOO_LARGE
    assert result.error == "20000x5000 = 100000000 pixels > max_pixels 89478485"


def test_max_pixels_option(image_bytes) -> None:
    data = image_bytes("PNG", size=(100, 100))
    result = decode_and_resize(data, ImageOptions(max_pixels=9_999))
    assert result.status == Status.TOO_LARGE
    assert result.error == "100x100 = 10000 pixels > max_pixels 9999"
    assert decode_and_resize(data, ImageOptions(max_pixels=10_000)).status == Status.OK


# ---------------------------------------------------------------- resizing


def test_resize_longer_side_uses_jpeg_draft(image_bytes) -> None:
    data = image_bytes("JPEG", size=(3000, 2000), color=(0, 0, 255))
    result = decode_and_resize(data, DEFAULT)
    assert result.status == Status.OK
    assert (result.original_width, result.original_height) == (3000, 2000)
    assert (result.width, result.height) == (490, 327)
    out = _open(result.image)
    assert out.size == (490, 327)
    assert _close(out.getpixel((245, 160)), (0, 0, 255))


def test_resize_shorter_side(image_bytes) -> None:
    data = image_bytes("PNG", size=(1000, 500))
    result = decode_and_resize(data, ImageOptions(resize_mode="shorter"))
    assert (result.width, result.height) == (980, 490)


def test_never_upscale_unless_asked(image_bytes) -> None:
    data = image_bytes("PNG", size=(100, 50))
    assert (decode_and_resize(data, DEFAULT).width, decode_and_resize(data, DEFAULT).height) == (
        100,
        50,
    )
    up = decode_and_resize(data, ImageOptions(upscale=True))
    assert (up.width, up.height) == (490, 245)


def test_target_size_rounding() -> None:
    assert target_size(3000, 2000, DEFAULT) == (490, 327)
    assert target_size(2000, 3000, DEFAULT) == (327, 490)
    assert target_size(490, 490, DEFAULT) == (490, 490)
    assert target_size(10_000, 1, DEFAULT) == (490, 1)
    assert target_size(600, 400, ImageOptions(resolution=224, resize_mode="shorter")) == (336, 224)


def test_quality_changes_output_size(image_bytes) -> None:
    img = Image.effect_noise((256, 256), 64).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    low = decode_and_resize(buf.getvalue(), ImageOptions(quality=20))
    high = decode_and_resize(buf.getvalue(), ImageOptions(quality=95))
    assert len(low.image) < len(high.image)


# ---------------------------------------------------------------- modes and orientation


def test_exif_orientation_applied() -> None:
    raw = Image.new("RGB", (200, 100), (255, 0, 0))
    raw.paste((0, 0, 255), (100, 0, 200, 100))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display = raw rotated 90 degrees clockwise
    buf = io.BytesIO()
    raw.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    result = decode_and_resize(buf.getvalue(), DEFAULT)
    assert result.status == Status.OK
    assert (result.original_width, result.original_height) == (100, 200)
    assert (result.width, result.height) == (100, 200)
    out = _open(result.image)
    assert out.size == (100, 200)
    assert _close(out.getpixel((50, 20)), (255, 0, 0))  # raw left is now on top
    assert _close(out.getpixel((50, 180)), (0, 0, 255))
    assert 0x0112 not in out.getexif()


def test_exif_orientation_with_resize() -> None:
    exif = Image.Exif()
    exif[0x0112] = 8
    buf = io.BytesIO()
    Image.new("RGB", (1200, 800), (9, 9, 9)).save(buf, format="JPEG", exif=exif.tobytes())
    result = decode_and_resize(buf.getvalue(), DEFAULT)
    assert (result.original_width, result.original_height) == (800, 1200)
    assert (result.width, result.height) == (327, 490)
    assert _open(result.image).size == (327, 490)


def test_cmyk_jpeg_to_rgb(image_bytes) -> None:
    data = image_bytes("JPEG", size=(32, 32), mode="CMYK", color=(0, 255, 255, 0))
    assert _open(data).mode == "CMYK"
    result = decode_and_resize(data, DEFAULT)
    assert result.status == Status.OK
    out = _open(result.image)
    assert out.mode == "RGB"
    assert _close(out.getpixel((16, 16)), (255, 0, 0))


@pytest.mark.parametrize(("mode", "fmt"), [("I;16", "PNG"), ("I", "TIFF"), ("I;16", "TIFF")])
def test_high_bit_depth_is_scaled_not_clipped(image_bytes, mode: str, fmt: str) -> None:
    data = image_bytes(fmt, size=(16, 16), mode=mode, color=32768)
    assert _open(data).mode == mode
    result = decode_and_resize(data, DEFAULT)
    assert result.status == Status.OK
    assert _close(_open(result.image).getpixel((8, 8)), (128, 128, 128), tol=3)


def test_grayscale_to_rgb(image_bytes) -> None:
    result = decode_and_resize(image_bytes("PNG", mode="L", color=77), DEFAULT)
    out = _open(result.image)
    assert out.mode == "RGB"
    assert _close(out.getpixel((5, 5)), (77, 77, 77), tol=3)


def test_alpha_composited_over_white(image_bytes) -> None:
    transparent = decode_and_resize(image_bytes("PNG", mode="RGBA", color=(255, 0, 0, 0)), DEFAULT)
    assert _close(_open(transparent.image).getpixel((5, 5)), (255, 255, 255), tol=3)
    half = decode_and_resize(image_bytes("PNG", mode="RGBA", color=(0, 0, 0, 128)), DEFAULT)
    assert _close(_open(half.image).getpixel((5, 5)), (127, 127, 127), tol=4)
    la = decode_and_resize(image_bytes("PNG", mode="LA", color=(0, 0)), DEFAULT)
    assert _close(_open(la.image).getpixel((5, 5)), (255, 255, 255), tol=3)


def test_palette_with_transparency_over_white() -> None:
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 255, 0] + [0, 0, 0] * 255)
    buf = io.BytesIO()
    img.save(buf, format="GIF", transparency=0)
    result = decode_and_resize(buf.getvalue(), DEFAULT)
    assert result.status == Status.OK
    assert _close(_open(result.image).getpixel((10, 10)), (255, 255, 255), tol=3)


def test_animation_keeps_first_frame() -> None:
    frames = [Image.new("RGB", (30, 30), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    result = decode_and_resize(buf.getvalue(), DEFAULT)
    assert result.status == Status.OK
    assert _close(_open(result.image).getpixel((15, 15)), (255, 0, 0), tol=20)


# ---------------------------------------------------------------- hashes, statuses, options


def test_sha256_is_of_input_bytes(image_bytes) -> None:
    data = image_bytes("PNG")
    result = decode_and_resize(data, DEFAULT)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert sha256_matches(result.sha256, result.sha256.upper()) is True
    assert sha256_matches(result.sha256, "0" * 64) is False
    assert sha256_matches(result.sha256, None) is None


def test_retryable_statuses() -> None:
    assert is_retryable(Status.TIMEOUT)
    assert is_retryable(Status.CONNECTION_ERROR)
    assert is_retryable(Status.HOST_SKIPPED)  # the next run tries the host again
    assert is_retryable(Status.HTTP_ERROR, 503)
    assert is_retryable(Status.HTTP_ERROR, 429)
    assert not is_retryable(Status.HTTP_ERROR, 404)
    assert not is_retryable(Status.HTTP_ERROR, None)
    again = {Status.TIMEOUT, Status.CONNECTION_ERROR, Status.HOST_SKIPPED}
    assert not any(is_retryable(s) for s in Status.ALL - again)
    assert len(Status.ALL) == 14


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"resolution": 0}, "resolution"),
        ({"resize_mode": "both"}, "resize_mode"),
        ({"max_pixels": -1}, "max_pixels"),
        ({"quality": 101}, "quality"),
        ({"upscale": "yes"}, "upscale"),
        ({"resample": "cubic"}, "resample"),
    ],
)
def test_image_options_validation(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field} "):
        ImageOptions(**kwargs)


def test_resample_option_validation() -> None:
    with pytest.raises(ValueError, match="^resample "):
        ImageOptions(resample="nearest")
    assert ImageOptions().resample == "area"  # DataComp's (img2dataset's) downscaling


def _step_png(width: int = 1000, height: int = 40) -> bytes:
    """Left half grey 64, right half grey 192 (the edge falls on an output pixel edge)."""
    img = Image.new("L", (width, height), 64)
    img.paste(192, (width // 2, 0, width, height))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(("resample", "blurs"), [("area", False), ("lanczos", True)])
def test_resample_filter_is_applied(resample: str, blurs: bool) -> None:
    opts = ImageOptions(resolution=490, resample=resample, quality=100)
    result = decode_and_resize(_step_png(), opts)
    assert result.status == Status.OK, result.error
    assert (result.width, result.height) == (490, 20)
    values = set(_open(result.image).convert("L").get_flattened_data())
    # An area average of an aligned edge has no mixed pixel; Lanczos spreads the edge
    # over several (and rings past both greys).
    mixed = {v for v in values if 68 < v < 188}
    assert bool(mixed) is blurs, sorted(values)
