"""MetaCLIP class balancing: cap each query entry at about `t` pairs, keep the tail whole.

With ``count_e`` the number of pairs matching entry *e*, each entry gets the sampling
probability ``p_e = t / max(count_e, t)`` (1 for tail entries, those with at most `t`
matches). A pair matching the set of entries S is kept with probability
``1 − Π_{e∈S} (1 − p_e)``: it survives if any of its entries would keep it. So a pair
matching any tail entry is always kept, and a head entry keeps about `t` of its pairs
(a little more, from pairs also kept for other entries).

The uniform draw for a pair is a hash of (uid, seed), not a random generator: the same
input, `t` and seed select exactly the same pairs on any cluster, in any task order.

In Spark (`balance_into`), pass 1 counts matches per entry (explode + group by; only ≤
n_entries counts reach the driver); the driver turns them into the per-entry
probabilities, broadcasts them, and pass 2 keeps or drops each pair in Arrow batches.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wit_builder.curate.pairs import KEEP_PROB, PAIRS_FILE, write_pairs
from wit_builder.errors import InputError
from wit_builder.spark import schema_plus

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

ENTRY_COUNTS_FILE = "entry_counts.parquet"
PLOTS_DIR = "plots"
log = logging.getLogger(__name__)


def entry_probabilities(counts: np.ndarray, t: int) -> np.ndarray:
    """``p_e = t / max(count_e, t)`` for every entry (1.0 where count_e ≤ t)."""
    counts = np.asarray(counts, dtype=np.float64)
    return t / np.maximum(counts, float(t))


def t_for_tail_fraction(counts: np.ndarray, fraction: float) -> int:
    """Smallest t such that entries with count ≤ t hold ≥ `fraction` of all matches.

    MetaCLIP-style choice of t from the data: with a larger `fraction` more of the
    distribution counts as tail (kept whole) and the result is larger and less balanced.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"tail fraction must be in (0, 1], got {fraction}")
    values = np.sort(np.asarray(counts, dtype=np.int64)[np.asarray(counts) > 0])
    if len(values) == 0:
        return 1
    share = np.cumsum(values) / values.sum()
    index = int(np.searchsorted(share, fraction - 1e-12))
    return int(values[min(index, len(values) - 1)])


def keep_probabilities(entry_ids: pa.ListArray | pa.ChunkedArray,
                       p: np.ndarray) -> np.ndarray:
    """``1 − Π (1 − p_e)`` over each row's entry ids (exactly p_e for a single entry).

    A row without entry ids gets 0 (it matches nothing, so nothing keeps it).
    """
    if isinstance(entry_ids, pa.ChunkedArray):
        entry_ids = entry_ids.combine_chunks()
    flat = pc.list_flatten(entry_ids).to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(entry_ids).fill_null(0).to_numpy(zero_copy_only=False)
    keep = np.zeros(len(entry_ids))
    nonempty = lengths > 0
    if flat.size:
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[nonempty]
        keep[nonempty] = 1.0 - np.multiply.reduceat(1.0 - p[flat], starts)
        single = lengths == 1
        keep[single] = p[flat[starts[single[nonempty]]]]
    return keep


def uniform_draws(uids: Iterable[str], seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per uid: the top 53 bits of blake2b(seed, uid)."""
    key = str(seed).encode()
    draws = [int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8, key=key).digest())
             >> 11 for u in uids]
    return np.asarray(draws, dtype=np.float64) / float(1 << 53)


def balance_batch(batch: pa.RecordBatch, p: np.ndarray, seed: int) -> pa.RecordBatch:
    """The rows of `batch` that are kept, with their ``keep_prob``."""
    keep_prob = keep_probabilities(batch.column("entry_ids"), p)
    draws = uniform_draws(batch.column("uid").to_pylist(), seed)
    with_prob = batch.append_column(KEEP_PROB, pa.array(keep_prob, pa.float64()))
    return with_prob.filter(pa.array(draws < keep_prob))


def balance_partition(batches: Iterable[pa.RecordBatch], p_of: object,
                      seed: int) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body; `p_of` is a broadcast of the `entry_probabilities` array."""
    p = p_of.value  # type: ignore[attr-defined]
    for batch in batches:
        yield balance_batch(batch, p, seed)


def plot_entry_counts(matches: np.ndarray, kept: np.ndarray, t: int,
                      out_dir: Path) -> list[Path]:
    """Log-log plots of per-entry counts before/after balancing; returns the PNG paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    out_dir.mkdir(parents=True, exist_ok=True)
    series = (("matched", matches[matches > 0]), ("kept", kept[kept > 0]))
    return [_rank_plot(series, t, out_dir / "entry_counts_rank.png"),
            _hist_plot(series, out_dir / "entry_counts_hist.png")]


def _rank_plot(series: tuple[tuple[str, np.ndarray], ...], t: int, path: Path) -> Path:
    """Pairs per entry against the entry's rank (Zipf plot), with the cap t."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in series:
        ordered = np.sort(values)[::-1]
        ax.loglog(np.arange(1, len(ordered) + 1), ordered, label=label)
    ax.axhline(t, color="grey", linestyle="--", label=f"t = {t:,}")
    ax.set(xlabel="entry rank", ylabel="pairs per entry", title="Pairs per query entry")
    ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _hist_plot(series: tuple[tuple[str, np.ndarray], ...], path: Path) -> Path:
    """How many entries have each count (log-spaced bins)."""
    import matplotlib.pyplot as plt

    top = max(2, *(int(v.max(initial=1)) for _, v in series))
    bins = np.unique(np.logspace(0, np.log10(top + 1), 40).astype(int))
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in series:
        ax.hist(values, bins=bins, histtype="step", label=label)
    ax.set(xscale="log", yscale="log", xlabel="pairs per entry", ylabel="entries",
           title="Distribution of per-entry counts")
    ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


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


def balance_df(df: DataFrame, p: np.ndarray, seed: int) -> DataFrame:
    """Pass 2: the kept rows of `df` with ``keep_prob``."""
    bc = df.sparkSession.sparkContext.broadcast(p)
    body = functools.partial(balance_partition, p_of=bc, seed=seed)
    return df.mapInArrow(body, schema_plus(df, KEEP_PROB))


def entry_counts_table(entries: list[str], matches: np.ndarray, kept: np.ndarray) -> pa.Table:
    """``entry_counts.parquet`` rows: entries with at least one match."""
    ids = np.flatnonzero(matches)
    return pa.table({
        "entry_id": pa.array(ids, pa.int32()),
        "entry": pa.array([entries[i] for i in ids], pa.string()),
        "matches": pa.array(matches[ids], pa.int64()),
        "kept": pa.array(kept[ids], pa.int64()),
    })


@dataclass(frozen=True)
class Balanced:
    """What `balance_into` did: the t used and the pair and entry counts."""

    t: int
    seed: int
    pairs_in: int
    pairs_kept: int
    entries_matched: int
    head_entries: int

    @property
    def sampled_out(self) -> int:
        return self.pairs_in - self.pairs_kept


def balance_into(out_dir: Path, matched: DataFrame, entries: list[str], t: int,
                 tail_fraction: float | None, seed: int) -> Balanced:
    """Balance `matched` into `out_dir`: pairs, entry counts and plots.

    `t` is used as given unless `tail_fraction` is set (see `t_for_tail_fraction`).
    """
    matches = entry_match_counts(matched, len(entries))
    if tail_fraction is not None:
        t = t_for_tail_fraction(matches, tail_fraction)
    kept_rows = write_pairs(balance_df(matched, entry_probabilities(matches, t), seed),
                            out_dir)
    written = matched.sparkSession.read.parquet(str(out_dir / PAIRS_FILE))
    kept = entry_match_counts(written, len(entries))
    pq.write_table(entry_counts_table(entries, matches, kept), out_dir / ENTRY_COUNTS_FILE)
    plot_entry_counts(matches, kept, t, out_dir / PLOTS_DIR)
    result = Balanced(t=t, seed=seed, pairs_in=matched.count(),
                      pairs_kept=kept_rows, entries_matched=int((matches > 0).sum()),
                      head_entries=int((matches > t).sum()))
    log.info("balanced with t=%s: %s of %s pairs kept", t, kept_rows, result.pairs_in)
    return result


def read_entry_counts(directory: Path) -> pa.Table:
    """``entry_counts.parquet`` of a balance or curate output."""
    return pq.read_table(directory / ENTRY_COUNTS_FILE)
