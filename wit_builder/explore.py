"""Reading a run's outputs as pandas tables and plots, for the notebooks in `notebooks/`.

Every function takes a stage output directory (as `wit show` does) and returns a
DataFrame or draws on a matplotlib axis; none recomputes what a stage decided, they only
read what it wrote (markers, stats, parquet files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from wit_builder import outputs, peek
from wit_builder.curate.balance import ENTRY_COUNTS_FILE, read_entry_counts
from wit_builder.curate.pairs import pairs_dataset
from wit_builder.errors import InputError
from wit_builder.outputs import read_marker
from wit_builder.overlap import gallery, matches
from wit_builder.overlap.report import read_report
from wit_builder.querylist.entries import load_entry_table


def finished(out_dir: Path | str, stage: str) -> Path:
    """`out_dir` if it is a finished output of `stage`; `InputError` otherwise."""
    outputs.finished(out_dir, stage)
    return Path(out_dir)


def stats(out_dir: Path | str) -> dict[str, Any]:
    """The stage's `stats.json` (rows in/out, drops, notices, extra figures)."""
    return outputs.read_stats(out_dir)


def drops(out_dir: Path | str) -> pd.DataFrame:
    """Drops by reason, largest first, with their share of the rows in."""
    s = stats(out_dir)
    table = pd.DataFrame(sorted(s["drops"].items(), key=lambda kv: -kv[1]),
                         columns=["reason", "rows"])
    table["share"] = table["rows"] / max(1, s["rows_in"])
    return table


def entries(querylist_dir: Path | str) -> pd.DataFrame:
    """The query list (entry_id, entry, source, count, score)."""
    return load_entry_table(finished(querylist_dir, "querylist")).to_pandas()


def entries_by_source(querylist_dir: Path | str) -> pd.DataFrame:
    """How many entries each source contributed."""
    counts = entries(querylist_dir)["source"].value_counts()
    return counts.rename_axis("source").reset_index(name="entries")


def entry_counts(curate_dir: Path | str) -> pd.DataFrame:
    """Per matched entry: pairs matched before balancing and kept after."""
    if not (Path(curate_dir) / ENTRY_COUNTS_FILE).is_file():
        raise InputError(f"{curate_dir} holds no {ENTRY_COUNTS_FILE} (a balance or "
                         "curate output has one)")
    return read_entry_counts(Path(curate_dir)).to_pandas()


def plot_balancing(curate_dir: Path | str, ax: Any) -> None:
    """Entry frequency before and after balancing, ranked, on log-log axes."""
    counts = entry_counts(curate_dir)
    for column, label in (("matches", "matched"), ("kept", "kept after balancing")):
        ranked = counts[column].sort_values(ascending=False).to_numpy()
        ax.loglog(range(1, len(ranked) + 1), ranked.clip(min=0.8), label=label)
    t = read_marker(Path(curate_dir))["config"].get("t")
    if t:
        ax.axhline(t, color="grey", linestyle=":", label=f"t = {t}")
    ax.set(xlabel="entry rank", ylabel="pairs", title="Entry frequency")
    ax.legend()


def sample_pairs(curate_dir: Path | str, n: int = 10, seed: int = 0) -> pd.DataFrame:
    """`n` pairs (text, url, matched entries) sampled with a fixed seed, reading only
    the row groups that hold them."""
    path = pairs_dataset(Path(curate_dir))
    names = peek.schema(path).names
    columns = [c for c in ("text", "url", "entry_ids", "keep_prob") if c in names]
    return peek.sample(path, columns, n, seed).to_pandas()


def overlap_sets(overlap_dir: Path | str) -> pd.DataFrame:
    """Per eval set: eval images, unreadable, pool scanned, matches."""
    data = matches.read_eval_sets(finished(overlap_dir, "overlap"))
    return pd.DataFrame.from_dict(data, orient="index").rename_axis("eval_set").reset_index()


def overlap_matches(overlap_dir: Path | str, n: int = 1000) -> pd.DataFrame:
    """The `n` strongest matches (overlap.parquet), strongest first (streamed: a pool
    can hold millions of copies)."""
    path = finished(overlap_dir, "overlap")
    method = matches.recorded_method(matches.overlap_run(path))
    best = gallery.strongest(method, matches.iter_rows(path), n)
    schema = pa.schema([matches.ROW_SCHEMA.field(c) for c in matches.MATCH_COLUMNS])
    return pa.Table.from_pylist(best, schema=schema).to_pandas()


def report_table(report_dir: Path | str) -> pd.DataFrame:
    """CLIP §5's table of a `wit overlap report` output."""
    return pd.DataFrame(read_report(finished(report_dir, "report"))["sets"])


def plot_gallery(overlap_dir: Path | str, count: int = 6) -> Any:
    """The `count` strongest matches side by side (eval image above, pool image below)
    as a matplotlib figure."""
    import matplotlib.pyplot as plt

    path = finished(overlap_dir, "overlap")
    run = matches.overlap_run(path)
    best = gallery.strongest(matches.recorded_method(run), matches.iter_rows(path), count)
    pairs = gallery.pair_images(run, best)
    fig, axes = plt.subplots(2, max(1, len(pairs)), figsize=(2 * max(1, len(pairs)), 4),
                             squeeze=False)
    for column, (m, eval_image, pool, _) in enumerate(pairs):
        for row, image in enumerate((eval_image, pool)):
            axes[row][column].imshow(image.convert("RGB") if image else [[0]], cmap="gray")
            axes[row][column].axis("off")
        axes[0][column].set_title(f"{m['eval_id']}\nscore {m['score']:.3g}", fontsize=8)
    return fig
