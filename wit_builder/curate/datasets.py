"""Reading and writing the Parquet datasets that pass pairs between curation stages."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from wit_builder.errors import InputError
from wit_builder.inputs import fingerprint

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

PAIRS = "pairs.parquet"


def pairs_dataset(path: Path) -> Path:
    """The ``pairs.parquet`` dataset inside a stage output dir, or `path` itself."""
    candidate = path / PAIRS if (path / PAIRS).exists() else path
    if not candidate.exists():
        raise InputError(f"pairs not found: {path}")
    return candidate


def dataset_files(path: Path) -> list[str]:
    """The Parquet files of a dataset (a directory or a single file), sorted."""
    if path.is_dir():
        return sorted(str(p) for p in path.rglob("*.parquet"))
    return [str(path)]


def pairs_and_entries_inputs(pairs: Path, entries_file: Path) -> list[Any]:
    """Fingerprints of a pairs dataset and an entry list (for the config hash)."""
    return [fingerprint(dataset_files(pairs_dataset(pairs))), fingerprint([str(entries_file)])]


def write_pairs(df: DataFrame, path: Path) -> int:
    """Write `df` as a Parquet dataset sorted by uid within files; return its row count.

    Counting the written files (Parquet footers) is cheap and counts what is really on disk.
    """
    df.sortWithinPartitions("uid").write.parquet(str(path))
    return df.sparkSession.read.parquet(str(path)).count()
