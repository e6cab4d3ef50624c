"""Shared test fixtures: real fixture files and one local Spark session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import WIKI_DUMP


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `gpu` skip (with the reason) where torch sees no CUDA device."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here)")
    for item in gpu_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def wiki_dump() -> Path:
    if not WIKI_DUMP.is_file():
        pytest.fail(f"fixture missing: {WIKI_DUMP} (`make setup` fetches it)")
    return WIKI_DUMP


@pytest.fixture(scope="session")
def spark():
    from wit_builder.spark import get_spark

    session = get_spark("local[2]", "wit-tests", {"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()
