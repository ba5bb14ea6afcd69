"""Directories that appear whole or not at all: written in a temp dir beside their final
place, then renamed into it (exports, release browsers, checkpoints, model caches)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_dir"]


@contextlib.contextmanager
def atomic_dir(
    final: str | os.PathLike, *, prefix: str | None = None, keep_existing: bool = False
) -> Iterator[Path]:
    """Yield an empty temp dir beside ``final``; when the block ends without an error it
    becomes ``final``, else it is removed.

    An existing ``final`` is replaced, unless ``keep_existing``: then a ``final`` that a
    concurrent writer renamed into place first wins and this copy is dropped (caches
    built by several workers at once). The dir is made readable by all (mkdtemp makes
    it private; Spark workers and shared caches read it).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{prefix or final.name}.", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if final.exists() and not keep_existing:
            shutil.rmtree(final)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (keep_existing and final.exists()):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
