"""The standalone cluster the cluster tests share (tests/support/standalone.py): one
master, one small worker (2 cores, 2 GiB) that advertises one stand-in GPU, torn down
after the session."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.standalone import Cluster, standalone


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with standalone(tmp_path_factory.mktemp("standalone"), fake_gpu=True) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def dist_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make dist`'s zip: the library as spark-submit --py-files ships it."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        ["make", "-s", "dist", f"DIST={out}", f"DIST_PY={sys.executable}"],
        cwd=Path(__file__).resolve().parents[2],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (zip_path,) = out.glob("kale_spark-*.zip")
    return zip_path
