"""`wit extract`: WARC/WAT files → deduplicated English pairs (see `curate.extract`).

Spark runs one task per input file, so a Common Crawl segment of ~80k WARC files spreads
over any cluster, and a damaged file costs only its own damaged records. Each file is
staged once in the work dir (`staging`): a file the server refuses for a while is tried
again with backoff, one that stays unreadable is counted (``file_unreadable``), and a
killed run resumes with the files it staged.

Outputs: ``pairs.parquet`` (`pairs.PAIR_SCHEMA`), ``file_counts.parquet`` (source_file,
counter, n: every per-file counter, see `extract.counter_kind`), `stats.json`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from wit_builder.curate import extract, lid, sources, staging
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


def build(work: Path, cfg: ExtractConfig, paths: list[str], spark: SparkSession
          ) -> StageStats:
    """Extract (each file staged once in the work dir, kept by a rerun), count and
    deduplicate into `work`."""
    stats = StageStats(STAGE)
    params = cfg.params(extract.ship_model(spark, cfg.lid_model))
    pairs, counts = extract.extracted_pairs(spark, paths, params, cfg.files_per_task, work,
                                            cfg.retries())
    counts.add_to(stats)
    stats.rows_out = write_pairs(pairs, work)
    stats.drop("duplicate", counts.pairs - stats.rows_out)
    shutil.rmtree(work / staging.STAGING_DIR)
    return stats


def run(cfg: ExtractConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config; resumes the files
    a killed run staged)."""
    paths, inputs = sources.resolve_inputs(cfg.warc, cfg.manifest, cfg.manifest_prefix)
    if cfg.lid_model:
        inputs.append(fingerprint([lid.resolve_model_path(cfg.lid_model)]))
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                           lambda work, session: build(work, cfg, paths, session), spark,
                           resumable=True)
