"""MetaCLIP class balancing: cap each query entry at about `t` pairs, keep the tail whole.

With ``count_e`` the number of pairs matching entry *e*, each entry gets the sampling
probability ``p_e = t / max(count_e, t)`` (1 for tail entries, those with at most `t`
matches). A pair matching the set of entries S is kept with probability
``1 − Π_{e∈S} (1 − p_e)``: it survives if any of its entries would keep it. So a pair
matching any tail entry is always kept, and a head entry keeps about `t` of its pairs
(a little more, from pairs also kept for other entries).

The uniform draw for a pair is a hash of (uid, seed), not a random generator: the same
input, `t` and seed select exactly the same pairs on any cluster, in any task order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KEEP_PROB = pa.field("keep_prob", pa.float64())


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
