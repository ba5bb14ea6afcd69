"""Fixtures of the pure (no-Spark) unit tests: a local HTTP server and tiny images."""

from __future__ import annotations

import importlib.util
import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image


def _load_http_server():
    """tests/unit/http_server.py, whether or not tests/ is a package."""
    name = "kale_tests_http_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("http_server.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


http_server_module = _load_http_server()
Route = http_server_module.Route


@pytest.fixture(scope="session")
def http_server() -> Iterator:
    """One real threaded HTTP server on 127.0.0.1 (ephemeral port) for the session."""
    server = http_server_module.LocalHTTPServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def route_cls() -> type:
    return Route


def make_image_bytes(
    fmt: str = "JPEG",
    size: tuple[int, int] = (64, 48),
    mode: str = "RGB",
    color: object = (200, 30, 30),
    **save_kwargs: object,
) -> bytes:
    img = Image.new(mode, size, color)  # type: ignore[arg-type]
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save_kwargs)
    return buf.getvalue()


@pytest.fixture(scope="session")
def image_bytes() -> Callable[..., bytes]:
    """Factory: ``image_bytes(fmt, size, mode, color, **save_kwargs) -> bytes``."""
    return make_image_bytes
