"""`wit shards`: downloaded shards → deduplicated final shards (see `images.dedup`).

One Spark task per downloaded tar scans it (`tars.scan_tar`: sha256, pHash, member
offsets); exact duplicates (same sha256) and near duplicates (pHash within
`max_distance`) are grouped, each group keeping its smallest uid; the kept samples are
written in uid order into ``{00000..N}.tar`` of `samples_per_shard` (keys are uids), one
task per final shard, copying the members' bytes.

Outputs: the shards, ``sizes.json`` (shard name → samples: open_clip's format),
``manifest.parquet`` (uid, shard, key, sha256, phash, width, height, text, url),
``duplicates.parquet`` (uid, kept_uid, distance, kind: exact or near), `stats.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wit_builder.errors import InputError
from wit_builder.images import dedup, tars
from wit_builder.images.configs import ShardsConfig
from wit_builder.images.phash import hamming
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult
from wit_builder.spark import run_spark_stage, schema_plus, spark_schema
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

STAGE = "shards"
OUTPUT_VERSION = 1
CONFIG = ShardsConfig
MANIFEST_FILE = "manifest.parquet"
DUPLICATES_FILE = "duplicates.parquet"
SIZES_FILE = "sizes.json"
MANIFEST_COLUMNS = ("uid", "shard", "key", "sha256", "phash", "width", "height", "text",
                    "url")
DUPLICATE_SCHEMA = pa.schema([("uid", pa.string()), ("kept_uid", pa.string()),
                              ("distance", pa.int32()), ("kind", pa.string())])


def input_tars(images: Path) -> list[str]:
    """The downloaded shards; `InputError` if there are none."""
    found = sorted(str(p) for p in images.glob("*.tar")) if images.is_dir() else []
    if not found:
        raise InputError(f"{images} holds no .tar shard: expected a `wit download` output")
    return found


def scan(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Every sample of every tar (`tars.SCAN_SCHEMA`), one task per tar, persisted."""
    from pyspark import StorageLevel

    files = spark.createDataFrame([(p,) for p in paths], "path string")
    files = files.repartition(len(paths))
    scanned = files.mapInArrow(tars.scan_partition, spark_schema(tars.SCAN_SCHEMA))
    return scanned.persist(StorageLevel.MEMORY_AND_DISK)


def duplicate_rows(samples: DataFrame, cfg: ShardsConfig, stats: StageStats) -> pa.Table:
    """``duplicates.parquet``: each removed uid, the uid its group keeps, their pHash
    distance and whether the bytes were identical."""
    from pyspark.sql import functions as F

    exact = dedup.exact_groups(samples).select(F.col("kept_uid").alias("uid_a"),
                                               F.col("uid").alias("uid_b"))
    near, capped = dedup.near_pairs(samples, cfg.max_distance, cfg.bucket_cap)
    pairs = exact.unionByName(near.select("uid_a", "uid_b")).distinct().collect()
    stats.extra["capped_buckets"] = capped.count()
    groups = dedup.components([(r.uid_a, r.uid_b) for r in pairs])
    involved = set(groups.removed) | set(groups.kept)
    info = {r.uid: (r.sha256, r.phash) for r in samples.filter(F.col("uid").isin(
        list(involved))).select("uid", "sha256", "phash").collect()} if involved else {}
    distance = [hamming(info[u][1], info[k][1]) for u, k in zip(groups.removed, groups.kept,
                                                                strict=True)]
    kind = ["exact" if info[u][0] == info[k][0] else "near"
            for u, k in zip(groups.removed, groups.kept, strict=True)]
    return pa.table({"uid": groups.removed, "kept_uid": groups.kept, "distance": distance,
                     "kind": kind}, schema=DUPLICATE_SCHEMA)


def numbered(kept: DataFrame) -> DataFrame:
    """`kept` with each sample's position in uid order (``index``, from 0), persisted:
    the shard writer and the manifest both read it.

    zipWithIndex numbers the range-partitioned, sorted rows partition by partition; a
    window over the whole table (``row_number().over(Window.orderBy("uid"))``) would move
    every row, texts and URLs included, into one task.
    """
    from pyspark import StorageLevel

    rows = kept.orderBy("uid").rdd.zipWithIndex().map(lambda pair: (*pair[0], pair[1]))
    schema = schema_plus(kept, pa.field("index", pa.int64()))
    return kept.sparkSession.createDataFrame(rows, schema).persist(
        StorageLevel.MEMORY_AND_DISK)


def write_shards(samples: DataFrame, out: Path, per_shard: int) -> dict[str, int]:
    """Write `numbered` samples into shards of `per_shard` in index (= uid) order;
    {shard name: samples}."""
    def shard_of(row: Any) -> tuple[int, tuple[int, dict]]:
        return row["index"] // per_shard, (row["index"], row.asDict())

    def write(part):
        for shard, rows in part:
            name = f"{shard:05d}.tar"
            tars.write_shard(out / name, [r for _, r in sorted(rows)])
            yield name, len(rows)

    n_shards = max(1, -(-samples.count() // per_shard))
    # int keys hash to themselves: partition i holds exactly shard i
    grouped = samples.rdd.map(shard_of).groupByKey(numPartitions=n_shards).mapValues(list)
    return dict(sorted(grouped.mapPartitions(write).collect()))


def manifest(samples: DataFrame, per_shard: int) -> DataFrame:
    """The manifest rows of `numbered` samples: shard name and key (= uid)."""
    from pyspark.sql import functions as F

    shard = F.format_string("%05d.tar", F.floor(F.col("index") / per_shard).cast("int"))
    # the final key is the uid (the downloaded shard's key is dropped)
    return samples.drop("key").select("*", shard.alias("shard"), F.col("uid").alias("key")) \
        .select(*MANIFEST_COLUMNS)


def build(tmp: Path, cfg: ShardsConfig, paths: list[str], spark: SparkSession) -> StageStats:
    """Scan, deduplicate and write the final shards into `tmp`."""
    from pyspark.sql import functions as F

    stats = StageStats(STAGE)
    scanned = scan(spark, paths)
    stats.rows_in = scanned.count()
    for row in scanned.filter(F.col("reason").isNotNull()).groupBy("reason").count().collect():
        stats.drop(row["reason"], row["count"])
    samples = scanned.filter(F.col("reason").isNull()).drop("reason")
    dups = duplicate_rows(samples, cfg, stats)
    pq.write_table(dups, tmp / DUPLICATES_FILE)
    for kind in ("exact", "near"):
        stats.drop(f"{kind}_duplicate", dups.filter(pc.equal(dups["kind"], kind)).num_rows)
    removed = spark.createDataFrame([(u,) for u in dups["uid"].to_pylist()], "uid string")
    kept = numbered(samples.join(removed, "uid", "left_anti"))
    sizes = write_shards(kept, tmp, cfg.samples_per_shard)
    (tmp / SIZES_FILE).write_text(json.dumps(sizes, indent=2) + "\n")
    manifest(kept, cfg.samples_per_shard).write.parquet(str(tmp / MANIFEST_FILE))
    stats.rows_out = sum(sizes.values())
    stats.extra["shards"] = len(sizes)
    kept.unpersist()
    scanned.unpersist()
    return stats


def run(cfg: ShardsConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    paths = input_tars(cfg.images)
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, [fingerprint(paths)],
                           lambda tmp, session: build(tmp, cfg, paths, session), spark)
