"""The final shards of `wit shards` and their ``manifest.parquet``.

Kept samples are numbered once in uid order (`numbered`); shard i holds numbers
[i·per_shard, (i+1)·per_shard), keys are uids. ``manifest.parquet``: uid, shard, key,
sha256, phash (int64), width, height, text, url, one row per sample in the shards;
``sizes.json`` (`tarshards`) gives each shard's sample count.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from wit_builder import tarshards
from wit_builder.images import tars
from wit_builder.spark import number_rows

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

STAGE = "shards"  # the stage whose outputs hold a manifest
MANIFEST_FILE = "manifest.parquet"
MANIFEST_COLUMNS = ("uid", "shard", "key", "sha256", "phash", "width", "height", "text",
                    "url")


def numbered(kept: DataFrame) -> DataFrame:
    """`kept` with each sample's position in uid order (``index``, from 0), persisted:
    the shard writer and the manifest both read it (`spark.number_rows`, the numbering
    `wit download` plans its shards with)."""
    return number_rows(kept, "uid")


def write_shards(samples: DataFrame, out: Path, per_shard: int) -> dict[str, int]:
    """Write `numbered` samples into shards of `per_shard` in index (= uid) order;
    {shard name: samples}."""
    def shard_of(row: Any) -> tuple[int, tuple[int, dict]]:
        return row["index"] // per_shard, (row["index"], row.asDict())

    def write(part):
        for shard, rows in part:
            name = tarshards.shard_name(shard)
            tars.write_shard(out / name, [r for _, r in sorted(rows)])
            yield name, len(rows)

    n_shards = max(1, -(-samples.count() // per_shard))
    # int keys hash to themselves: partition i holds exactly shard i
    grouped = samples.rdd.map(shard_of).groupByKey(numPartitions=n_shards).mapValues(list)
    return dict(sorted(grouped.mapPartitions(write).collect()))


def manifest(samples: DataFrame, per_shard: int) -> DataFrame:
    """The manifest rows of `numbered` samples: shard name and key (= uid)."""
    from pyspark.sql import functions as F

    digits = tarshards.SHARD_DIGITS
    shard = F.format_string(f"%0{digits}d.tar",
                            F.floor(F.col("index") / per_shard).cast("int"))
    # the final key is the uid (the downloaded shard's key is dropped)
    return samples.drop("key").select("*", shard.alias("shard"), F.col("uid").alias("key")) \
        .select(*MANIFEST_COLUMNS)


def write_manifest(samples: DataFrame, out: Path, per_shard: int) -> None:
    """``manifest.parquet`` of `numbered` samples, written by the executors."""
    manifest(samples, per_shard).write.parquet(str(out / MANIFEST_FILE))


def shard_rows(directory: Path, shard: str, columns: list[str]) -> pa.Table:
    """The manifest rows of one final shard (``00012.tar``) of a shards output, read with
    a filter (the manifest is in shard order: row groups of other shards are skipped)."""
    return pq.read_table(directory / MANIFEST_FILE, columns=columns,
                         filters=[("shard", "==", shard)])


def read_manifest(directory: Path, columns: list[str] | None = None) -> pa.Table:
    """``manifest.parquet`` of a shards output (the `columns` asked for)."""
    return pq.read_table(directory / MANIFEST_FILE, columns=columns)
