"""WebDataset tars of an export: one `<uid>.<ext>`, `<uid>.txt`, `<uid>.json` per row.

Deterministic: members in row order with fixed mtime, mode and owner, so the same rows
and images give the same bytes.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["MIME_EXT", "write_tar"]

MIME_EXT = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_tar(rows: pa.Table, images: Mapping[str, tuple[bytes, str]], path: Path) -> int:
    """One tar of the `rows` (with `uid` and `caption`) that have an image in `images`
    (uid -> (bytes, mime)); the number of samples written."""
    n = 0
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for row in rows.to_pylist():
            image = images.get(row["uid"])
            if image is None:
                continue
            data, mime = image
            ext = MIME_EXT.get(mime or "", "jpg")
            _add_member(tar, f"{row['uid']}.{ext}", data)
            _add_member(tar, f"{row['uid']}.txt", row["caption"].encode())
            meta = json.dumps(row, sort_keys=True, ensure_ascii=False, allow_nan=False)
            _add_member(tar, f"{row['uid']}.json", meta.encode())
            n += 1
    return n
