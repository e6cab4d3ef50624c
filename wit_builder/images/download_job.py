"""`wit download`: pairs → images in webdataset shards (`fetch`), every row accounted
for (`failures`: ``failures/`` and the stats; rows_in − Σ drops = rows_out).

Resumable: a killed run's finished shards are kept and the rest redone. ``--retry-failed``
fetches the rows whose failure was transient (`outcomes.TRANSIENT`) again, into extra
shards numbered after the existing ones (`retry`); permanent failures are not retried.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from wit_builder.curate.pairs import pairs_dataset, pairs_input_fingerprint, read_pairs
from wit_builder.errors import ConfigError
from wit_builder.images import failures, fetch, plan, retry
from wit_builder.images.configs import DownloadConfig
from wit_builder.outputs import StageResult, finished, run_stage
from wit_builder.spark import get_spark, run_spark_stage
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGE = "download"
OUTPUT_VERSION = 1
CONFIG = DownloadConfig
NEEDS = ("uid", "url", "text")
log = logging.getLogger(__name__)


def build(work: Path, cfg: DownloadConfig, spark: SparkSession | None) -> StageStats:
    """Download every shard not yet finished in `work`, then account for every row: in
    Spark tasks (`plan`), or for the local process pool from the driver."""
    if spark is not None:
        return plan.download(work, cfg, spark.read.parquet(str(pairs_dataset(cfg.pairs))))
    pairs = read_pairs(cfg.pairs)
    usable, dropped = failures.usable_pairs(pairs)
    shards = fetch.plan_shards(usable, cfg.samples_per_shard)
    failed = failures.fetched_failures(work, cfg, shards)
    failures.write_failures(work, failed)
    return failures.stats_of(pairs.num_rows, failures.reason_counts(failed), len(shards),
                             dropped)


def retry_failed(cfg: DownloadConfig, spark: SparkSession | None) -> StageResult:
    """Fetch again the rows of a finished output whose failure was transient, into new
    shards after the existing ones (`retry`)."""
    out = cfg.out.absolute()
    finished(out, STAGE)
    pending = retry.finish_pending(out)
    if pending:
        log.warning("finished moving in a retry of %s that was stopped while doing so", out)
    marker = finished(out, STAGE)
    if changed := cfg.changed_image_fields(marker["config"]):
        raise ConfigError(f"--retry-failed must fetch as {out} was made; changed: "
                          + ", ".join(changed))
    if spark is not None:
        pairs = spark.read.parquet(str(pairs_dataset(cfg.pairs)))
        stats = retry.on_spark(out, cfg, pairs, marker["stats"])
    else:
        stats = retry.on_driver(out, cfg, read_pairs(cfg.pairs), marker["stats"])
    if stats is None:
        log.info("no transient failure to retry in %s", out)
        return StageResult("ran" if pending else "skipped", out, marker)
    stats.print()
    return StageResult("ran", out, finished(out, STAGE))


def run(cfg: DownloadConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete; resumes an unfinished run), or
    with `retry_failed` fetch a finished output's transient failures again."""
    inputs = [pairs_input_fingerprint(cfg.pairs, NEEDS, "wit balance or wit curate")]
    local = cfg.distributor == "multiprocessing"
    if cfg.retry_failed:
        if not local and spark is None:
            spark = get_spark(cfg.master, f"wit-{STAGE}", cfg.spark_conf)
        return retry_failed(cfg, None if local else spark)
    if local:
        return run_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                         lambda work: build(work, cfg, None), resumable=True)
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                           lambda work, session: build(work, cfg, session), spark,
                           resumable=True)
