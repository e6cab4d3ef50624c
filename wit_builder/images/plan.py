"""A download planned, fetched and accounted for in Spark, shard by shard.

The pairs are checked (`usable`: a uid that may name files, a URL without credentials,
each uid once), numbered in uid order (`spark.number_rows`, the numbering `wit shards`
uses) and cut into input shards of `samples_per_shard` by number. One Spark task per
shard writes the shard's input, downloads it with img2dataset (`fetch`), classifies its
failures with Arrow kernels and writes them as ``failures/NNNNN.parquet``
(`failures`), then reports the shard's counts: the driver holds per-shard counts, never
a row. A shard already finished (its ``_stats.json`` and failures file there) is only
counted again, so a killed run resumes.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from wit_builder.errors import Incomplete
from wit_builder.images import failures, fetch
from wit_builder.outputs import atomic_write, piece_done
from wit_builder.spark import number_rows
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from wit_builder.images.configs import DownloadConfig

def usable(pairs: DataFrame) -> tuple[DataFrame, dict[str, int]]:
    """The pairs to fetch (see module docstring) and the input rows dropped by reason
    (``bad_uid``, ``bad_url``, ``duplicate_uid``): `failures.usable_pairs` on Spark, from
    the same rules (`failures.UID_RULE`, `failures.CREDENTIALS`,
    `failures.duplicate_order`)."""
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    uid_ok = F.col("uid").isNotNull() & F.col("uid").rlike(failures.UID_RULE)
    url_ok = (F.col("url").isNotNull() & (F.col("url") != "")
              & ~F.col("url").rlike(failures.CREDENTIALS))
    with_uid = pairs.filter(uid_ok)
    good = with_uid.filter(url_ok)
    order = [F.col(c).asc_nulls_first() for c in failures.duplicate_order(pairs.columns)]
    first = Window.partitionBy("uid").orderBy(*order)
    unique = good.withColumn("_n", F.row_number().over(first)).filter("_n = 1").drop("_n")
    unique = unique.persist(StorageLevel.MEMORY_AND_DISK)  # counted, then numbered
    total, n_uid, n_good, n_unique = (pairs.count(), with_uid.count(), good.count(),
                                      unique.count())
    return unique, {"bad_uid": total - n_uid, "bad_url": n_uid - n_good,
                    "duplicate_uid": n_good - n_unique}


def input_columns(pairs: DataFrame) -> list[str]:
    """The columns of a shard's input file: url, caption and the carried pair columns."""
    return ["url", "caption", *[c for c in fetch.CARRIED if c in pairs.columns]]


def shard_rows(pairs: DataFrame, per_shard: int, first_id: int
               ) -> tuple[Any, int, pa.Schema]:
    """(RDD of (shard id, [(number, row)]) with shard i in partition i, shards, the
    input files' schema): the pairs numbered in uid order and cut by number."""
    from pyspark.sql.pandas.types import to_arrow_schema

    numbered = number_rows(pairs.withColumnRenamed("text", "caption"), "uid")
    columns = input_columns(pairs)
    schema = to_arrow_schema(numbered.select(*columns).schema)
    n_shards = -(-numbered.count() // per_shard)

    def keyed(row: Any) -> tuple[int, tuple[int, tuple]]:
        return first_id + row["index"] // per_shard, (row["index"],
                                                      tuple(row[c] for c in columns))

    # consecutive int keys hash to distinct partitions: one shard a task
    grouped = numbered.rdd.map(keyed).groupByKey(numPartitions=max(1, n_shards))
    return grouped, n_shards, schema


def shard_task(part: Iterable[tuple[int, Iterable]], settings: fetch.FetchSettings,
               schema: pa.Schema) -> Iterator[dict[str, Any]]:
    """The body of one shard's task: download it unless finished, account for it."""
    downloader = None
    for shard_id, rows in part:
        work = Path(settings.output_folder)
        name = fetch.shard_name(shard_id)
        ordered = [values for _, values in sorted(rows)]
        ok = True
        if not piece_done(work / f"{name}_stats.json"):
            path = write_input(work, name, ordered, schema)
            downloader = downloader or fetch.downloader_in_task(settings)
            ok = fetch.fetch_shard(downloader, shard_id, str(path), settings)
            path.unlink(missing_ok=True)
        yield {"shard": shard_id, "ok": bool(ok), **account(work, name, len(ordered), ok)}


def write_input(work: Path, name: str, rows: list[tuple], schema: pa.Schema) -> Path:
    """The shard's input as an Arrow IPC file (what img2dataset's `Downloader` reads)."""
    folder = work / fetch.INPUTS_DIR
    folder.mkdir(exist_ok=True)
    table = pa.Table.from_pylist([dict(zip(schema.names, r, strict=True)) for r in rows],
                                 schema=schema)
    path = folder / f"{name}.feather"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def account(work: Path, name: str, rows_in: int, ok: bool) -> dict[str, Any]:
    """The shard's failures file (written once) and counts: rows, outcomes, reasons."""
    if not ok:
        return {"rows": rows_in, "outcomes": 0, "reasons": {}}
    saved = work / failures.FAILURES_FILE / f"{name}.parquet"
    outcomes = pq.read_table(work / f"{name}.parquet", columns=["uid", "url", "status",
                                                                 "error_message"])
    if piece_done(saved):  # accounted by an earlier run
        table = pq.read_table(saved, columns=["reason"])
    else:
        saved.parent.mkdir(exist_ok=True)
        table = failures.failures_table(outcomes)
        atomic_write(saved, lambda tmp: pq.write_table(table, tmp))
    return {"rows": rows_in, "outcomes": outcomes.num_rows,
            "reasons": failures.reason_counts(table)}


def fetch_planned(work: Path, cfg: DownloadConfig, pairs: DataFrame, first_id: int = 0
                  ) -> tuple[list[dict[str, Any]], int]:
    """Number `pairs` in uid order, cut them into shards from `first_id`, download and
    account for each in its task; (per-shard counts, shards). `Incomplete` if a shard
    failed or holds fewer outcomes than input rows (a rerun redoes only those)."""
    grouped, n_shards, schema = shard_rows(pairs, cfg.samples_per_shard, first_id)
    settings = replace(fetch.settings_for(cfg, work), columns=tuple(schema.names))
    with fetch.ProgressWatch(work, pairs.count(), None):
        results = grouped.mapPartitions(
            lambda part: shard_task(part, settings, schema)).collect()
    fetch.check_results([(r["shard"], r["ok"]) for r in results], settings)
    short = [r["shard"] for r in results if r["outcomes"] != r["rows"]]
    if short:
        raise Incomplete(f"{len(short)} shard(s) hold fewer outcomes than input rows "
                         f"(e.g. {short[0]}): rerun to redo them")
    shutil.rmtree(work / fetch.INPUTS_DIR, ignore_errors=True)
    return results, n_shards


def download(work: Path, cfg: DownloadConfig, pairs: DataFrame) -> StageStats:
    """Plan, fetch and account for every shard of `pairs` in `work` (see module
    docstring); the stage's stats."""
    kept, dropped = usable(pairs)
    results, n_shards = fetch_planned(work, cfg, kept)
    reasons: Counter[str] = Counter()
    for r in results:
        reasons.update(r["reasons"])
    rows_in = sum(dropped.values()) + sum(r["rows"] for r in results)
    return failures.stats_of(rows_in, dict(reasons), n_shards, dropped)
