"""`wit`: one subcommand per pipeline stage.

Every stage command takes `--config FILE.yaml`, repeated `--set key=value`, `--master URL`
and `--overwrite`; its own flags mirror the fields of the stage's config class (see
`wit_builder.config` for precedence). Errors in input, config or existing outputs print
one line and exit with status 2.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler

from wit_builder import __version__
from wit_builder.config import load_config
from wit_builder.errors import WitError
from wit_builder.outputs import StageResult

app = typer.Typer(
    help="WIT builder: build CLIP's WIT dataset (query list → curation → shards → CLIP).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML config file")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override: key=value")]
MasterOpt = Annotated[str | None, typer.Option("--master", help="Spark master URL")]
OverwriteOpt = Annotated[bool | None, typer.Option(
    "--overwrite/--no-overwrite", help="replace an output built with another config")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="output directory")]


def handle_errors(func: F) -> F:
    """Print `WitError`s as one line and exit 2, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except WitError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def report(result: StageResult) -> None:
    """One summary line for a finished or skipped stage."""
    stats = result.marker.get("stats", {})
    verb = "done" if result.status == "ran" else "already complete (skipped)"
    console.print(f"[green]{result.marker.get('stage')}[/] {verb}: {result.out_dir} "
                  f"(rows in {stats.get('rows_in', 0):,}, out {stats.get('rows_out', 0):,})")


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
    version: Annotated[bool, typer.Option("--version", help="print the version")] = False,
) -> None:
    """Set up logging for all subcommands."""
    if version:
        console.print(f"wit-builder {__version__}")
        raise typer.Exit()
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])
    logging.getLogger("py4j").setLevel(logging.WARNING)


@app.command()
@handle_errors
def querylist(
    wiki_dump: Annotated[list[str] | None, typer.Option(
        "--wiki-dump", help="pages-articles XML dump (.bz2 or plain; path or glob)")] = None,
    pageviews: Annotated[list[str] | None, typer.Option(
        "--pageviews", help="hourly pageview files (glob)")] = None,
    wordnet: Annotated[str | None, typer.Option(
        "--wordnet", help="WordNet 3.0 dict dir, or 'none'")] = None,
    out: OutOpt = None,
    min_count: Annotated[int | None, typer.Option(help="unigram min count [100]")] = None,
    min_pmi: Annotated[float | None, typer.Option(help="bigram min PMI, log2 [30]")] = None,
    min_bigram_count: Annotated[int | None, typer.Option(help="bigram min count [3]")] = None,
    min_views: Annotated[int | None, typer.Option(help="title min summed views [70]")] = None,
    min_hourly_views: Annotated[int | None, typer.Option(
        help="hourly pageview row floor [50]")] = None,
    max_entries: Annotated[int | None, typer.Option(help="list size cap [500000]")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    master: MasterOpt = None,
    overwrite: OverwriteOpt = None,
) -> None:
    """Derive the query list from a Wikipedia dump, WordNet and pageviews."""
    from wit_builder.querylist import job

    flags = dict(wiki_dump=wiki_dump or None, pageviews=pageviews or None, wordnet=wordnet,
                 out=out, min_count=min_count, min_pmi=min_pmi,
                 min_bigram_count=min_bigram_count, min_views=min_views,
                 min_hourly_views=min_hourly_views, max_entries=max_entries,
                 master=master, overwrite=overwrite)
    cfg = load_config(job.QueryListConfig, job.STAGE, config, flags, set_)
    report(job.run(cfg))




@app.command()
@handle_errors
def show(
    out_dir: Annotated[Path, typer.Argument(help="a stage output directory")],
    rows: Annotated[int, typer.Option(help="preview rows per group")] = 5,
) -> None:
    """Summarize a finished stage output (stats, drops, preview)."""
    from wit_builder.show import show as show_output

    show_output(out_dir, rows)


if __name__ == "__main__":
    app()
