"""`wit match`: pairs × query list → pairs with ``entry_ids`` (only rows with a match).

The matching rule and its Spark form are in `curate.matching`.

Outputs: ``pairs.parquet`` (input columns + ``entry_ids: list<int32>``), `stats.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from wit_builder.curate.configs import MatchConfig
from wit_builder.curate.matching import match_df
from wit_builder.curate.pairs import pairs_dataset, pairs_input_fingerprint, write_pairs
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult
from wit_builder.querylist.entries import entries_file, load_entries
from wit_builder.spark import run_spark_stage
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGE = "match"
OUTPUT_VERSION = 1
CONFIG = MatchConfig
NEEDS = ("uid", "text")  # columns of the input pairs this stage reads


def build(tmp: Path, cfg: MatchConfig, spark: SparkSession) -> StageStats:
    """Match the pairs into `tmp`."""
    stats = StageStats(STAGE)
    entries = load_entries(cfg.entries)
    pairs = spark.read.parquet(str(pairs_dataset(cfg.pairs, NEEDS, "wit extract")))
    stats.rows_in = pairs.count()
    stats.rows_out = write_pairs(match_df(pairs, entries), tmp)
    stats.drop("no_match", stats.rows_in - stats.rows_out)
    stats.extra["entries"] = len(entries)
    return stats


def run(cfg: MatchConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    inputs = [pairs_input_fingerprint(cfg.pairs, NEEDS, "wit extract"),
              fingerprint([str(entries_file(cfg.entries))])]
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                           lambda tmp, session: build(tmp, cfg, session), spark)
