"""The fetch options: plain frozen dataclasses with their validation, nothing else.

The ``fetch`` section of a config holds a ``FetchStageOptions`` (config.FetchConfig),
and the client, decoder and row code take these objects; this module imports only the
standard library, so loading a config loads no pandas, Pillow or Spark.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_USER_AGENT = "kale-spark/0.1 (+https://github.com/kale-spark)"
# img2dataset's default `disallowed_header_directives`.
DEFAULT_OPT_OUT_DIRECTIVES = ("noai", "noimageai", "noindex", "noimageindex")
RESIZE_MODES = ("longer", "shorter")
# The names of decode.RESAMPLE_FILTERS (Pillow's filters are looked up there).
RESAMPLE_NAMES = ("area", "bilinear", "bicubic", "lanczos")


def _positive_number(name: str, value: object, *, zero_ok: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value < 0 or (value == 0 and not zero_ok):  # type: ignore[operator]
        bound = ">= 0" if zero_ok else "> 0"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")


@dataclass(frozen=True)
class FetchOptions:
    """How image bytes are fetched (the ``fetch.*`` keys of a profile).

    deadline_s: wall clock of one row: DNS, connects, TLS, headers, 1xx, body,
        chunk framing, trailers, redirects, retries and their backoff (``timeout``).
    connect_timeout_s / read_timeout_s / dns_timeout_s: the most one connect,
        one silence between two reads, one DNS lookup may take (never more than
        the time left before the deadline).
    retries: extra attempts when :func:`kale_spark.fetch.decode.is_retryable` says so
        (timeout, connection error, HTTP 429 and 5xx); ``backoff_s * 2**n``
        seconds apart. The same rule picks the rows a rerun fetches again.
    max_redirects: redirect hops followed before ``too_many_redirects``.
    max_bytes: cap on the bytes received per attempt, all of them (``too_large``);
        also the cap of a file:// read and of a WebDataset entry.
    user_agent: sent with every request; its first token (before "/") is the
        name matched by user-agent-scoped ``X-Robots-Tag`` directives.
    respect_opt_out / opt_out_directives: skip responses whose ``X-Robots-Tag``
        names one of these directives (status ``opted_out``); the default is
        img2dataset's list.
    allow_networks: CIDRs exempt from the network-safety block, e.g.
        ("127.0.0.0/8",) for a local test server. Empty by default.
    file_root: file:// URLs are read only below this folder; "" turns file://
        off (the default). Only regular files are read.
    concurrency: fetch threads per Spark task.
    per_host_concurrency: connections a task opens to one host (registered domain) at
        once; the fetch stage gives each host's rows to one task (or ``host_salt``
        tasks for a big host), which bounds the whole cluster's connections to it.
    host_fail_limit: connection errors or 429s in a row after which a task skips the
        host's remaining rows (``host_skipped``, retried by the next run).
    """

    deadline_s: float = 30.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 15.0
    dns_timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.5
    max_redirects: int = 5
    max_bytes: int = 32 * 1024 * 1024
    user_agent: str = DEFAULT_USER_AGENT
    respect_opt_out: bool = True
    opt_out_directives: tuple[str, ...] = DEFAULT_OPT_OUT_DIRECTIVES
    allow_networks: tuple[str, ...] = ()
    file_root: str = ""
    concurrency: int = 32
    per_host_concurrency: int = 4
    host_fail_limit: int = 10

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "read_timeout_s", "dns_timeout_s", "deadline_s"):
            _positive_number(name, getattr(self, name))
        _positive_number("backoff_s", self.backoff_s, zero_ok=True)
        limits = (
            ("retries", 0),
            ("max_redirects", 0),
            ("max_bytes", 1),
            ("per_host_concurrency", 1),
            ("host_fail_limit", 1),
        )
        for name, low in limits:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if (
            isinstance(self.concurrency, bool)
            or not isinstance(self.concurrency, int)
            or not 1 <= self.concurrency <= 1024
        ):
            raise ValueError(f"concurrency must be an int in 1..1024, got {self.concurrency!r}")
        if not isinstance(self.user_agent, str) or not self.user_agent.strip():
            raise ValueError(f"user_agent must be a non-empty string, got {self.user_agent!r}")
        if not self.user_agent.isascii() or any(ord(c) < 32 for c in self.user_agent):
            raise ValueError("user_agent must be printable ASCII without line breaks")
        if not isinstance(self.respect_opt_out, bool):
            raise ValueError(f"respect_opt_out must be a bool, got {self.respect_opt_out!r}")
        if not isinstance(self.file_root, str):
            raise ValueError(f"file_root must be a folder path or '', got {self.file_root!r}")
        object.__setattr__(
            self, "allow_networks", _str_tuple("allow_networks", self.allow_networks)
        )
        for cidr in self.allow_networks:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"allow_networks: invalid CIDR {cidr!r}: {exc}") from None
        directives = _str_tuple("opt_out_directives", self.opt_out_directives)
        object.__setattr__(self, "opt_out_directives", tuple(d.strip().lower() for d in directives))

    @property
    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        return _parse_networks(self.allow_networks)


def _str_tuple(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, tuple | list):
        raise ValueError(f"{name} must be a list of strings, got {value!r}")
    if not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{name} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


@functools.lru_cache(maxsize=64)
def _parse_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


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
    resample: the downscaling filter. "area" averages each output pixel's source
        area (Pillow's BOX filter; what DataComp's download does, img2dataset's
        default ``downscale_interpolation="area"``, OpenCV's INTER_AREA) and costs a
        third of "lanczos"; "bilinear", "bicubic" and "lanczos" are Pillow's
        antialiased filters. Enlarging (``upscale``) with "area" uses "bicubic".
    upscale: also enlarge images smaller than the target (off by default).
    large_pixels / large_decodes: an image whose decoded size is at least
        ``large_pixels`` pixels waits for one of ``large_decodes`` slots per Python
        worker, so a batch of big images cannot all be in memory at once.
    """

    resolution: int = 490
    resize_mode: str = "longer"
    max_pixels: int = 89_478_485
    quality: int = 90
    resample: str = "area"
    upscale: bool = False
    large_pixels: int = 16_000_000
    large_decodes: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.resolution, int) or self.resolution < 1:
            raise ValueError(f"resolution must be a positive int, got {self.resolution!r}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive int, got {self.max_pixels!r}")
        if not isinstance(self.quality, int) or not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be an int in 1..100, got {self.quality!r}")
        if self.resample not in RESAMPLE_NAMES:
            raise ValueError(f"resample must be one of {RESAMPLE_NAMES}, got {self.resample!r}")
        if not isinstance(self.upscale, bool):
            raise ValueError(f"upscale must be a bool, got {self.upscale!r}")
        for name in ("large_pixels", "large_decodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")


HASH_POLICIES = ("ignore", "flag", "reject")


@dataclass(frozen=True)
class FetchStageOptions(FetchOptions):
    """The fetch options plus what the stage does with the bytes.

    image: decode / resize options.
    hash_policy: what to do when DataComp's ``sha256`` is given and differs
        from the hash of the downloaded bytes (the image changed since
        DataComp was built): "ignore" does not compare (``sha256_match`` null);
        "flag" keeps the image with status ok and ``sha256_match`` false;
        "reject" returns status hash_mismatch without image bytes.
    """

    image: ImageOptions = field(default_factory=ImageOptions)
    hash_policy: str = "flag"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.image, ImageOptions):
            raise ValueError(f"image must be ImageOptions, got {type(self.image).__name__}")
        if self.hash_policy not in HASH_POLICIES:
            raise ValueError(
                f"hash_policy: unknown policy {self.hash_policy!r} (one of {HASH_POLICIES})"
            )
