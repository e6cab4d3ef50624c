"""The download output's accounting: ``failures.parquet`` and the stage's stats.

``failures.parquet`` holds one row per input row that is not a sample in a shard: uid,
url, reason (`outcomes.classify`), http_status, error_message. Every input row is a
sample or one failure, which `checked_failures` verifies; readers (`wit show`, retries)
go through `read_failures`.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wit_builder.errors import InputError
from wit_builder.images import fetch
from wit_builder.images.outcomes import TRANSIENT, classify
from wit_builder.outputs import atomic_write
from wit_builder.stats import StageStats

STAGE = "download"
FAILURES_FILE = "failures.parquet"
FAILURE_SCHEMA = pa.schema([("uid", pa.string()), ("url", pa.string()),
                            ("reason", pa.string()), ("http_status", pa.int32()),
                            ("error_message", pa.string())])


def failures_table(outcomes: pa.Table) -> pa.Table:
    """The rows of img2dataset's outcomes that are not successes, with their reason."""
    rows = outcomes.filter(pc.not_equal(outcomes["status"], "success"))
    classified = [classify(s, e) for s, e in zip(rows["status"].to_pylist(),
                                                  rows["error_message"].to_pylist(),
                                                  strict=True)]
    return pa.table({
        "uid": rows["uid"], "url": rows["url"],
        "reason": pa.array([r for r, _ in classified], pa.string()),
        "http_status": pa.array([h for _, h in classified], pa.int32()),
        "error_message": rows["error_message"]}, schema=FAILURE_SCHEMA)


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


def write_failures(directory: Path, failures: pa.Table) -> None:
    """``failures.parquet`` of a download output (atomically)."""
    atomic_write(directory / FAILURES_FILE, lambda tmp: pq.write_table(failures, tmp))


def read_failures(directory: Path) -> pa.Table:
    """``failures.parquet`` of a download output."""
    return pq.read_table(directory / FAILURES_FILE)


def transient(failures: pa.Table) -> pa.Table:
    """The failures worth fetching again (`outcomes.TRANSIENT` reasons)."""
    return failures.filter(pc.is_in(failures["reason"], pa.array(sorted(TRANSIENT))))
