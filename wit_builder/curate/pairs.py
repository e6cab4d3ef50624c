"""The pairs contract: the ``pairs.parquet`` dataset that curation stages hand on.

`wit extract` writes `PAIR_SCHEMA`; `wit match` adds `ENTRY_IDS` (and keeps only rows with
a match); `wit balance` and `wit curate` add `KEEP_PROB`. The file name and these schemas
live only here; see docs/architecture.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from wit_builder.errors import InputError
from wit_builder.inputs import fingerprint

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

PAIRS_FILE = "pairs.parquet"
PAIR_SCHEMA = pa.schema([
    ("uid", pa.string()), ("url", pa.string()), ("text", pa.string()),
    ("attr", pa.string()), ("page_url", pa.string()), ("lang", pa.string()),
    ("lang_score", pa.float32()), ("source_file", pa.string()),
])
PAIR_COLUMNS = PAIR_SCHEMA.names
ENTRY_IDS = pa.field("entry_ids", pa.list_(pa.int32()))
KEEP_PROB = pa.field("keep_prob", pa.float64())


def pairs_dataset(path: Path, needs: tuple[str, ...] = (), made_by: str = "") -> Path:
    """The ``pairs.parquet`` dataset inside a stage output dir, or `path` itself.

    `needs` are columns the reader requires (``entry_ids`` for balance): a dataset without
    them, such as another stage's output, is an `InputError` naming `made_by`, the stage
    whose output was expected.
    """
    candidate = path / PAIRS_FILE if (path / PAIRS_FILE).exists() else path
    if not candidate.exists():
        raise InputError(f"pairs not found: {path}")
    missing = [c for c in needs if c not in dataset_schema(candidate).names]
    if missing:
        raise InputError(f"{path} has no {', '.join(missing)} column: expected the output "
                         f"of {made_by or 'another stage'}")
    return candidate


def dataset_schema(path: Path) -> pa.Schema:
    """The Arrow schema of a Parquet dataset (directory or file); `InputError` if none."""
    files = dataset_files(path)
    if not files:
        raise InputError(f"{path} holds no Parquet file")
    try:
        return pq.read_schema(files[0])
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{files[0]} is not a Parquet file ({e})") from None


def dataset_files(path: Path) -> list[str]:
    """The Parquet files of a dataset (a directory or a single file), sorted."""
    if path.is_dir():
        return sorted(str(p) for p in path.rglob("*.parquet"))
    return [str(path)]


def pairs_input_fingerprint(pairs: Path, needs: tuple[str, ...] = (), made_by: str = ""
                            ) -> list[Any]:
    """Fingerprint of a pairs dataset (for the config hash), checked as `pairs_dataset`
    checks it, so a wrong input fails before Spark starts."""
    return fingerprint(dataset_files(pairs_dataset(pairs, needs, made_by)))


def write_pairs(df: DataFrame, directory: Path) -> int:
    """Write `df` as ``directory/pairs.parquet``, sorted by uid within files; return its
    row count.

    Counting the written files (Parquet footers) is cheap and counts what is really on disk.
    """
    path = str(directory / PAIRS_FILE)
    df.sortWithinPartitions("uid").write.mode("overwrite").parquet(path)  # a resumed run
    return df.sparkSession.read.parquet(path).count()


def read_pairs(directory: Path) -> pa.Table:
    """The ``pairs.parquet`` dataset of a stage output, as one Arrow table (small runs)."""
    return pq.ParquetDataset(pairs_dataset(directory)).read()
