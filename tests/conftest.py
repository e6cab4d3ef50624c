"""Shared test fixtures: real fixture files and one local Spark session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.builders import WIKI_DUMP


@pytest.fixture(scope="session")
def wiki_dump() -> Path:
    if not WIKI_DUMP.is_file():
        pytest.fail(f"fixture missing: {WIKI_DUMP} (set WIT_FIXTURES)")
    return WIKI_DUMP


@pytest.fixture(scope="session")
def spark():
    from wit_builder.spark import get_spark

    session = get_spark("local[2]", "wit-tests", {"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()
