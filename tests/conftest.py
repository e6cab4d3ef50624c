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


def written_shard_problems(root: Path) -> list[str]:
    """Problems of every shard directory our stages wrote under `root` (those with a
    ``sizes.json``): a member name twice in a tar, a tar whose samples differ from
    ``sizes.json``, or a sample JSON whose ``key`` is not its member key."""
    import json
    import tarfile
    from collections import Counter

    problems = []
    for sizes_file in root.rglob("sizes.json"):
        sizes = json.loads(sizes_file.read_text())
        for name, expected in sizes.items():
            with tarfile.open(sizes_file.parent / name) as tar:
                names = Counter(m.name for m in tar.getmembers())
                problems += [f"{sizes_file.parent / name}: {m.name} says key {key!r}"
                             for m in tar.getmembers() if m.name.endswith(".json")
                             and (key := json.load(tar.extractfile(m)).get("key"))
                             not in (None, m.name.partition(".")[0])]
            twice = [n for n, c in names.items() if c > 1]
            keys = {n.partition(".")[0] for n in names}
            if twice or len(keys) != expected:
                problems.append(f"{sizes_file.parent / name}: {len(keys)} samples "
                                f"(sizes.json: {expected}), names twice: {twice[:3]}")
    return problems


@pytest.fixture(scope="session", autouse=True)
def every_written_shard_is_sound(tmp_path_factory):
    """After the session: no final or filtered shard any test wrote holds a member name
    twice, and each holds exactly the samples its ``sizes.json`` says."""
    yield
    problems = written_shard_problems(tmp_path_factory.getbasetemp())
    assert not problems, "\n".join(problems)
