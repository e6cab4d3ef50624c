"""Deciding which scored neighbours are copies: the threshold rule, apart from scoring.

One Spark task per pool shard reads the shard's saved scores (`scan`), applies the
method's `Rule` (a match passes the threshold of its eval set; a near neighbour misses it
by at most ``near``), writes the shard again without its matched samples (``filtered/``,
member bytes copied as they are) and emits `ROW_SCHEMA` rows: ``match``, ``near`` and
the shard's counters (``scanned``, ``unreadable``, ``matched``). Changing a threshold
reruns only this step.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wit_builder import tarshards
from wit_builder.overlap.matches import FILTERED_DIR, ROW_SCHEMA
from wit_builder.overlap.methods import Rule
from wit_builder.overlap.scan import count_rows, scores_file, shards_frame
from wit_builder.spark import spark_schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


@dataclass(frozen=True)
class Task:
    """What every deciding task needs (picklable)."""

    rule: Rule
    work_dir: str


def decided_rows(scores: pa.Table, rule: Rule) -> list[dict[str, Any]]:
    """The neighbours of `scores` that are matches or near neighbours, labelled so."""
    rows = []
    neighbours = scores.filter(pc.equal(scores["kind"], "neighbour")).to_pylist()
    for row in neighbours:
        kind = rule.decide(row["score"], row["eval_set"])
        if kind is not None:
            rows.append({**row, "kind": kind})
    return rows


def decide_shard(path: str, shard: str, task: Task) -> list[dict[str, Any]]:
    """Rows of the shard at `path`, called `shard`, and its filtered copy."""
    scores = pq.read_table(scores_file(task.work_dir, shard)).cast(ROW_SCHEMA)
    rows = decided_rows(scores, task.rule)
    matched = {r["key"] for r in rows if r["kind"] == "match"}
    tarshards.copy_without(path, Path(task.work_dir) / FILTERED_DIR / shard, matched)
    counts = scores.filter(pc.equal(scores["kind"], "count")).to_pylist()
    counts += count_rows(shard, {"matched": len(matched)})
    return rows + counts


def decide_partition(batches: Iterable[pa.RecordBatch], task: Any
                     ) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: (path, shard) of pool shards in, `ROW_SCHEMA` rows out."""
    for batch in batches:
        for path, shard in zip(batch.column("path").to_pylist(),
                               batch.column("shard").to_pylist(), strict=True):
            rows = decide_shard(path, shard, task.value)
            yield pa.RecordBatch.from_pylist(rows, schema=ROW_SCHEMA)


def run_decide(spark: SparkSession, paths: list[str], task: Task) -> DataFrame:
    """Every shard's decided rows (`ROW_SCHEMA`), one Spark task per shard, persisted and
    materialized (the tasks write the filtered shards once): the callers write and count
    them in Spark, nothing per row reaches the driver."""
    from pyspark import StorageLevel

    body = functools.partial(decide_partition, task=spark.sparkContext.broadcast(task))
    rows = shards_frame(spark, paths).mapInArrow(body, spark_schema(ROW_SCHEMA))
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    rows.count()
    return rows
