"""Reading a little of a big Parquet file or dataset: its row count from the footers, its
first rows from the first row group, a seeded sample from the row groups holding it.
Tools that show an output (`wit show`, the notebooks' `explore`) read through these, so
a preview of billions of rows costs megabytes."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def head(path: Path, columns: list[str], rows: int) -> tuple[pa.Table, int]:
    """(the first `rows` rows of a Parquet file or dataset in `columns`, its row count):
    the count from the files' footers, the rows from the first row group(s), so a
    preview of billions of rows reads a few megabytes."""
    files = parquet_files(path)
    batches = list(first_batches(files, columns, rows))
    first = (pa.Table.from_batches(batches) if batches else
             schema(path).empty_table().select(columns))
    return first, sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def schema(path: Path) -> pa.Schema:
    """The schema of a Parquet file or dataset (its first file's footer); `ValueError`
    if it holds no data file."""
    files = parquet_files(path)
    if not files:
        raise ValueError(f"no Parquet file in {path}")
    return pq.read_schema(files[0])


def parquet_files(path: Path) -> list[Path]:
    """The data files of a Parquet file or dataset folder, in order (names starting with
    ``_`` or ``.`` are Spark's and writers' own, as pyarrow's dataset reader skips)."""
    if path.is_file():
        return [path]
    return sorted(f for f in path.rglob("*.parquet")
                  if not any(part.startswith(("_", ".")) for part in f.relative_to(path).parts))


def first_batches(files: list[Path], columns: list[str], rows: int
                  ) -> Iterator[pa.RecordBatch]:
    """The first `rows` rows of `files`, read one row group at a time (a dataset
    scanner reads ahead many row groups at once)."""
    left = rows
    for name in files:
        for batch in pq.ParquetFile(name).iter_batches(batch_size=max(1, rows),
                                                       columns=columns):
            if left <= 0:
                return
            yield batch.slice(0, left)
            left -= batch.num_rows


def sample(path: Path, columns: list[str], rows: int, seed: int) -> pa.Table:
    """`rows` rows drawn uniformly without replacement (seeded: the same rows every
    time), reading only the row groups that hold them."""
    groups: list[tuple[Path, int, int]] = []  # (file, row group, rows): per row group
    for name in parquet_files(path):
        meta = pq.ParquetFile(name).metadata
        groups += [(name, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
    starts = np.cumsum([0] + [n for _, _, n in groups]).tolist()
    total = starts[-1]
    chosen = np.sort(np.random.default_rng(seed).choice(total, min(rows, total),
                                                        replace=False))
    parts, by_group = [], {}  # row group → offsets of its chosen rows
    for row in chosen.tolist():
        g = bisect.bisect_right(starts, row) - 1
        by_group.setdefault(g, []).append(row - starts[g])
    for g, offsets in sorted(by_group.items()):
        name, index, _ = groups[g]
        table = pq.ParquetFile(name).read_row_group(index, columns=columns)
        parts.append(table.take(pa.array(offsets)))
    return pa.concat_tables(parts) if parts else schema(path).empty_table().select(columns)
