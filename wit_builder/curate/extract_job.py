"""`wit extract`: WARC/WAT files → deduplicated English pairs (see `curate.extract`).

Spark runs one task per input file, so a Common Crawl segment of ~80k WARC files spreads
over any cluster, and a damaged file costs only its own damaged records.

Outputs: ``pairs.parquet`` (`pairs.PAIR_SCHEMA`), ``file_counts.parquet`` (source_file,
counter, n: every per-file counter, see `extract.counter_kind`), `stats.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from wit_builder.curate import extract, lid, sources
from wit_builder.curate.configs import ExtractConfig
from wit_builder.curate.pairs import write_pairs
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult
from wit_builder.spark import run_spark_stage
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGE = "extract"
OUTPUT_VERSION = 1
CONFIG = ExtractConfig


def build(tmp: Path, cfg: ExtractConfig, paths: list[str], spark: SparkSession) -> StageStats:
    """Extract, count and deduplicate into `tmp`."""
    stats = StageStats(STAGE)
    params = cfg.params(extract.ship_model(spark, cfg.lid_model))
    got = extract.extracted_pairs(spark, paths, params, cfg.files_per_task, tmp)
    got.counts.add_to(stats)
    stats.rows_out = write_pairs(got.pairs, tmp)
    stats.drop("duplicate", got.counts.pairs - stats.rows_out)
    got.raw.unpersist()
    return stats


def run(cfg: ExtractConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    paths, inputs = sources.resolve_inputs(cfg.warc, cfg.manifest, cfg.manifest_prefix)
    if cfg.lid_model:
        inputs.append(fingerprint([lid.resolve_model_path(cfg.lid_model)]))
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                           lambda tmp, session: build(tmp, cfg, paths, session), spark)
