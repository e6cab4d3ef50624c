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



WarcOpt = Annotated[list[str] | None, typer.Option(
    "--warc", help="WARC/WAT files (path, glob or URI; repeatable)")]
ManifestOpt = Annotated[str | None, typer.Option(
    "--manifest", help="file listing one WARC/WAT path or URI a line (.gz ok)")]
LidOpt = Annotated[str | None, typer.Option(
    "--lid-model", help="fastText LID model (default: bundled lid.176.ftz)")]
LangOpt = Annotated[str | None, typer.Option(
    "--lang", help="language to keep, 'none' = all (default: en)")]
ScoreOpt = Annotated[float | None, typer.Option(help="min language probability [0.5]")]
EntriesOpt = Annotated[Path | None, typer.Option(
    "--entries", help="query list: querylist output dir, entries.parquet or .txt")]
PairsOpt = Annotated[Path | None, typer.Option("--pairs", help="previous stage's output dir")]
TOpt = Annotated[int | None, typer.Option("--t", help="max pairs per entry [20000]")]
TailOpt = Annotated[float | None, typer.Option(
    help="choose t so entries with ≤ t matches hold this share of matches")]
SeedOpt = Annotated[int | None, typer.Option(help="seed of the sampling hash [0]")]


def _extract_flags(warc: list[str] | None, manifest: str | None, lid_model: str | None,
                   lang: str | None, min_lang_score: float | None) -> dict[str, Any]:
    return dict(warc=warc or None, manifest=manifest, lid_model=lid_model, lang=lang,
                min_lang_score=min_lang_score)


@app.command()
@handle_errors
def extract(
    warc: WarcOpt = None, manifest: ManifestOpt = None, out: OutOpt = None,
    lid_model: LidOpt = None, lang: LangOpt = None, min_lang_score: ScoreOpt = None,
    config: ConfigOpt = None, set_: SetOpt = None, master: MasterOpt = None,
    overwrite: OverwriteOpt = None,
) -> None:
    """Extract English (image URL, alt-text) pairs from WARC/WAT files."""
    from wit_builder.curate import extract_job as job

    flags = dict(_extract_flags(warc, manifest, lid_model, lang, min_lang_score),
                 out=out, master=master, overwrite=overwrite)
    report(job.run(load_config(job.ExtractConfig, job.STAGE, config, flags, set_)))


@app.command()
@handle_errors
def match(
    pairs: PairsOpt = None, entries: EntriesOpt = None, out: OutOpt = None,
    config: ConfigOpt = None, set_: SetOpt = None, master: MasterOpt = None,
    overwrite: OverwriteOpt = None,
) -> None:
    """Keep the pairs whose text contains a query entry (MetaCLIP rule)."""
    from wit_builder.curate import match_job as job

    flags = dict(pairs=pairs, entries=entries, out=out, master=master, overwrite=overwrite)
    report(job.run(load_config(job.MatchConfig, job.STAGE, config, flags, set_)))


@app.command()
@handle_errors
def balance(
    pairs: PairsOpt = None, entries: EntriesOpt = None, out: OutOpt = None,
    t: TOpt = None, tail_fraction: TailOpt = None, seed: SeedOpt = None,
    config: ConfigOpt = None, set_: SetOpt = None, master: MasterOpt = None,
    overwrite: OverwriteOpt = None,
) -> None:
    """Sub-sample matched pairs to at most ~t per entry (MetaCLIP balancing)."""
    from wit_builder.curate import balance_job as job

    flags = dict(pairs=pairs, entries=entries, out=out, t=t, tail_fraction=tail_fraction,
                 seed=seed, master=master, overwrite=overwrite)
    report(job.run(load_config(job.BalanceConfig, job.STAGE, config, flags, set_)))


@app.command()
@handle_errors
def curate(
    warc: WarcOpt = None, manifest: ManifestOpt = None, entries: EntriesOpt = None,
    out: OutOpt = None, lid_model: LidOpt = None, lang: LangOpt = None,
    min_lang_score: ScoreOpt = None, t: TOpt = None, tail_fraction: TailOpt = None,
    seed: SeedOpt = None, config: ConfigOpt = None, set_: SetOpt = None,
    master: MasterOpt = None, overwrite: OverwriteOpt = None,
) -> None:
    """Extract → match → balance in one Spark job."""
    from wit_builder.curate import curate_job as job

    flags = dict(_extract_flags(warc, manifest, lid_model, lang, min_lang_score),
                 entries=entries, out=out, t=t, tail_fraction=tail_fraction, seed=seed,
                 master=master, overwrite=overwrite)
    report(job.run(load_config(job.CurateConfig, job.STAGE, config, flags, set_)))


@app.command()
@handle_errors
def train(
    shards: Annotated[str | None, typer.Option(
        "--shards", help="webdataset shards: 'dir/{00000..00099}.tar', glob, a::b")] = None,
    out: OutOpt = None,
    model: Annotated[str | None, typer.Option(help="ViT-B-32, ViT-B-16, ViT-S-32, tiny")] = None,
    batch_size: Annotated[int | None, typer.Option(help="pairs per rank per micro-batch")] = None,
    steps: Annotated[int | None, typer.Option(help="optimizer steps")] = None,
    lr: Annotated[float | None, typer.Option(help="peak learning rate")] = None,
    resume: Annotated[str | None, typer.Option(
        help="'latest' (default), a checkpoint, or 'none'")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Train CLIP on webdataset shards (run under torchrun for several processes/GPUs)."""
    from wit_builder.clip.train import TrainConfig
    from wit_builder.clip.train import train as run_training

    flags = dict(shards=shards, out=out, model=model, batch_size=batch_size, steps=steps,
                 lr=lr, resume=None if resume == "none" else resume)
    cfg = load_config(TrainConfig, "train", config, flags, set_)
    if resume == "none":
        cfg = cfg.model_copy(update={"resume": None})
    console.print(f"[green]train[/] finished: {run_training(cfg)}")


@app.command("eval")
@handle_errors
def evaluate(
    checkpoint: Annotated[Path | None, typer.Option(
        help="a `wit train` checkpoint (or an open_clip state dict)")] = None,
    out: OutOpt = None,
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", help="digits, cifar10:DIR, cifar100:DIR, imagefolder:DIR (repeatable)")
    ] = None,
    retrieval_shards: Annotated[str | None, typer.Option(
        help="webdataset image-caption shards for retrieval R@k")] = None,
    model: Annotated[str | None, typer.Option(help="model config (default: checkpoint's)")
                     ] = None,
    templates: Annotated[Path | None, typer.Option(
        help="prompt templates file, one '{}' template per line")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Zero-shot classification, linear probe and retrieval for a CLIP checkpoint."""
    from wit_builder.clip.evaluate import EvalConfig, run_eval

    flags = dict(checkpoint=checkpoint, out=out, datasets=dataset or None,
                 retrieval_shards=retrieval_shards, model=model, templates=templates)
    cfg = load_config(EvalConfig, "eval", config, flags, set_)
    print_eval(run_eval(cfg))
    console.print(f"[green]eval[/] written: {cfg.out / 'eval.json'}")


def print_eval(results: dict) -> None:
    """One table row per set: zero-shot and linear-probe scores."""
    from rich.table import Table

    table = Table(title=f"{results['model']} — {results['checkpoint']}")
    for column in ("set", "classes", "test images", "zero-shot top1", "top5",
                   "mean per-class recall", "linear probe top1", "unreadable"):
        table.add_column(column)
    for name, r in results["datasets"].items():
        zs, probe = r["zero_shot"], r.get("linear_probe", {})
        top5 = next((v for k, v in zs.items() if k.startswith("top") and k != "top1"), None)
        cells = [zs["top1"], top5, zs["mean_per_class_recall"], probe.get("top1")]
        table.add_row(name, str(r["classes"]), str(r["test_images"]),
                      *("—" if v is None else f"{v:.3f}" for v in cells),
                      str(r["unreadable_images"]))
    console.print(table)
    if "retrieval" in results:
        recall = {k: round(v, 3) for k, v in results["retrieval"].items() if "R@" in k}
        console.print(f"retrieval over {results['retrieval']['pairs']} pairs: {recall}")


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
