"""`wit curate`: extract → match → balance in one Spark job.

The same functions as the three stage jobs, chained in one Spark application so the
intermediate pairs never touch storage; the WARC files are read once (the raw extraction
is persisted). Outputs are those of `wit balance` plus ``file_counts.parquet`` of
`wit extract`; `stats.json` accounts for every candidate pair: rows_in (candidates) minus
all drops (extraction reasons, ``duplicate``, ``no_match``, ``balance_sampled_out``)
equals rows_out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from wit_builder.curate.balance_job import BalanceParams, balance_into
from wit_builder.curate.extract_job import ExtractConfig, extracted_pairs, resolve_inputs
from wit_builder.curate.match_job import entries_file, load_entries, match_df
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult
from wit_builder.spark import run_spark_stage
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGE = "curate"
OUTPUT_VERSION = 1


class CurateConfig(ExtractConfig, BalanceParams):
    """Parameters of `wit curate`: those of extract and balance, plus the entry list."""

    entries: Path = Field(description="querylist output dir, entries.parquet or .txt")


def build(tmp: Path, cfg: CurateConfig, paths: list[str], spark: SparkSession) -> StageStats:
    """Extract, match and balance into `tmp`."""
    from pyspark import StorageLevel

    stats = StageStats(STAGE)
    entries = load_entries(cfg.entries)
    pairs, raw = extracted_pairs(spark, cfg, paths, tmp, stats)
    pairs = pairs.persist(StorageLevel.MEMORY_AND_DISK)
    unique = pairs.count()
    stats.drop("duplicate", stats.extra["pairs_before_dedup"] - unique)
    raw.unpersist()
    matched = match_df(pairs, entries).persist(StorageLevel.MEMORY_AND_DISK)
    stats.drop("no_match", unique - matched.count())
    pairs.unpersist()
    stats.rows_out = balance_into(tmp, matched, entries, cfg, stats)
    stats.drop("balance_sampled_out", stats.extra["balance"]["pairs_in"] - stats.rows_out)
    stats.extra["entries"] = len(entries)
    matched.unpersist()
    return stats


def run(cfg: CurateConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the pipeline (skips when `cfg.out` is complete for this config)."""
    paths, inputs = resolve_inputs(cfg)
    inputs.append(fingerprint([str(entries_file(cfg.entries))]))
    if cfg.lid_model:
        inputs.append(fingerprint([cfg.lid_model]))
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                           lambda tmp, session: build(tmp, cfg, paths, session), spark)
