"""`wit balance`: matched pairs → at most ~t pairs per entry (see `curate.balance`).

Outputs: ``pairs.parquet`` (kept rows + ``keep_prob``), ``entry_counts.parquet``
(entry_id, entry, matches, kept: entries with at least one match), ``plots/*.png``,
`stats.json`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from wit_builder.curate.balance import balance_into
from wit_builder.curate.configs import BalanceConfig
from wit_builder.curate.pairs import pairs_dataset, pairs_input_fingerprint
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult
from wit_builder.querylist.entries import entries_file, load_entries
from wit_builder.spark import run_spark_stage
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGE = "balance"
OUTPUT_VERSION = 1
CONFIG = BalanceConfig
NEEDS = ("uid", "entry_ids")  # columns of the input pairs this stage reads


def build(tmp: Path, cfg: BalanceConfig, spark: SparkSession) -> StageStats:
    """Balance the matched pairs into `tmp`."""
    stats = StageStats(STAGE)
    matched = spark.read.parquet(str(pairs_dataset(cfg.pairs, NEEDS, "wit match")))
    stats.rows_in = matched.count()
    done = balance_into(tmp, matched, load_entries(cfg.entries), cfg.t, cfg.tail_fraction,
                        cfg.seed)
    stats.rows_out = done.pairs_kept
    stats.drop("balance_sampled_out", done.sampled_out)
    stats.extra["balance"] = asdict(done)
    return stats


def run(cfg: BalanceConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    inputs = [pairs_input_fingerprint(cfg.pairs, NEEDS, "wit match"),
              fingerprint([str(entries_file(cfg.entries))])]
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                           lambda tmp, session: build(tmp, cfg, session), spark)
