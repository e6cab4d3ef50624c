"""The download output's accounting: the ``failures/`` dataset and the stage's stats.

``failures/`` (a Parquet dataset: a folder, so img2dataset's own reader, which takes
every ``*.parquet`` of a download folder as a shard's outcomes, is not confused) holds
one row per input row that was fetched and is not a sample in a shard: uid,
url, reason (`outcomes.classify`), http_status, error_message. Every input row is a
sample or one failure, which `checked_failures` verifies; readers (`wit show`, retries)
go through `read_failures`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wit_builder import tarshards
from wit_builder.errors import InputError
from wit_builder.images import fetch
from wit_builder.images.outcomes import TRANSIENT, classify_arrays
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from wit_builder.images.configs import DownloadConfig

STAGE = "download"
FAILURES_FILE = "failures"  # a dataset folder
FAILURES_PART = "part-00000.parquet"
INPUT_DROPS = ("bad_uid", "bad_url", "duplicate_uid")  # input rows never fetched
FAILURE_SCHEMA = pa.schema([("uid", pa.string()), ("url", pa.string()),
                            ("reason", pa.string()), ("http_status", pa.int32()),
                            ("error_message", pa.string())])


def failures_table(outcomes: pa.Table) -> pa.Table:
    """The rows of img2dataset's outcomes that are not successes, with their reason."""
    rows = outcomes.filter(pc.not_equal(outcomes["status"], "success"))
    error = rows["error_message"].cast(pa.string())  # a null column where all succeeded
    reason, http_status = classify_arrays(rows["status"].cast(pa.string()), error)
    return pa.table({"uid": rows["uid"].cast(pa.string()), "url": rows["url"].cast(pa.string()),
                     "reason": reason, "http_status": http_status, "error_message": error},
                    schema=FAILURE_SCHEMA)


def fetched_failures(work: Path, cfg: DownloadConfig, shards: dict[int, pa.Table]
                     ) -> pa.Table:
    """Download the `shards` not finished in `work` on the local process pool
    (`fetch.download_missing`); their failures, every row checked."""
    fetch.download_missing(work, shards, fetch.settings_for(cfg, work), cfg.processes)
    return checked_failures(work, shards)


def checked_failures(work: Path, shards: dict[int, pa.Table]) -> pa.Table:
    """The failures of `shards`; `InputError` unless every input row has an outcome."""
    outcomes = fetch.read_outcomes(work, shards)
    rows_in = sum(t.num_rows for t in shards.values())
    got = 0 if outcomes is None else outcomes.num_rows
    if got != rows_in:
        raise InputError(f"shards hold {got} outcomes for {rows_in} input rows")
    return FAILURE_SCHEMA.empty_table() if outcomes is None else failures_table(outcomes)


# The input rules of a download, stated once for both engines (pyarrow on the local
# pool, Spark SQL on a cluster), as regular expressions that RE2 and Java read alike.
UID_RULE = f"^{tarshards.UID_PATTERN.pattern}$"  # a uid may name files
# A URL whose authority holds credentials (``scheme://user:pass@host``): a crawl's links
# are public, and we never send a password found on the web.
CREDENTIALS = r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@"


def duplicate_order(columns: list[str]) -> list[str]:
    """The row a download keeps of a repeated uid: the first in this order, ascending,
    nulls first (page URL when the pairs have one, then URL, then text)."""
    return ["page_url" if "page_url" in columns else "url", "url", "text"]


def input_checks(pairs: pa.Table) -> tuple[pa.Array, pa.Array]:
    """(uid usable, URL usable) per row (`UID_RULE`, `CREDENTIALS`; a null is not)."""
    uid_ok = pc.fill_null(pc.match_substring_regex(pairs["uid"], UID_RULE), False)
    url = pairs["url"]
    url_ok = pc.and_(pc.not_equal(url, ""),
                     pc.invert(pc.match_substring_regex(url, CREDENTIALS)))
    return uid_ok, pc.fill_null(url_ok, False)


def usable_pairs(pairs: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    """The pairs a download fetches, in uid order: one row per uid (`duplicate_order`),
    only uids that may name files and URLs that are there without credentials
    (`input_checks`); with the rows dropped by reason (``bad_uid``, ``bad_url``,
    ``duplicate_uid``). `plan.usable` is the same on Spark."""
    uid_ok, url_ok = input_checks(pairs)
    with_uid = pairs.filter(uid_ok)
    order = [(c, "ascending", "at_start") for c in
             ["uid", *duplicate_order(pairs.column_names)]]
    good = pairs.filter(pc.and_(uid_ok, url_ok)).sort_by(order)
    uids = good["uid"].combine_chunks()
    repeated = pc.equal(uids[1:], uids[:-1]) if len(uids) > 1 else pa.array([], pa.bool_())
    first = pa.concat_arrays([pa.array([True] * min(1, len(uids))), pc.invert(repeated)])
    unique = good.filter(first)
    return unique, {"bad_uid": pairs.num_rows - with_uid.num_rows,
                    "bad_url": with_uid.num_rows - good.num_rows,
                    "duplicate_uid": good.num_rows - unique.num_rows}


def reason_counts(failures: pa.Table) -> dict[str, int]:
    """{reason: rows} of a failures table."""
    return {r["values"]: r["counts"] for r in pc.value_counts(failures["reason"]).to_pylist()}


def stats_of(rows_in: int, reasons: dict[str, int], n_shards: int,
             dropped: dict[str, int] | None = None) -> StageStats:
    """Rows in, drops by failure reason (`reasons`: failures per reason) and the
    `dropped` input rows, rows out."""
    drops = {**(dropped or {})}
    for reason, n in reasons.items():
        drops[reason] = drops.get(reason, 0) + n
    stats = StageStats(STAGE, rows_in=rows_in, rows_out=rows_in - sum(drops.values()))
    for reason, n in drops.items():
        if n:
            stats.drop(reason, n)
    stats.extra["shards"] = n_shards
    return stats


def retried_stats(before: dict, reasons: dict[str, int], new_shards: int, retried: int
                  ) -> StageStats:
    """The stats of a finished output (`before`) after a retry: its rows, the merged
    failures' `reasons`, its input drops, and the shards and rows the retry added."""
    drops = before.get("drops", {})
    stats = stats_of(before["rows_in"], reasons, before.get("shards", 0) + new_shards,
                     {k: drops.get(k, 0) for k in INPUT_DROPS})
    stats.extra["retried"] = before.get("retried", 0) + retried
    return stats


def write_failures(directory: Path, failures: pa.Table) -> None:
    """The ``failures/`` dataset of a download output, as one file, replacing any files
    it had (a new folder renamed into place)."""
    target = directory / FAILURES_FILE
    fresh = directory / f".{FAILURES_FILE}.new"
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    pq.write_table(failures, fresh / FAILURES_PART)
    old = directory / f".{FAILURES_FILE}.old"
    if target.exists():
        target.rename(old)
    fresh.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def read_failures(directory: Path) -> pa.Table:
    """The ``failures/`` dataset of a download output."""
    return pq.read_table(directory / FAILURES_FILE, schema=FAILURE_SCHEMA)


def transient(failures: pa.Table) -> pa.Table:
    """The failures worth fetching again (`outcomes.TRANSIENT` reasons)."""
    return failures.filter(is_transient(failures))


def is_transient(failures: pa.Table) -> pa.ChunkedArray:
    """Per row: whether its reason is worth fetching again."""
    return pc.is_in(failures["reason"], pa.array(sorted(TRANSIENT)))
