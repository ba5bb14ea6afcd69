"""Shared fixtures.

- a real local HTTP server (tests/http_server.py) and tiny images, for the fetch tests;
- one local Spark session per test session (Delta on, UI off, few partitions) and a
  fresh lake root per test, for tests/spark (marker `spark`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.support.http_server import LocalHTTPServer, Route


@pytest.fixture(scope="session")
def http_server() -> Iterator:
    """One real threaded HTTP server on 127.0.0.1 (ephemeral port) for the session."""
    server = LocalHTTPServer().start()
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


# --------------------------------------------------------------------------- Spark tier

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Session fixtures worth computing once. `make test` runs the suite in two processes
# (pytest-xdist); the scheduler below keeps each module's tests in one process, and all
# the modules of one group here in one process, so these are built once.
SHARED_FIXTURE_GROUPS = {
    "standalone_cluster": "cluster",
    "dist_zip": "cluster",
    "stage2_reference": "stage2",
}
MODULE_GROUPS = {
    "tests/cluster/test_lost_executor.py": "cluster",
    "tests/cluster/test_spark_submit.py": "cluster",
    "tests/reliability/test_kill_resume.py": "stage2",
    "tests/spark/test_stage2.py": "stage2",
}


def xdist_scope(nodeid: str) -> str:
    """The unit of work a test process takes whole: the test's module, or its group."""
    module = nodeid.split("::", 1)[0]
    return MODULE_GROUPS.get(module, module)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    # xdist's own `loadgroup` marks do not reach its scheduler under pytest 9.2 (it
    # rewrites a node id attribute pytest no longer reads); a scheduler that scopes by
    # xdist_scope does not depend on them.
    from xdist.scheduler import LoadScopeScheduling

    class ModuleGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return ModuleGroupScheduling(config, log)


def _check_groups(items) -> None:
    """A module using a shared session fixture must be in that fixture's group, or two
    processes would each build it."""
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        for fixture, group in SHARED_FIXTURE_GROUPS.items():
            if fixture in getattr(item, "fixturenames", ()) and xdist_scope(module) != group:
                raise pytest.UsageError(
                    f"{module} uses the session fixture {fixture}: "
                    f"add it to MODULE_GROUPS in tests/conftest.py as {group!r}"
                )


def pytest_collection_modifyitems(config, items) -> None:
    """Mark by folder; skip `gpu` tests on machines without CUDA; check the groups."""
    has_cuda = _has_cuda()
    _check_groups(items)
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "spark" in parts:
            item.add_marker(pytest.mark.spark)
        if "models" in parts:
            item.add_marker(pytest.mark.models)
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU"))


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory):
    """One local Spark session with Delta for the whole test run (as delta's own tests do)."""
    from kale_spark.config import SparkConfig
    from kale_spark.spark.session import get_session

    warehouse = tmp_path_factory.mktemp("warehouse")
    cfg = SparkConfig(
        master="local[2]",
        app_name="kale-tests",
        shuffle_partitions=2,
        arrow_batch_size=8,
        conf={
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.databricks.delta.snapshotPartitions": "2",
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
            "spark.default.parallelism": "2",
        },
    )
    session = get_session(cfg)
    yield session
    session.stop()


@pytest.fixture
def lake_root(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def make_config(lake_root: Path, tmp_path: Path):
    """Build a Config for one test: fresh lake, test Spark settings, `--set` overrides."""
    from kale_spark.config import load_config

    def make(*overrides: str):
        return load_config(
            None,
            [
                f"lake.root={lake_root}",
                "spark.master=local[2]",
                "spark.shuffle_partitions=2",
                f"sample.out={tmp_path / 'sample'}",
                f"models.cache_dir={tmp_path.parent / 'kale-model-cache'}",
                *overrides,
            ],
        )

    return make


@pytest.fixture(scope="session")
def stage2_reference(spark, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One uninterrupted run of the whole pipeline (tests/support/stage2_pipeline.py),
    shared by tests/spark/test_stage2.py and tests/reliability/: the lake, the config,
    each stage's run record and every table's version right after it."""
    from kale_spark import schema
    from kale_spark.cli.pipeline import run_all
    from kale_spark.config import load_config
    from kale_spark.lake.tables import Lake
    from tests.support import stage2_pipeline

    root = tmp_path_factory.mktemp("stage2")
    stage2_pipeline.write_sample(root)
    cfg = load_config(None, stage2_pipeline.overrides(root))
    first = run_all(spark, cfg)
    lake = Lake(spark, cfg.lake)
    tables = [t for t in lake.tables() if t != schema.RUNS]
    return {
        "root": root,
        "cfg": cfg,
        "lake": lake,
        "first": first,
        "versions": {t: lake.version(t) for t in tables},
    }
