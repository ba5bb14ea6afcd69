"""SHA-256 digests as lowercase hex: of bytes, and of a file read in blocks."""

from __future__ import annotations

import hashlib
import os

__all__ = ["sha256_file", "sha256_hex"]

_BLOCK = 1 << 20


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of `data`, 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read 1 MiB at a time (exports can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()
