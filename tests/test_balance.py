"""MetaCLIP balancing math, on enough synthetic matches for binomial bounds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from wit_builder.curate.balance import (
    balance_batch,
    entry_probabilities,
    keep_probabilities,
    plot_entry_counts,
    t_for_tail_fraction,
    uniform_draws,
)


def test_entry_probabilities():
    np.testing.assert_allclose(entry_probabilities(np.array([0, 5, 20, 40, 80]), 20),
                               [1, 1, 1, 0.5, 0.25])


def test_keep_probability_is_one_minus_product():
    ids = pa.array([[0, 3], [3], [3, 4], [1]], pa.list_(pa.int32()))
    p = np.array([1.0, 0.1, 1.0, 0.5, 0.25])
    np.testing.assert_allclose(keep_probabilities(ids, p),
                               [1.0, 0.5, 1 - 0.5 * 0.75, 0.1])


def test_uniform_draws_are_deterministic_uniform_and_seeded():
    uids = [f"{i:024x}" for i in range(50_000)]
    u = uniform_draws(uids, 0)
    assert ((u >= 0) & (u < 1)).all()
    np.testing.assert_array_equal(u, uniform_draws(uids, 0))
    assert not np.array_equal(u, uniform_draws(uids, 1))
    hist, _ = np.histogram(u, bins=10, range=(0, 1))
    assert (abs(hist - 5000) < 5 * np.sqrt(5000)).all()


def single_entry_batch(counts: list[int]) -> pa.RecordBatch:
    """count_e rows that match only entry e, for each e."""
    ids = np.repeat(np.arange(len(counts)), counts)
    return pa.RecordBatch.from_pydict({
        "uid": [f"{i:024x}" for i in range(len(ids))],
        "entry_ids": pa.array([[int(e)] for e in ids], pa.list_(pa.int32())),
    })


@pytest.mark.parametrize("seed", [0, 7])
def test_kept_counts_within_binomial_bounds_of_min_count_t(seed):
    t = 500
    counts = [3, 100, 499, 500, 501, 2_000, 10_000, 40_000]
    batch = single_entry_batch(counts)
    kept = balance_batch(batch, entry_probabilities(np.array(counts), t), seed)
    kept_ids = np.array([e[0] for e in kept.column("entry_ids").to_pylist()])
    per_entry = np.bincount(kept_ids, minlength=len(counts))
    for count, got in zip(counts, per_entry, strict=True):
        if count <= t:
            assert got == count  # tail entries are kept whole
        else:
            p = t / count
            sigma = np.sqrt(count * p * (1 - p))
            assert abs(got - t) <= 5 * sigma, (count, got)
    assert set(kept.column("keep_prob").to_pylist()) <= {1.0, *(t / c for c in counts)}


def test_rows_matching_several_entries():
    """Kept per entry ≈ Σ keep_prob of its rows (mean of a Poisson-binomial)."""
    rng = np.random.default_rng(3)
    n_entries, n_rows, t = 50, 60_000, 300
    zipf = 1 / np.arange(1, n_entries + 1)
    picks = rng.choice(n_entries, size=(n_rows, 3), p=zipf / zipf.sum())
    member = np.zeros((n_rows, n_entries), dtype=bool)  # member[r, e]: row r matches e
    for k in range(3):
        chosen = rng.integers(1, 4, size=n_rows) > k  # 1 to 3 picks per row
        member[np.flatnonzero(chosen | (k == 0)), picks[chosen | (k == 0), k]] = True
    batch = pa.RecordBatch.from_pydict({
        "uid": [f"{i:024x}" for i in range(n_rows)],
        "entry_ids": pa.array([np.flatnonzero(m).tolist() for m in member],
                              pa.list_(pa.int32()))})
    counts = member.sum(axis=0)
    p = entry_probabilities(counts, t)
    q = keep_probabilities(batch.column("entry_ids"), p)
    kept = balance_batch(batch, p, seed=0)
    got = np.bincount(pc.list_flatten(kept.column("entry_ids")).to_numpy(),
                      minlength=n_entries)
    mean, sd = q @ member, np.sqrt((q * (1 - q)) @ member)
    assert (abs(got - mean) <= 5 * sd + 1).all()
    assert (got >= np.minimum(counts, t) - 5 * sd - 1).all()
    assert (got[counts <= t] == counts[counts <= t]).all()
    assert 0 < kept.num_rows < n_rows


def test_t_for_tail_fraction():
    counts = np.array([0, 1, 1, 2, 6, 10])  # total 20; cumulative 1, 2, 4, 10, 20
    assert t_for_tail_fraction(counts, 0.5) == 6
    assert t_for_tail_fraction(counts, 0.1) == 1
    assert t_for_tail_fraction(counts, 0.11) == 2
    assert t_for_tail_fraction(counts, 1.0) == 10
    with pytest.raises(ValueError):
        t_for_tail_fraction(counts, 0.0)


def test_plots_are_pngs(tmp_path):
    matches = np.array([0, 1, 5, 50, 5000])
    paths = plot_entry_counts(matches, np.minimum(matches, 40), 40, tmp_path)
    assert [p.name for p in paths] == ["entry_counts_rank.png", "entry_counts_hist.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
