"""The match job: pairs × query list → pairs with ``entry_ids`` (only rows with a match).

The entry list (500k strings, a few MB) is broadcast; each executor Python worker builds the
Aho-Corasick automaton once (about a second and ~230 MiB for 500k entries) and keeps it
for every later task and batch (`worker_automaton`), since Spark reuses Python workers
between tasks. Texts are matched in Arrow batches (``mapInArrow``): no per-row UDF.

Outputs: ``pairs.parquet`` (input columns + ``entry_ids: list<int32>``), `stats.json`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ahocorasick
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from wit_builder.config import StageConfig
from wit_builder.curate.datasets import pairs_and_entries_inputs, pairs_dataset, write_pairs
from wit_builder.curate.matching import build_automaton, match_many
from wit_builder.errors import InputError
from wit_builder.outputs import StageResult
from wit_builder.spark import run_spark_stage
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.broadcast import Broadcast
    from pyspark.sql import DataFrame, SparkSession

STAGE = "match"
OUTPUT_VERSION = 1
ENTRY_IDS = pa.field("entry_ids", pa.list_(pa.int32()))
log = logging.getLogger(__name__)

# One automaton per Python process, keyed by the broadcast id of its entry list.
_AUTOMATON: dict[Any, ahocorasick.Automaton] = {}
BUILDS = {"count": 0}  # how many automata this process built (tests, logs)


class MatchConfig(StageConfig):
    """Parameters of `wit match`."""

    pairs: Path = Field(description="extract output dir (or a pairs Parquet dataset)")
    entries: Path = Field(description="querylist output dir, entries.parquet or .txt")


def entries_file(path: Path) -> Path:
    """The entry list inside a querylist output dir, or `path` itself."""
    if path.is_dir():
        path = path / "entries.parquet"
    if not path.is_file():
        raise InputError(f"entry list not found: {path}")
    return path


def load_entries(path: Path) -> list[str]:
    """Entries in entry_id order, from ``entries.parquet`` or a one-per-line text file."""
    path = entries_file(path)
    if path.suffix == ".parquet":
        table = pq.read_table(path, columns=["entry_id", "entry"]).sort_by("entry_id")
        ids = table.column("entry_id").to_numpy()
        if len(ids) and (ids[0] != 0 or (ids[1:] != ids[:-1] + 1).any()):
            raise InputError(f"{path}: entry_id must run 0..n-1")
        return table.column("entry").to_pylist()
    return path.read_text(encoding="utf-8").splitlines()


def worker_automaton(key: Any, entries: Callable[[], list[str]]) -> ahocorasick.Automaton:
    """This process's automaton for `key`, built from `entries()` on first use only."""
    if key not in _AUTOMATON:
        _AUTOMATON.clear()  # a new list replaces the old one (~230 MiB each)
        started = time.perf_counter()
        _AUTOMATON[key] = build_automaton(entries())
        BUILDS["count"] += 1
        log.info("built automaton in %.1f s", time.perf_counter() - started)
    return _AUTOMATON[key]


def match_batch(batch: pa.RecordBatch, automaton: ahocorasick.Automaton) -> pa.RecordBatch:
    """Rows of `batch` with at least one matching entry, plus their ``entry_ids``."""
    offsets, ids = match_many(automaton, batch.column("text").to_pylist())
    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(ids, pa.int32()))
    keep = pa.array(np.diff(offsets) > 0)
    return batch.filter(keep).append_column(ENTRY_IDS, lists.filter(keep))


def match_partition(batches: Iterable[pa.RecordBatch], entries: Broadcast[list[str]],
                    key: str) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: match every batch against the broadcast entry list.

    `key` identifies the list (`list_key`) in the per-worker cache.
    """
    automaton = worker_automaton(key, lambda: entries.value)
    for batch in batches:
        yield match_batch(batch, automaton)


def spark_schema(df: DataFrame) -> str:
    """Output schema of `match_partition` for input `df`, as a DDL string."""
    return ", ".join([f"`{f.name}` {f.dataType.simpleString()}" for f in df.schema.fields]
                     + ["entry_ids array<int>"])


def list_key(entries: list[str]) -> str:
    """Content hash of an entry list: workers reuse an automaton across jobs of a session."""
    digest = hashlib.blake2b(digest_size=16)
    for entry in entries:
        digest.update(entry.encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()


def match_df(df: DataFrame, entries: list[str]) -> DataFrame:
    """`df` (with a ``text`` column) restricted to matching rows, with ``entry_ids``."""
    bc = df.sparkSession.sparkContext.broadcast(entries)
    body = functools.partial(match_partition, entries=bc, key=list_key(entries))
    return df.mapInArrow(body, spark_schema(df))


def build(tmp: Path, cfg: MatchConfig, spark: SparkSession) -> StageStats:
    """Match the pairs into `tmp`."""
    stats = StageStats(STAGE)
    entries = load_entries(cfg.entries)
    pairs = spark.read.parquet(str(pairs_dataset(cfg.pairs)))
    stats.rows_in = pairs.count()
    stats.rows_out = write_pairs(match_df(pairs, entries), tmp / "pairs.parquet")
    stats.drop("no_match", stats.rows_in - stats.rows_out)
    stats.extra["entries"] = len(entries)
    return stats


def run(cfg: MatchConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    inputs = pairs_and_entries_inputs(cfg.pairs, entries_file(cfg.entries))
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                           lambda tmp, session: build(tmp, cfg, session), spark)
