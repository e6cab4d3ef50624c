"""`wit shards`: downloaded shards → deduplicated final shards.

One Spark task per downloaded tar scans it (`tars`: sha256, pHash, member offsets);
exact duplicates (same sha256) and near duplicates (pHash within `max_distance`) are
grouped, each group keeping its smallest uid (`dedup`: ``duplicates.parquet``); the kept
samples are written in uid order into ``{00000..N}.tar`` of `samples_per_shard` (keys are
uids), one task per final shard, copying the members' bytes (`manifest`:
``manifest.parquet``; `tarshards`: ``sizes.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from wit_builder import tarshards
from wit_builder.images import dedup, manifest, tars
from wit_builder.images.configs import ShardsConfig
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult
from wit_builder.spark import run_spark_stage
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGE = manifest.STAGE
OUTPUT_VERSION = 2
CONFIG = ShardsConfig


def build(tmp: Path, cfg: ShardsConfig, paths: list[str], spark: SparkSession) -> StageStats:
    """Scan, deduplicate and write the final shards into `tmp`."""
    stats = StageStats(STAGE)
    scanned = tars.scan(spark, paths)
    stats.rows_in = scanned.count()
    tars.reconcile(scanned.filter("reason is null or reason not like 'unreadable_%'").count(),
                   cfg.images, stats)
    samples = tars.unique_uids(tars.count_unusable(scanned, stats), stats)
    dups = dedup.duplicate_rows(samples, cfg.max_distance, cfg.bucket_cap, stats)
    dedup.write_duplicates(tmp, dups, stats)
    kept = manifest.numbered(samples.join(dups.select("uid"), "uid", "left_anti"))
    sizes = manifest.write_shards(kept, tmp, cfg.samples_per_shard)
    tarshards.write_sizes(tmp, sizes)
    manifest.write_manifest(kept, tmp, cfg.samples_per_shard)
    stats.rows_out = sum(sizes.values())
    stats.extra["shards"] = len(sizes)
    for persisted in (kept, dups, scanned):
        persisted.unpersist()
    return stats


def run(cfg: ShardsConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    paths = tars.downloaded_tars(cfg.images)
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, [fingerprint(paths)],
                           lambda tmp, session: build(tmp, cfg, paths, session), spark)
