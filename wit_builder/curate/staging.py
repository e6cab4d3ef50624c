"""Extraction staged per input file, with retries: the raw extraction written once, by
the executors, into the stage's work dir, and resumed file by file.

Each input file is one piece of ``staging/`` in the (resumable) work dir:

* ``staging/pairs/NAME.parquet`` — its pairs (`pairs.PAIR_SCHEMA`), streamed to disk
  batch by batch (a file's pairs are never held whole), renamed into place when the file
  is read to its end;
* ``staging/counts/NAME.parquet`` — its counters (source_file, counter, n, detail),
  written last: the piece's completion mark. A rerun skips every file that has it.

A file that cannot be read (a 503 or 429 from Common Crawl's servers, a reset
connection, a timeout: fsspec reports some of them as a missing file) is tried again
after an exponential backoff with jitter, or after the server's ``Retry-After`` when that
is longer; nothing of a failed attempt is kept, so a retry never doubles a pair. A file
still unreadable after the last attempt is a counted drop (``file_unreadable``, with the
error in ``detail``), never a failed job. Readers: `stage_files` (the Spark job),
`staged_pairs` and `staged_counts` (the datasets).
"""

from __future__ import annotations

import functools
import hashlib
import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from wit_builder.curate.pairs import PAIR_SCHEMA
from wit_builder.outputs import atomic_write, piece_done
from wit_builder.spark import spark_schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from wit_builder.curate.extract import ExtractParams

STAGING_DIR = "staging"
PAIRS_DIR, COUNTS_DIR = "pairs", "counts"
COUNTS_SCHEMA = pa.schema([("source_file", pa.string()), ("counter", pa.string()),
                           ("n", pa.int64()), ("detail", pa.string())])
MAX_DELAY = 300.0  # seconds: the longest wait between two attempts


@dataclass(frozen=True)
class Retries:
    """How patiently an input file is read: `attempts` in all, the first wait `backoff`
    seconds, doubling each time (× a jitter of 0.5–1.5, so tasks do not retry in step)."""

    attempts: int = 6
    backoff: float = 2.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt `attempt` + 1 (`attempt` from 1)."""
        wait = self.backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
        return min(MAX_DELAY, max(wait, retry_after or 0.0))


def piece_name(path: str) -> str:
    """The staging file name of an input path or URI (stable, safe as a file name)."""
    return hashlib.sha256(path.encode()).hexdigest()[:24] + ".parquet"


def retry_after(error: BaseException) -> float | None:
    """The ``Retry-After`` seconds an HTTP error carried (aiohttp's response errors keep
    the headers; a date or a missing header gives None)."""
    for e in (error, error.__cause__, error.__context__):
        value = (getattr(e, "headers", None) or {}).get("Retry-After", "")
        if str(value).strip().isdigit():
            return float(value)
    return None


def write_pieces(path: str, work: Path, batches: Iterable[pa.RecordBatch],
                 counts: Counter[str]) -> None:
    """Stream `batches` (the file's pairs) to its pairs piece, then write its counts
    piece; a piece appears only complete (temp file, then rename)."""
    name = piece_name(path)
    target = work / STAGING_DIR / PAIRS_DIR / name

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, PAIR_SCHEMA) as writer:
            for batch in batches:
                writer.write_batch(batch)

    atomic_write(target, write)
    write_counts(path, work, counts)


def write_counts(path: str, work: Path, counts: Counter[str], detail: str | None = None
                 ) -> None:
    """The file's counts piece (its completion mark)."""
    names = sorted(counts)
    table = pa.table({"source_file": [path] * len(names), "counter": names,
                      "n": [counts[n] for n in names], "detail": [detail] * len(names)},
                     schema=COUNTS_SCHEMA)
    atomic_write(work / STAGING_DIR / COUNTS_DIR / piece_name(path),
                 lambda tmp: pq.write_table(table, tmp))


def stage_file(path: str, params: ExtractParams, work: Path, retries: Retries) -> str:
    """Extract one file into its pieces unless they are there (see module docstring);
    "done", "skipped" or "unreadable"."""
    from wit_builder.curate.extract import file_batches, new_counts

    if piece_done(work / STAGING_DIR / COUNTS_DIR / piece_name(path)):
        return "skipped"
    for attempt in range(1, retries.attempts + 1):
        counts = new_counts()
        try:
            write_pieces(path, work, file_batches(path, params, counts), counts)
            return "done"
        except Exception as e:  # any failure to read is retried, then counted
            error = e
        if attempt < retries.attempts:
            time.sleep(retries.delay(attempt, retry_after(error)))
    detail = f"{type(error).__name__}: {error}"[:500]
    write_counts(path, work, Counter({"file_unreadable": 1}), detail)
    return "unreadable"


def stage_task(paths: Iterable[Any], params: ExtractParams, work: str, retries: Retries
               ) -> Iterator[str]:
    """The body of one Spark task: stage each of its files."""
    for (path,) in paths:
        yield stage_file(path, params, Path(work), retries)


def stage_files(spark: SparkSession, paths: list[str], params: ExtractParams, work: Path,
                files_per_task: int, retries: Retries) -> Counter[str]:
    """Stage every input file, `files_per_task` to a Spark task; how many files were
    done, skipped (staged by an earlier run) and unreadable."""
    for sub in (PAIRS_DIR, COUNTS_DIR):
        (work / STAGING_DIR / sub).mkdir(parents=True, exist_ok=True)
    slices = max(1, -(-len(paths) // files_per_task))
    rdd = spark.sparkContext.parallelize([(p,) for p in paths], slices)
    body = functools.partial(stage_task, params=params, work=str(work), retries=retries)
    return Counter(rdd.mapPartitions(body).countByValue())


def staged_pairs(spark: SparkSession, work: Path) -> DataFrame:
    """Every staged file's pairs, as one Spark dataset."""
    return spark.read.schema(spark_schema(PAIR_SCHEMA)).parquet(
        str(work / STAGING_DIR / PAIRS_DIR))


def staged_counts(spark: SparkSession, work: Path) -> DataFrame:
    """Every staged file's counters (source_file, counter, n, detail)."""
    return spark.read.schema(spark_schema(COUNTS_SCHEMA)).parquet(
        str(work / STAGING_DIR / COUNTS_DIR))
