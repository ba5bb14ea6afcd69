"""Decode, orient, guard and resize images: pure functions over bytes.

Nothing here touches the network, the file system or Spark. The fetch stage
(``kale_spark.fetch.rows``) calls :func:`decode_and_resize` on the bytes that
``kale_spark.fetch.client`` or an img2dataset shard produced.

Row statuses of the ``images`` table are defined once, in ``fetch/status.py``.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image

from kale_spark.fetch.options import ImageOptions
from kale_spark.fetch.status import Status, cut_error
from kale_spark.hashing import sha256_hex

# fetch.image.resample (options.RESAMPLE_NAMES) -> Pillow's filter (antialiased when shrinking).
RESAMPLE_FILTERS = {
    "area": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "error", cut_error(self.error))


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
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_WHITE = (255, 255, 255)
_WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")
_STRIP_ROWS = 256


def _orientation(img: Image.Image) -> int:
    """EXIF orientation 1..8; 1 when the EXIF block is absent or unreadable."""
    try:
        value = int(img.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block must not lose the image
        return 1
    return value if value in _TRANSPOSE else 1


def orient(img: Image.Image, orientation: int) -> Image.Image:
    """Apply an EXIF orientation by transposing pixels; the EXIF block is never rewritten
    (re-serialising a damaged block is what loses images in ImageOps.exif_transpose)."""
    method = _TRANSPOSE.get(orientation)
    return img if method is None else img.transpose(method)


def _wide_to_l(img: Image.Image) -> Image.Image:
    """Scale a 16-bit / 32-bit int / float single-channel image to 8-bit L, strip by strip.

    Pillow's own ``convert`` clips such values at 255 (a mid-grey 16-bit image
    would come out white), so scale by the range instead. Strips of
    _STRIP_ROWS rows keep the extra memory to a few MB, never a float copy of the
    whole image.
    """
    import numpy as np

    width, height = img.size
    if img.mode.startswith("I;16"):
        scale = 1 / 257.0
    else:
        low, high = img.getextrema()
        if img.mode == "F" and isinstance(high, float) and high <= 1.0:
            scale = 255.0
        else:
            scale = 1 / 257.0 if high > 255 else 1.0
    out = Image.new("L", (width, height))
    for top in range(0, height, _STRIP_ROWS):
        box = (0, top, width, min(height, top + _STRIP_ROWS))
        strip = np.asarray(img.crop(box), dtype=np.float32) * np.float32(scale)
        strip = np.clip(np.rint(np.nan_to_num(strip)), 0, 255).astype(np.uint8)
        out.paste(Image.fromarray(strip, mode="L"), box)
    return out


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of any Pillow mode; transparency is composited over white."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        if img.mode == "RGB":
            return img
    if img.mode in _WIDE_MODES:
        return _wide_to_l(img).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "L" and "transparency" in img.info
    ):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def _resample_filter(resample: str, src: tuple[int, int], size: tuple[int, int]) -> int:
    """Pillow's filter for ``resample``; "area" only shrinks (enlarging uses bicubic)."""
    if resample == "area" and (size[0] > src[0] or size[1] > src[1]):
        return Image.Resampling.BICUBIC
    return RESAMPLE_FILTERS[resample]


def _resized_rgb(img: Image.Image, size: tuple[int, int], resample: str) -> Image.Image:
    """``img`` at ``size`` in RGB, with every full-size copy avoided.

    Wide modes become 8-bit strip by strip; a large image is first reduced in its
    own mode (a box filter, as Pillow's ``reducing_gap`` does) so the colour
    conversion, compositing and the final resize (``resample``) run on a small image.
    """
    if img.mode in _WIDE_MODES:
        img = _wide_to_l(img)
    elif img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    factor = int(min(img.width / size[0], img.height / size[1]) / 3.0)
    if factor > 1:
        try:
            img = img.reduce(factor)
        except ValueError:  # a mode reduce() does not handle: resize() copes
            pass
    rgb = to_rgb(img)
    if rgb.size != size:
        rgb = rgb.resize(size, _resample_filter(resample, rgb.size, size), reducing_gap=3.0)
    return rgb


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _short(exc: BaseException) -> str:
    return cut_error(f"{type(exc).__name__}: {exc}") or ""


# ---------------------------------------------------------------- container checks

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_ICO_ENTRIES = 64


def _embedded_size(data: bytes, offset: int) -> tuple[int, int] | None:
    """(width, height) an ICO/CUR entry's PNG or BMP header declares, if readable."""
    if data[offset : offset + 8] == _PNG_MAGIC and len(data) >= offset + 24:
        return struct.unpack(">II", data[offset + 16 : offset + 24])
    if len(data) >= offset + 12:
        width, height = struct.unpack("<ii", data[offset + 4 : offset + 12])
        return abs(width), abs(height) // 2  # a DIB's height counts the AND mask too
    return None


def container_problem(data: bytes, mime: str, opts: ImageOptions) -> str | None:
    """Why a container's declared content is refused before any decoding, or None.

    Pillow's ICO plugin decodes the embedded image inside ``Image.open``, before any
    size check could run, so the ICO directory and each entry's own header are
    read here first.
    """
    if mime != "image/x-icon" or len(data) < 6:
        return None
    count = struct.unpack("<H", data[4:6])[0]
    if count > MAX_ICO_ENTRIES:
        return f"ICO with {count} entries > {MAX_ICO_ENTRIES}"
    for i in range(count):
        entry = data[6 + 16 * i : 22 + 16 * i]
        if len(entry) < 16:
            return "ICO directory cut short"
        offset = struct.unpack("<I", entry[12:16])[0]
        size = _embedded_size(data, offset)
        if size is not None and size[0] * size[1] > opts.max_pixels:
            w, h = size
            return f"ICO entry {i}: {w}x{h} = {w * h} pixels > max_pixels {opts.max_pixels}"
    return None


# ---------------------------------------------------------------- large-decode gate


class DecodeGate:
    """Bounds how many large images one Python process decodes at once.

    ``peak`` is the most holders seen at once (the tests read it).
    """

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._sem = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.active = 0
        self.peak = 0

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._sem:
            with self._lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
            try:
                yield
            finally:
                with self._lock:
                    self.active -= 1


_GATES: dict[int, DecodeGate] = {}
_GATES_LOCK = threading.Lock()


def decode_gate(slots: int) -> DecodeGate:
    """The process's gate with ``slots`` permits (one per distinct slot count)."""
    with _GATES_LOCK:
        gate = _GATES.get(slots)
        if gate is None:
            gate = _GATES[slots] = DecodeGate(slots)
        return gate


# ---------------------------------------------------------------- decode


def decode_and_resize(data: bytes, opts: ImageOptions, digest: str | None = None) -> ImageResult:
    """Decode ``data``, apply EXIF orientation, convert to RGB, resize, re-encode.

    Never raises: a bad input returns a result with status not_an_image,
    too_large or decode_error and an error message (never a preview of the
    content). ``sha256`` is always the hash of ``data`` (DataComp's ``sha256`` is
    of the original bytes): ``digest`` when the caller has already hashed them (the
    fetch does, for its hash check), so that no image is hashed twice.
    """
    if digest is None:
        digest = sha256_hex(data)
    mime = sniff_mime(data)
    if mime is None:
        what = "empty body" if not data else f"unrecognised content ({len(data)} bytes)"
        return ImageResult(Status.NOT_AN_IMAGE, error=what, sha256=digest)
    problem = container_problem(data, mime, opts)
    if problem is not None:
        return ImageResult(Status.TOO_LARGE, error=problem, mime=mime, sha256=digest)
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
        orientation = _orientation(img)
        swap = orientation in _SWAPPING_ORIENTATIONS
        orig_w, orig_h = (raw_h, raw_w) if swap else (raw_w, raw_h)
        final_w, final_h = target_size(orig_w, orig_h, opts)
        raw_target = (final_h, final_w) if swap else (final_w, final_h)
        if img.format == "JPEG" and (final_w, final_h) != (orig_w, orig_h):
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale, never below target.
            img.draft("RGB", raw_target)
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # first frame of an animation
        decoded_w, decoded_h = img.size  # after draft
        if decoded_w * decoded_h >= opts.large_pixels:
            with decode_gate(opts.large_decodes).hold():
                img.load()
                small = _resized_rgb(img, raw_target, opts.resample)
        else:
            img.load()
            small = _resized_rgb(img, raw_target, opts.resample)
    encoded = encode_jpeg(orient(small, orientation), opts.quality)
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
