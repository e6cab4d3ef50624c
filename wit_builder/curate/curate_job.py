"""`wit curate`: extract → match → balance in one Spark job.

The same library functions as the three stage jobs, chained in one Spark application;
the WARC files are read once, into the work dir's staging pieces (`staging`: retried,
resumed by a rerun, removed when the output is complete). Outputs are those of `wit
balance` plus ``file_counts.parquet`` of `wit extract`; `stats.json` accounts for every
candidate pair: rows_in (candidates) minus all drops (extraction reasons,
``duplicate``, ``no_match``, ``balance_sampled_out``) equals rows_out.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from wit_builder.curate import extract, lid, sources, staging
from wit_builder.curate.balance import balance_into
from wit_builder.curate.configs import CurateConfig
from wit_builder.curate.matching import match_df
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult
from wit_builder.querylist.entries import entries_file, load_entries
from wit_builder.spark import run_spark_stage
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGE = "curate"
OUTPUT_VERSION = 1
CONFIG = CurateConfig


def build(tmp: Path, cfg: CurateConfig, paths: list[str], spark: SparkSession) -> StageStats:
    """Extract, match and balance into `tmp`."""
    from pyspark import StorageLevel

    stats = StageStats(STAGE)
    entries = load_entries(cfg.entries)
    params = cfg.params(extract.ship_model(spark, cfg.lid_model))
    got, counts = extract.extracted_pairs(spark, paths, params, cfg.files_per_task, tmp,
                                          cfg.retries())
    counts.add_to(stats)
    pairs = got.persist(StorageLevel.MEMORY_AND_DISK)
    unique = pairs.count()
    stats.drop("duplicate", counts.pairs - unique)
    matched = match_df(pairs, entries).persist(StorageLevel.MEMORY_AND_DISK)
    stats.drop("no_match", unique - matched.count())
    pairs.unpersist()
    done = balance_into(tmp, matched, entries, cfg.t, cfg.tail_fraction, cfg.seed)
    stats.rows_out = done.pairs_kept
    stats.drop("balance_sampled_out", done.sampled_out)
    stats.extra.update(entries=len(entries), balance=asdict(done))
    matched.unpersist()
    shutil.rmtree(tmp / staging.STAGING_DIR)
    return stats


def run(cfg: CurateConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the pipeline (skips when `cfg.out` is complete for this config)."""
    paths, inputs = sources.resolve_inputs(cfg.warc, cfg.manifest, cfg.manifest_prefix)
    inputs.append(fingerprint([str(entries_file(cfg.entries))]))
    if cfg.lid_model:
        inputs.append(fingerprint([lid.resolve_model_path(cfg.lid_model)]))
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                           lambda tmp, session: build(tmp, cfg, paths, session), spark,
                           resumable=True)

