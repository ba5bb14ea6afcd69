"""Decode, orient, guard and resize images: pure functions over bytes.

Nothing here touches the network, the file system or Spark. The fetch stage
(``kale_spark.fetch_batch``) calls :func:`decode_and_resize` on the bytes that
``kale_spark.fetching`` or an img2dataset shard produced.

Row statuses of the ``images`` table are defined once, in :class:`Status`.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass

from PIL import Image, ImageOps

logger = logging.getLogger(__name__)


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
        }
    )


def is_retryable(status: str, http_status: int | None = None) -> bool:
    """Whether a row with this outcome is worth fetching again on a rerun.

    Timeouts, connection errors, and HTTP 5xx / 429 are; everything else
    (4xx, not an image, blocked, opted out, ...) is a permanent answer.
    """
    if status in (Status.TIMEOUT, Status.CONNECTION_ERROR):
        return True
    if status == Status.HTTP_ERROR and http_status is not None:
        return http_status == 429 or 500 <= http_status <= 599
    return False


RESIZE_MODES = ("longer", "shorter")


@dataclass(frozen=True)
class ImageOptions:
    """How fetched images are decoded and resized.

    resolution: target size in pixels of the side chosen by ``resize_mode``
        (490, the resolution of KALE's teacher and student).
    resize_mode: "longer" fits the longer side into ``resolution`` (the whole
        image fits a resolution x resolution box); "shorter" makes the shorter
        side ``resolution``. Aspect ratio is always kept.
    max_pixels: images whose header declares more pixels are refused
        (status too_large) before decoding. Default is Pillow's own limit.
    quality: JPEG quality of the re-encoded image.
    upscale: also enlarge images smaller than the target (off by default).
    """

    resolution: int = 490
    resize_mode: str = "longer"
    max_pixels: int = 89_478_485
    quality: int = 90
    upscale: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.resolution, int) or self.resolution < 1:
            raise ValueError(f"resolution must be a positive int, got {self.resolution!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive int, got {self.max_pixels!r}")
        if not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be an int in 1..100, got {self.quality!r}")
        if not isinstance(self.upscale, bool):
            raise ValueError(f"upscale must be a bool, got {self.upscale!r}")


@dataclass(frozen=True)
class ImageResult:
    """Outcome of :func:`decode_and_resize`; ``image`` is set only when ok."""

    status: str
    error: str | None = None
    image: bytes | None = None
    original_width: int | None = None
    original_height: int | None = None
    width: int | None = None
    height: int | None = None
    mime: str | None = None
    sha256: str | None = None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_matches(actual: str | None, expected: str | None) -> bool | None:
    """Compare two hex digests; None when either is unknown."""
    if not actual or not expected or not isinstance(expected, str):
        return None
    return actual.strip().lower() == expected.strip().lower()


# (prefix offset, prefix bytes, mime) checked in order; see sniff_mime for the
# formats that need more than one fixed prefix.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"BM", "image/bmp"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (0, b"\x00\x00\x01\x00", "image/x-icon"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "image/jp2"),
    (0, b"\xff\x4f\xff\x51", "image/jp2"),
)
_FTYP_BRANDS = {
    b"avif": "image/avif",
    b"avis": "image/avif",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif",
}


def sniff_mime(data: bytes) -> str | None:
    """Image MIME type recognised from magic bytes, or None if not an image.

    Extensions and Content-Type headers lie (an HTML error page served with
    200 and ``image/jpeg``); the first bytes do not.
    """
    head = data[:32]
    for offset, magic, mime in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            if mime == "image/bmp" and len(head) < 14:
                return None
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in _FTYP_BRANDS:
        return _FTYP_BRANDS[head[8:12]]
    return None


def target_size(width: int, height: int, opts: ImageOptions) -> tuple[int, int]:
    """Final (width, height) for an image of this (oriented) size."""
    side = max(width, height) if opts.resize_mode == "longer" else min(width, height)
    scale = opts.resolution / side
    if scale >= 1.0 and not opts.upscale:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
_WHITE = (255, 255, 255)


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block must not lose the image
        return 1


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    """Scale a 16-bit / 32-bit int / float single-channel image to 8-bit L.

    Pillow's own ``convert`` clips such values at 255 (a mid-grey 16-bit image
    would come out white), so scale by the range instead.
    """
    import numpy as np

    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        finite = arr[np.isfinite(arr)]
        peak = float(finite.max()) if finite.size else 0.0
        scaled = arr * 255.0 if peak <= 1.0 else arr / 257.0 if peak > 255.0 else arr
    else:
        arr = arr.astype(np.int64)
        # 16-bit modes, and mode I holding 16-bit samples (PNG, TIFF), use the
        # 0..65535 range; mode I holding 8-bit values stays as it is.
        scaled = arr / 257.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else arr
    out = np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)
    return Image.fromarray(out, mode="L")


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of any Pillow mode; transparency is composited over white."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        if img.mode == "RGB":
            return img
    if img.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        return _high_bit_depth_to_l(img).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "L" and "transparency" in img.info
    ):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


def decode_and_resize(data: bytes, opts: ImageOptions) -> ImageResult:
    """Decode ``data``, apply EXIF orientation, convert to RGB, resize, re-encode.

    Never raises: a bad input returns a result with status not_an_image,
    too_large or decode_error and an error message. ``sha256`` is always the
    hash of ``data`` (DataComp's ``sha256`` is of the original bytes).
    """
    digest = sha256_hex(data)
    mime = sniff_mime(data)
    if mime is None:
        what = "empty body" if not data else f"unrecognised content starting {data[:16]!r}"
        return ImageResult(Status.NOT_AN_IMAGE, error=what, sha256=digest)
    try:
        return _decode_and_resize(data, mime, digest, opts)
    except Image.DecompressionBombError as exc:
        return ImageResult(Status.TOO_LARGE, error=_short(exc), mime=mime, sha256=digest)
    except MemoryError as exc:
        return ImageResult(Status.TOO_LARGE, error=_short(exc), mime=mime, sha256=digest)
    except Exception as exc:  # any decoder failure is a row status, never a task failure
        return ImageResult(Status.DECODE_ERROR, error=_short(exc), mime=mime, sha256=digest)


def _decode_and_resize(data: bytes, mime: str, digest: str, opts: ImageOptions) -> ImageResult:
    with Image.open(io.BytesIO(data)) as img:
        raw_w, raw_h = img.size
        if raw_w * raw_h > opts.max_pixels:
            return ImageResult(
                Status.TOO_LARGE,
                error=f"{raw_w}x{raw_h} = {raw_w * raw_h} pixels > max_pixels {opts.max_pixels}",
                mime=mime,
                sha256=digest,
            )
        swap = _orientation(img) in _SWAPPING_ORIENTATIONS
        orig_w, orig_h = (raw_h, raw_w) if swap else (raw_w, raw_h)
        final_w, final_h = target_size(orig_w, orig_h, opts)
        if img.format == "JPEG" and (final_w, final_h) != (orig_w, orig_h):
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale, never below target.
            img.draft("RGB", (final_h, final_w) if swap else (final_w, final_h))
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # first frame of an animation
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
        rgb = to_rgb(img)
        if rgb.size != (final_w, final_h):
            rgb = rgb.resize((final_w, final_h), Image.Resampling.LANCZOS, reducing_gap=3.0)
        encoded = encode_jpeg(rgb, opts.quality)
    return ImageResult(
        Status.OK,
        image=encoded,
        original_width=orig_w,
        original_height=orig_h,
        width=final_w,
        height=final_h,
        mime=mime,
        sha256=digest,
    )
