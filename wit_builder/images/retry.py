"""``wit download --retry-failed``: fetch again the rows of a finished download whose
failure was transient (`outcomes.TRANSIENT`), into new shards numbered after its own.

On Spark the rows to fetch are a semi-join of the usable pairs with the transient
failures, downloaded and accounted for shard by shard (`plan.fetch_planned`); the old
failure files are rewritten without their transient rows by executor tasks, one per
file; the stats come from a ``groupBy(reason)``. The driver holds counts and file names,
never a row. The local process pool does the same with pyarrow on the driver (a local
pool is one machine's worth of rows).

Everything is prepared in a work dir beside the output (``.NAME.retry-NNNNN``, resumed
by a rerun) and moved into the output at the end: new shards, their failure files, and
the rewritten old ones.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wit_builder.errors import InputError
from wit_builder.images import failures, fetch, plan
from wit_builder.images.outcomes import TRANSIENT
from wit_builder.outputs import atomic_write, piece_done
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from wit_builder.images.configs import DownloadConfig

KEPT_DIR = "kept_failures"  # the old failure files, rewritten, in the work dir


def work_dir(out: Path) -> tuple[Path, int]:
    """(the retry's work dir, its first new shard id): after the output's last shard."""
    first = max(fetch.done_shards(out), default=-1) + 1
    return out.parent / f".{out.name}.retry-{first:05d}", first


def on_spark(out: Path, cfg: DownloadConfig, pairs: DataFrame, before: dict
             ) -> StageStats | None:
    """Retry on Spark (see module docstring); the output's new stats, None when no
    failure is transient."""
    from pyspark.sql import functions as F

    spark = pairs.sparkSession
    again = read_failures(spark, out).filter(F.col("reason").isin(sorted(TRANSIENT)))
    n_again = again.count()
    if n_again == 0:
        return None
    usable, _ = plan.usable(pairs)
    todo = usable.join(again.select("uid"), "uid", "left_semi")
    check_all_there(out, n_again, todo.count())
    work, first = work_dir(out)
    work.mkdir(exist_ok=True)
    _, n_shards = plan.fetch_planned(work, cfg, todo, first)
    rewrite_old_failures(spark, out, work)
    commit(out, work)
    reasons = {r["reason"]: r["count"] for r in
               read_failures(spark, out).groupBy("reason").count().collect()}
    return failures.retried_stats(before, reasons, n_shards, n_again)


def read_failures(spark: SparkSession, out: Path) -> DataFrame:
    """The ``failures/`` dataset of a download output as a Spark DataFrame."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return spark.read.schema(from_arrow_schema(failures.FAILURE_SCHEMA)).parquet(
        str(out / failures.FAILURES_FILE))


def check_all_there(out: Path, transient: int, found: int) -> None:
    """`InputError` if transient failures have no usable pair any more."""
    if found != transient:
        raise InputError(f"{transient - found} transient failure(s) of {out} are not in "
                         "the pairs any more: the pairs changed since the download; "
                         "download again with --overwrite")


def rewrite_old_failures(spark: SparkSession, out: Path, work: Path) -> None:
    """Each failure file of `out` without its transient rows, written into the work dir
    by one task per file (a file already written there is kept)."""
    names = sorted(p.name for p in (out / failures.FAILURES_FILE).glob("*.parquet"))
    source, target = str(out / failures.FAILURES_FILE), str(work / KEPT_DIR)
    (work / KEPT_DIR).mkdir(exist_ok=True)

    def task(part: list[str]) -> list[str]:
        for name in part:
            without_transient(Path(source) / name, Path(target) / name)
        return part

    spark.sparkContext.parallelize(names, max(1, len(names))).mapPartitions(task).count()


def without_transient(source: Path, target: Path) -> None:
    """Write `source`'s failures without the transient ones to `target` (once)."""
    if piece_done(target):
        return
    table = pq.read_table(source, schema=failures.FAILURE_SCHEMA)
    kept = table.filter(pc.invert(failures.is_transient(table)))
    atomic_write(target, lambda tmp: pq.write_table(kept, tmp))


def commit(out: Path, work: Path) -> None:
    """Move the retry's shards and failure files into `out`, replacing the old failure
    files by their rewritten versions; remove the work dir."""
    new = sorted(fetch.done_shards(work))
    fetch.move_shards(work, out, new)
    folder = out / failures.FAILURES_FILE
    for sub in (KEPT_DIR, failures.FAILURES_FILE):
        for path in sorted((work / sub).glob("*.parquet")):
            os.replace(path, folder / path.name)
    shutil.rmtree(work)


def on_driver(out: Path, cfg: DownloadConfig, pairs: pa.Table, before: dict
              ) -> StageStats | None:
    """Retry on the local process pool, with pyarrow on the driver (see module
    docstring); the output's new stats, None when no failure is transient."""
    old = failures.read_failures(out)
    again = failures.transient(old)
    if again.num_rows == 0:
        return None
    usable, _ = failures.usable_pairs(pairs)
    todo = usable.filter(pc.is_in(usable["uid"], again["uid"]))
    check_all_there(out, again.num_rows, todo.num_rows)
    work, first = work_dir(out)
    work.mkdir(exist_ok=True)
    shards = fetch.plan_shards(todo, cfg.samples_per_shard, first)
    merged = pa.concat_tables([old.filter(pc.invert(failures.is_transient(old))),
                               failures.fetched_failures(work, cfg, shards)])
    fetch.move_shards(work, out, shards)
    shutil.rmtree(work)
    failures.write_failures(out, merged)
    return failures.retried_stats(before, failures.reason_counts(merged), len(shards),
                                  again.num_rows)
