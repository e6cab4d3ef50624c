"""`wit download`: pairs → images in webdataset shards (see `images.fetch`).

Outputs: ``NNNNN.tar`` (``KEY.jpg``, ``KEY.txt``, ``KEY.json`` per image), per shard
``NNNNN.parquet`` (every row with status and error) and ``NNNNN_stats.json``
(img2dataset's), ``failures.parquet`` (uid, url, reason, http_status, error_message: one
row per input row that is not in a shard), `stats.json`. rows_in − Σ drops = rows_out.

The run is resumable (`outputs.run_stage(resumable=True)`): a killed run's finished shards
are kept and the rest redone.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wit_builder.curate.pairs import pairs_dataset, pairs_input_fingerprint, read_pairs
from wit_builder.errors import InputError
from wit_builder.images import fetch
from wit_builder.images.configs import DownloadConfig
from wit_builder.images.decode import Resizer
from wit_builder.images.outcomes import classify
from wit_builder.outputs import StageResult
from wit_builder.spark import run_spark_stage
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGE = "download"
OUTPUT_VERSION = 1
CONFIG = DownloadConfig
NEEDS = ("uid", "url", "text")
FAILURES_FILE = "failures.parquet"
FAILURE_SCHEMA = pa.schema([("uid", pa.string()), ("url", pa.string()),
                            ("reason", pa.string()), ("http_status", pa.int32()),
                            ("error_message", pa.string())])


def settings_of(cfg: DownloadConfig, work: Path, columns: list[str]) -> fetch.FetchSettings:
    """The task settings of a run writing into `work`."""
    resizer = Resizer(cfg.image_size, cfg.resize_mode, cfg.min_image_size,
                      cfg.max_aspect_ratio, cfg.max_pixels)
    return fetch.FetchSettings(
        output_folder=str(work), resizer=resizer, columns=tuple(columns),
        samples_per_shard=cfg.samples_per_shard, threads=cfg.threads, timeout=cfg.timeout,
        retries=cfg.retries, respect_opt_out=cfg.respect_opt_out,
        allow_network=tuple(cfg.allow_network), env={"NO_ALBUMENTATIONS_UPDATE": "1"})


def failures_table(outcomes: pa.Table) -> pa.Table:
    """``failures.parquet``: the rows that are not successes, with their reason."""
    rows = outcomes.filter(pc.not_equal(outcomes["status"], "success"))
    classified = [classify(s, e) for s, e in zip(rows["status"].to_pylist(),
                                                  rows["error_message"].to_pylist(),
                                                  strict=True)]
    return pa.table({
        "uid": rows["uid"], "url": rows["url"],
        "reason": pa.array([r for r, _ in classified], pa.string()),
        "http_status": pa.array([h for _, h in classified], pa.int32()),
        "error_message": rows["error_message"]}, schema=FAILURE_SCHEMA)


def run_tasks(cfg: DownloadConfig, todo: list[tuple[int, str]], settings: fetch.FetchSettings,
              spark: SparkSession | None) -> None:
    """Download the shards still to do; `InputError` if a shard task failed as a whole."""
    if not todo:
        return
    if cfg.distributor == "multiprocessing":
        results = fetch.run_on_processes(todo, settings, cfg.processes)
    else:
        assert spark is not None
        results = fetch.run_on_spark(spark, todo, settings)
    failed = sorted(shard for shard, ok in results if not ok)
    if failed:
        raise InputError(f"{len(failed)} shard task(s) failed (e.g. {failed[0]}); rerun to "
                         "retry them: finished shards are kept")


def build(work: Path, cfg: DownloadConfig, spark: SparkSession | None) -> StageStats:
    """Download every shard not yet finished in `work`, then account for every row."""
    stats = StageStats(STAGE)
    pairs = read_pairs(cfg.pairs)
    shards = fetch.plan_shards(pairs, cfg.samples_per_shard)
    done = fetch.done_shards(work)
    todo = fetch.write_inputs(work, shards, [i for i in range(len(shards)) if i not in done])
    columns = list(shards[0].column_names) if shards else ["url", "caption"]
    settings = settings_of(cfg, work, columns)
    already = sum(shards[i].num_rows for i in done if i < len(shards))
    with fetch.ProgressWatch(work, pairs.num_rows, already):
        run_tasks(cfg, todo, settings, spark)
    return account(work, pairs.num_rows, len(shards), stats)


def account(work: Path, rows_in: int, n_shards: int, stats: StageStats) -> StageStats:
    """Stats and ``failures.parquet`` from the shards' outcomes."""
    outcomes = fetch.read_outcomes(work, range(n_shards))
    if outcomes.num_rows != rows_in:
        raise InputError(f"shards hold {outcomes.num_rows} outcomes for {rows_in} input rows")
    failures = failures_table(outcomes) if n_shards else FAILURE_SCHEMA.empty_table()
    pq.write_table(failures, work / FAILURES_FILE)
    stats.rows_in = rows_in
    for reason in failures["reason"].to_pylist():
        stats.drop(reason)
    stats.rows_out = rows_in - failures.num_rows
    stats.extra["shards"] = n_shards
    shutil.rmtree(work / fetch.INPUTS_DIR, ignore_errors=True)  # tasks delete their own
    return stats


def run(cfg: DownloadConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete; resumes an unfinished run)."""
    pairs_dataset(cfg.pairs, NEEDS, "wit balance or wit curate")
    inputs = [pairs_input_fingerprint(cfg.pairs, NEEDS, "wit balance or wit curate")]
    if cfg.distributor == "multiprocessing":
        from wit_builder.outputs import run_stage

        return run_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                         lambda work: build(work, cfg, None), resumable=True)
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                           lambda work, session: build(work, cfg, session), spark,
                           resumable=True)
