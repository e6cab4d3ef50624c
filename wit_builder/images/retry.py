"""``wit download --retry-failed``: fetch again the rows of a finished download whose
failure was transient (`outcomes.TRANSIENT`), into new shards numbered after its own.

On Spark the rows to fetch are a semi-join of the usable pairs with the transient
failures, downloaded and accounted for shard by shard (`plan.fetch_planned`); the old
failure files are rewritten without their transient rows by executor tasks, one per
file; the stats come from a ``groupBy(reason)``. The driver holds counts and file names,
never a row. The local process pool does the same with pyarrow on the driver (a local
pool is one machine's worth of rows).

Everything is prepared in a work dir beside the output (``.NAME.retry-NNNNN``, resumed
by a rerun): new shards, their failure files, the rewritten old ones, and the output's
stats after the retry. Writing those stats (``COMMIT``) decides the retry; then the files
are moved into the output and the stats amended. A run stopped after ``COMMIT`` is
finished by the next ``--retry-failed`` before anything else (`finish_pending`), so a
kill while moving never leaves a fetched row both in a shard and among the transient
failures, to be fetched twice.
"""

from __future__ import annotations

import json
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
from wit_builder.outputs import amend, atomic_write, piece_done, write_json
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from wit_builder.images.configs import DownloadConfig

KEPT_DIR = "kept_failures"  # the old failure files, rewritten, in the work dir
COMMIT_FILE = "COMMIT"  # the output's stats after the retry: its presence decides it


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
    again = read_failures(spark, out / failures.FAILURES_FILE).filter(
        F.col("reason").isin(sorted(TRANSIENT)))
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
    merged = read_failures(spark, work / KEPT_DIR, work / failures.FAILURES_FILE)
    reasons = {r["reason"]: r["count"] for r in merged.groupBy("reason").count().collect()}
    return commit(out, work, failures.retried_stats(before, reasons, n_shards, n_again))


def read_failures(spark: SparkSession, *folders: Path) -> DataFrame:
    """Failure files (a download output's ``failures/``, or folders of them) as a Spark
    DataFrame."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return spark.read.schema(from_arrow_schema(failures.FAILURE_SCHEMA)).parquet(
        *[str(f) for f in folders])


def check_all_there(out: Path, transient: int, found: int) -> None:
    """`InputError` if transient failures have no usable pair any more."""
    if found != transient:
        raise InputError(f"{transient - found} transient failure(s) of {out} are not in "
                         "the pairs any more: the pairs changed since the download; "
                         "download again with --overwrite")


def old_failure_files(out: Path, work: Path) -> list[str]:
    """The names of `out`'s failure files (their rewritten versions go to the work dir's
    `KEPT_DIR`, made here)."""
    (work / KEPT_DIR).mkdir(exist_ok=True)
    return sorted(p.name for p in (out / failures.FAILURES_FILE).glob("*.parquet"))


def rewrite_old_failures(spark: SparkSession, out: Path, work: Path) -> None:
    """Each failure file of `out` without its transient rows, written into the work dir
    by one task per file (a file already written there is kept)."""
    names = old_failure_files(out, work)
    source, target = str(out / failures.FAILURES_FILE), str(work / KEPT_DIR)

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


def commit(out: Path, work: Path, stats: StageStats) -> StageStats:
    """Decide the retry prepared in `work` (its stats written as `COMMIT_FILE`), then
    finish it; `stats`."""
    write_json(work / COMMIT_FILE, stats.to_dict())
    finish(out, work)
    return stats


def finish(out: Path, work: Path) -> None:
    """Move what a decided retry still has in `work` into `out` (new shards, new failure
    files, old ones rewritten), amend `out`'s stats, remove `work`. A rerun after a kill
    at any point does the rest."""
    fetch.move_shards(work, out, sorted(fetch.done_shards(work)))
    folder = out / failures.FAILURES_FILE
    for sub in (KEPT_DIR, failures.FAILURES_FILE):
        for path in sorted((work / sub).glob("*.parquet")):
            os.replace(path, folder / path.name)
    amend(out, StageStats.from_dict(json.loads((work / COMMIT_FILE).read_text())))
    shutil.rmtree(work)


def finish_pending(out: Path) -> int:
    """Finish the retries of `out` stopped after they were decided; how many."""
    pending = sorted(w for w in out.parent.glob(f".{out.name}.retry-*")
                     if piece_done(w / COMMIT_FILE))
    for work in pending:
        finish(out, work)
    return len(pending)


def on_driver(out: Path, cfg: DownloadConfig, pairs: pa.Table, before: dict
              ) -> StageStats | None:
    """Retry on the local process pool, with pyarrow on the driver (see module
    docstring); the output's new stats, None when no failure is transient."""
    again = failures.transient(failures.read_failures(out))
    if again.num_rows == 0:
        return None
    usable, _ = failures.usable_pairs(pairs)
    todo = usable.filter(pc.is_in(usable["uid"], again["uid"]))
    check_all_there(out, again.num_rows, todo.num_rows)
    work, first = work_dir(out)
    work.mkdir(exist_ok=True)
    shards = fetch.plan_shards(todo, cfg.samples_per_shard, first)
    new = failures.fetched_failures(work, cfg, shards)
    (work / failures.FAILURES_FILE).mkdir(exist_ok=True)
    atomic_write(work / failures.FAILURES_FILE / f"{first:05d}.parquet",
                 lambda tmp: pq.write_table(new, tmp))
    for name in old_failure_files(out, work):
        without_transient(out / failures.FAILURES_FILE / name, work / KEPT_DIR / name)
    merged = pa.concat_tables([pq.read_table(work / KEPT_DIR, schema=failures.FAILURE_SCHEMA),
                               new])
    return commit(out, work, failures.retried_stats(before, failures.reason_counts(merged),
                                                    len(shards), again.num_rows))
