"""Everything a person is shown about an output, during a run and afterwards: the line
after each stage (`announce`, with the eval table and where a report is) and `wit show
DIR` (stats, drops, notices and a preview of the output's tables)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from wit_builder import peek
from wit_builder.clip.results import read_results
from wit_builder.clip.rundir import last_checkpoint
from wit_builder.curate.pairs import PAIRS_FILE
from wit_builder.errors import InputError
from wit_builder.images.dedup import DUPLICATES_FILE
from wit_builder.images.failures import FAILURES_FILE
from wit_builder.images.manifest import MANIFEST_FILE
from wit_builder.outputs import StageResult, read_marker
from wit_builder.overlap.report import HTML_FILE
from wit_builder.querylist.entries import ENTRIES_FILE
from wit_builder.terminal import safe


def entries_table(path: Path, per_source: int) -> Table:
    """The first `per_source` entries of each source of an `entries.parquet`."""
    table = pq.read_table(path)
    view = Table(title=f"{safe(path)} ({table.num_rows:,} entries)")
    for col in ("entry_id", "entry", "source", "count", "score"):
        view.add_column(col)
    for source in pc.unique(table["source"]).to_pylist():
        rows = table.filter(pc.equal(table["source"], source)).slice(0, per_source)
        for row in rows.to_pylist():
            score = "" if row["score"] is None else f"{row['score']:.2f}"
            count = "" if row["count"] is None else f"{row['count']:,}"
            view.add_row(str(row["entry_id"]), safe(row["entry"]), safe(source), count, score)
    return view


PAIR_PREVIEW = ("text", "url", "lang", "entry_ids", "keep_prob")
# Stage 4 outputs previewed by `show`: (file, columns).
IMAGE_TABLES = ((FAILURES_FILE, ("reason", "http_status", "url", "error_message")),
                (MANIFEST_FILE, ("shard", "key", "width", "height", "text", "url")),
                (DUPLICATES_FILE, ("uid", "kept_uid", "distance", "kind")))


def pairs_table(path: Path, rows: int) -> Table:
    """The first `rows` pairs of a ``pairs.parquet`` dataset (the columns it has)."""
    columns = [c for c in PAIR_PREVIEW if c in peek.schema(path).names]
    first, total = peek.head(path, columns, rows)
    view = Table(title=f"{safe(path)} ({total:,} pairs)")
    for col in columns:
        view.add_column(col, overflow="fold", max_width=60 if col in ("text", "url") else 20)
    for row in first.to_pylist():
        view.add_row(*(_cell(row[c]) for c in columns))
    return view


def rows_table(path: Path, columns: tuple[str, ...], rows: int) -> Table:
    """The first `rows` rows of a Parquet file or dataset, in `columns`."""
    first, total = peek.head(path, list(columns), rows)
    view = Table(title=f"{safe(path)} ({total:,} rows)")
    for col in columns:
        view.add_column(col, overflow="fold", max_width=50)
    for row in first.to_pylist():
        view.add_row(*(_cell(row[c]) for c in columns))
    return view


def _cell(value: object) -> str:
    """A table cell: floats to 3 decimals, web text made safe for the terminal."""
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else safe(value)


def show(out_dir: Path, per_source: int = 5, console: Console | None = None) -> None:
    """Print the `_SUCCESS` summary of `out_dir` and a preview of its main table."""
    console = console or Console()
    marker = read_marker(out_dir)
    if marker is None:
        raise InputError(f"{out_dir} has no _SUCCESS marker: not a finished wit output")
    stats = marker.get("stats") if isinstance(marker.get("stats"), dict) else {}
    console.print(f"[bold]{safe(marker.get('stage'))}[/] {safe(out_dir)} config "
                  f"{safe(marker.get('config_hash'))} finished "
                  f"{safe(marker.get('finished_at'))}: rows in {stats.get('rows_in', 0):,}, "
                  f"out {stats.get('rows_out', 0):,}")
    for reason, n in stats.get("drops", {}).items():
        console.print(f"  dropped {n:,} × {safe(reason)}")
    for line in stats.get("notices", []):
        console.print(f"  [yellow]note:[/] {safe(line)}", highlight=False, soft_wrap=True)
    if (out_dir / ENTRIES_FILE).is_file():
        console.print(readable(entries_table, out_dir / ENTRIES_FILE, per_source))
    if (out_dir / PAIRS_FILE).exists():
        console.print(readable(pairs_table, out_dir / PAIRS_FILE, per_source))
    for name, columns in IMAGE_TABLES:
        if (out_dir / name).exists():
            console.print(readable(rows_table, out_dir / name, columns, per_source))


def readable(make: Any, path: Path, *args: Any) -> Table:
    """`make(path, *args)`; `InputError` (one line) if the file is not readable Parquet
    with the columns shown (damaged or replaced after the stage wrote it)."""
    try:
        return make(path, *args)
    except (pa.ArrowException, OSError, KeyError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise InputError(f"{path} is not a readable table of this output: {first}") from None


def announce(result: StageResult, console: Console) -> None:
    """What a person sees after a stage ran or skipped: one summary line with where the
    output is, the notices of a skipped stage, and the stage's own results (the eval
    table, the report's page, the last checkpoint)."""
    stage = result.marker.get("stage")
    if stage == "eval":
        print_eval(read_results(result.out_dir), console)
    stats = result.marker.get("stats", {})
    verb = "done" if result.status == "ran" else "already complete (skipped)"
    console.print(f"[green]{safe(stage)}[/] {verb}: {safe(result.out_dir)} "
                  f"(rows in {stats.get('rows_in', 0):,}, out {stats.get('rows_out', 0):,})")
    if result.status == "skipped":
        for line in stats.get("notices", []):
            console.print(f"[yellow]note:[/] {safe(line)}", highlight=False)
    if stage == "report":
        console.print(f"report: {safe(result.out_dir / HTML_FILE)} (and report.md, "
                      "report.json)")
    if stage == "train":
        console.print(f"checkpoint: {safe(last_checkpoint(result.marker))}")


def print_eval(results: dict[str, Any], console: Console) -> None:
    """One table row per set: zero-shot and linear-probe scores."""
    table = Table(title=f"{safe(results['model'])} — {safe(results['checkpoint'])}")
    for column in ("set", "classes", "test images", "zero-shot top1", "top5",
                   "mean per-class recall", "linear probe top1", "unreadable"):
        table.add_column(column)
    for name, r in results["datasets"].items():
        zs, probe = r["zero_shot"], r.get("linear_probe", {})
        top5 = next((v for k, v in zs.items() if k.startswith("top") and k != "top1"), None)
        cells = [zs["top1"], top5, zs["mean_per_class_recall"], probe.get("top1")]
        table.add_row(safe(name), str(r["classes"]), str(r["test_images"]),
                      *("—" if v is None else f"{v:.3f}" for v in cells),
                      str(r["unreadable_images"]))
    console.print(table)
    if "retrieval" in results:
        recall = {k: round(v, 3) for k, v in results["retrieval"].items() if "R@" in k}
        console.print(f"retrieval over {results['retrieval']['pairs']} pairs: {recall}")
