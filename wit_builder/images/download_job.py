"""`wit download`: pairs → images in webdataset shards (see `images.fetch`).

Outputs: ``NNNNN.tar`` (``KEY.jpg``, ``KEY.txt``, ``KEY.json`` per image), per shard
``NNNNN.parquet`` (every row with status and error) and ``NNNNN_stats.json``
(img2dataset's), ``failures.parquet`` (uid, url, reason, http_status, error_message: one
row per input row that is not in a shard), `stats.json`. rows_in − Σ drops = rows_out.

The run is resumable (`outputs.run_stage(resumable=True)`): a killed run's finished shards
are kept and the rest redone. ``--retry-failed`` fetches the rows whose failure was
transient (`outcomes.TRANSIENT`: timeout, 5xx, 429, connection reset) again, into extra
shards numbered after the existing ones; permanent failures are not retried.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wit_builder.curate.pairs import pairs_input_fingerprint, read_pairs
from wit_builder.errors import InputError
from wit_builder.images import fetch
from wit_builder.images.configs import DownloadConfig
from wit_builder.images.decode import Resizer
from wit_builder.images.outcomes import TRANSIENT, classify
from wit_builder.outputs import MARKER, StageResult, atomic_write, read_marker, run_stage
from wit_builder.spark import get_spark, run_spark_stage
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGE = "download"
OUTPUT_VERSION = 1
CONFIG = DownloadConfig
NEEDS = ("uid", "url", "text")
FAILURES_FILE = "failures.parquet"
log = logging.getLogger(__name__)
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


def download_missing(work: Path, cfg: DownloadConfig, shards: dict[int, pa.Table],
                     spark: SparkSession | None) -> None:
    """Download the `shards` that `work` does not hold finished yet."""
    done = fetch.done_shards(work)
    todo = fetch.write_inputs(work, shards, [i for i in shards if i not in done])
    first = next(iter(shards.values()), None)
    columns = first.column_names if first is not None else ["url", "caption"]
    settings = settings_of(cfg, work, columns)
    total = sum(t.num_rows for t in shards.values())
    already = sum(shards[i].num_rows for i in done if i in shards)
    with fetch.ProgressWatch(work, total, already):
        run_tasks(cfg, todo, settings, spark)
    shutil.rmtree(work / fetch.INPUTS_DIR, ignore_errors=True)  # tasks delete their own


def checked_failures(work: Path, shards: dict[int, pa.Table]) -> pa.Table:
    """The failures of `shards`; `InputError` unless every input row has an outcome."""
    outcomes = fetch.read_outcomes(work, shards)
    rows_in = sum(t.num_rows for t in shards.values())
    got = 0 if outcomes is None else outcomes.num_rows
    if got != rows_in:
        raise InputError(f"shards hold {got} outcomes for {rows_in} input rows")
    return FAILURE_SCHEMA.empty_table() if outcomes is None else failures_table(outcomes)


def stats_of(rows_in: int, failures: pa.Table, n_shards: int) -> StageStats:
    """Rows in, drops by failure reason, rows out."""
    stats = StageStats(STAGE, rows_in=rows_in, rows_out=rows_in - failures.num_rows)
    for reason in failures["reason"].to_pylist():
        stats.drop(reason)
    stats.extra["shards"] = n_shards
    return stats


def build(work: Path, cfg: DownloadConfig, spark: SparkSession | None) -> StageStats:
    """Download every shard not yet finished in `work`, then account for every row."""
    pairs = read_pairs(cfg.pairs)
    shards = fetch.plan_shards(pairs, cfg.samples_per_shard)
    download_missing(work, cfg, shards, spark)
    failures = checked_failures(work, shards)
    pq.write_table(failures, work / FAILURES_FILE)
    return stats_of(pairs.num_rows, failures, len(shards))


def retry_failed(cfg: DownloadConfig, spark: SparkSession | None) -> StageResult:
    """Fetch again the rows of a finished output whose failure was transient, into new
    shards after the existing ones (see module docstring)."""
    out = cfg.out.absolute()
    marker = read_marker(out)
    if marker is None or marker.get("stage") != STAGE:
        raise InputError(f"--retry-failed needs a finished `wit download` output at {out}")
    failures = pq.read_table(out / FAILURES_FILE)
    again = failures.filter(pc.is_in(failures["reason"], pa.array(sorted(TRANSIENT))))
    if again.num_rows == 0:
        log.info("no transient failure to retry in %s", out)
        return StageResult("skipped", out, marker)
    pairs = read_pairs(cfg.pairs)
    pairs = pairs.filter(pc.is_in(pairs["uid"], again["uid"]))
    shards = fetch.plan_shards(pairs, cfg.samples_per_shard,
                               max(fetch.done_shards(out), default=-1) + 1)
    work = out.parent / f".{out.name}.retry-{min(shards):05d}"
    work.mkdir(exist_ok=True)
    download_missing(work, cfg, shards, spark)
    kept = failures.filter(pc.invert(pc.is_in(failures["uid"], again["uid"])))
    merged = pa.concat_tables([kept, checked_failures(work, shards)])
    return finish_retry(out, work, shards, merged, marker)


def finish_retry(out: Path, work: Path, shards: dict[int, pa.Table], failures: pa.Table,
                 marker: dict) -> StageResult:
    """Move the retry's shards into `out`, then replace failures, stats and marker (each
    file atomically; the marker last)."""
    for shard_id in shards:
        for path in fetch.shard_files(work, shard_id):
            os.replace(path, out / path.name)
    shutil.rmtree(work)
    before = marker["stats"]
    stats = stats_of(before["rows_in"], failures, before.get("shards", 0) + len(shards))
    stats.extra["retried"] = before.get("retried", 0) + sum(t.num_rows for t in shards.values())
    new_marker = {**marker, "stats": stats.to_dict()}
    atomic_write(out / FAILURES_FILE, lambda tmp: pq.write_table(failures, tmp))
    for name, data in (("stats.json", stats.to_dict()), (MARKER, new_marker)):
        text = json.dumps(data, indent=2) + "\n"
        atomic_write(out / name, lambda tmp, text=text: tmp.write_text(text))
    stats.print()
    return StageResult("ran", out, new_marker)


def run(cfg: DownloadConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete; resumes an unfinished run), or
    with `retry_failed` fetch a finished output's transient failures again."""
    inputs = [pairs_input_fingerprint(cfg.pairs, NEEDS, "wit balance or wit curate")]
    if cfg.retry_failed:
        if cfg.distributor == "pyspark" and spark is None:
            spark = get_spark(cfg.master, f"wit-{STAGE}", cfg.spark_conf)
        return retry_failed(cfg, spark)
    if cfg.distributor == "multiprocessing":
        return run_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                         lambda work: build(work, cfg, None), resumable=True)
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                           lambda work, session: build(work, cfg, session), spark,
                           resumable=True)
