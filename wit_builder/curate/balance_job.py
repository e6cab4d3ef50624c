"""The balance job: matched pairs → at most ~t pairs per entry (see `balance`).

Pass 1 counts matches per entry with Spark (explode + group by; only ≤ n_entries counts
reach the driver). The driver turns them into the per-entry probabilities, broadcasts
them, and pass 2 keeps or drops each pair in Arrow batches.

Outputs: ``pairs.parquet`` (kept rows + ``keep_prob``), ``entry_counts.parquet``
(entry_id, entry, matches, kept: entries with at least one match), ``plots/*.png``,
`stats.json`.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from wit_builder.config import StageConfig
from wit_builder.curate import balance
from wit_builder.curate.datasets import pairs_and_entries_inputs, pairs_dataset, write_pairs
from wit_builder.curate.match_job import entries_file, load_entries
from wit_builder.errors import InputError
from wit_builder.outputs import StageResult
from wit_builder.spark import run_spark_stage
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

STAGE = "balance"
OUTPUT_VERSION = 1
log = logging.getLogger(__name__)


class BalanceParams(BaseModel):
    """How to balance (shared by `wit balance` and `wit curate`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    t: int = Field(20_000, ge=1, description="max pairs per entry (MetaCLIP t)")
    tail_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="choose t so tail entries hold this share")
    seed: int = Field(0, description="seed of the hash-based uniform draw")


class BalanceConfig(StageConfig, BalanceParams):
    """Parameters of `wit balance`."""

    pairs: Path = Field(description="match output dir (or a matched pairs dataset)")
    entries: Path = Field(description="the query list the pairs were matched against")


def entry_match_counts(df: DataFrame, n_entries: int) -> np.ndarray:
    """Matches per entry id (pass 1); `InputError` if an id is not in the entry list."""
    from pyspark.sql import functions as F

    rows = (df.select(F.explode("entry_ids").alias("entry_id"))
            .groupBy("entry_id").count().collect())
    counts = np.zeros(n_entries, dtype=np.int64)
    for r in rows:
        if not 0 <= r["entry_id"] < n_entries:
            raise InputError(f"entry id {r['entry_id']} is not in the {n_entries}-entry list: "
                             "were the pairs matched against another list?")
        counts[r["entry_id"]] = r["count"]
    return counts


def choose_t(counts: np.ndarray, params: BalanceParams) -> int:
    """`params.t`, or the t that `tail_fraction` asks for."""
    if params.tail_fraction is None:
        return params.t
    return balance.t_for_tail_fraction(counts, params.tail_fraction)


def balance_df(df: DataFrame, p: np.ndarray, seed: int) -> DataFrame:
    """Pass 2: the kept rows of `df` with ``keep_prob``."""
    bc = df.sparkSession.sparkContext.broadcast(p)
    body = functools.partial(balance.balance_partition, p_of=bc, seed=seed)
    schema = ", ".join([f"`{f.name}` {f.dataType.simpleString()}" for f in df.schema.fields]
                       + ["keep_prob double"])
    return df.mapInArrow(body, schema)


def entry_counts_table(entries: list[str], matches: np.ndarray, kept: np.ndarray) -> pa.Table:
    """``entry_counts.parquet`` rows: entries with at least one match."""
    ids = np.flatnonzero(matches)
    return pa.table({
        "entry_id": pa.array(ids, pa.int32()),
        "entry": pa.array([entries[i] for i in ids], pa.string()),
        "matches": pa.array(matches[ids], pa.int64()),
        "kept": pa.array(kept[ids], pa.int64()),
    })


def balance_into(tmp: Path, matched: DataFrame, entries: list[str], params: BalanceParams,
                 stats: StageStats) -> int:
    """Balance `matched` into `tmp` (pairs, entry counts, plots); return rows written."""
    matches = entry_match_counts(matched, len(entries))
    t = choose_t(matches, params)
    kept_rows = write_pairs(balance_df(matched, balance.entry_probabilities(matches, t),
                                       params.seed), tmp / "pairs.parquet")
    written = matched.sparkSession.read.parquet(str(tmp / "pairs.parquet"))
    kept = entry_match_counts(written, len(entries))
    pq.write_table(entry_counts_table(entries, matches, kept), tmp / "entry_counts.parquet")
    balance.plot_entry_counts(matches, kept, t, tmp / "plots")
    stats.extra["balance"] = {
        "t": t, "seed": params.seed, "entries_matched": int((matches > 0).sum()),
        "head_entries": int((matches > t).sum()), "pairs_in": int(matched.count()),
        "pairs_kept": kept_rows}
    log.info("balanced with t=%s: %s of %s pairs kept", t, kept_rows,
             stats.extra["balance"]["pairs_in"])
    return kept_rows


def build(tmp: Path, cfg: BalanceConfig, spark: SparkSession) -> StageStats:
    """Balance the matched pairs into `tmp`."""
    stats = StageStats(STAGE)
    matched = spark.read.parquet(str(pairs_dataset(cfg.pairs)))
    stats.rows_in = matched.count()
    stats.rows_out = balance_into(tmp, matched, load_entries(cfg.entries), cfg, stats)
    stats.drop("balance_sampled_out", stats.rows_in - stats.rows_out)
    return stats


def run(cfg: BalanceConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    inputs = pairs_and_entries_inputs(cfg.pairs, entries_file(cfg.entries))
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                           lambda tmp, session: build(tmp, cfg, session), spark)
