"""`wit`: one subcommand per pipeline stage, generated from the stages' config classes.

A stage command's options are its config class's fields (`stage_command`): the option
name is the field name with dashes, the help is the field's description, and the shown
default is the field's default, so none of them is written twice. Every stage command
also takes `--config FILE.yaml` (a section per stage) and repeated `--set key=value` (see
`wit_builder.config` for precedence). Errors in input, config or existing outputs print
one line and exit with status 2; Ctrl-C prints one line and exits with 130.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
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
# Options every stage command has besides its config fields.
COMMON = ("config", "set_")
RUN_PANEL = "Run options"
RUN_FIELDS = ("out", "overwrite", "master")


def handle_errors(func: F) -> F:
    """Print user errors as one line (exit 2), Ctrl-C as one line (exit 130), and
    operating-system errors (a read-only directory, a full disk) as one line (exit 1)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = active_spark()
        try:
            return func(*args, **kwargs)
        except WitError as e:
            fail(str(e), 2, before)
        except KeyboardInterrupt:
            fail("interrupted; finished outputs are kept and a rerun resumes", 130, before)
        except OSError as e:
            where = f": {e.filename}" if getattr(e, "filename", None) else ""
            fail(f"{e.strerror or e}{where}", 1, before)

    return wrapper  # type: ignore[return-value]


def active_spark() -> Any:
    """This process's SparkContext, if pyspark is loaded and one is up (else None).

    Not `SparkSession.getActiveSession()`: that asks the JVM, whose answer is per JVM
    thread, and after a Ctrl-C py4j talks to the JVM through a new thread.
    """
    if "pyspark" not in sys.modules:
        return None
    from pyspark import SparkContext

    return SparkContext._active_spark_context


def fail(message: str, code: int, spark_before: Any = None) -> None:
    """Print `message` as the one error line and exit with `code`.

    A Spark session the command started is stopped first, quietly: its shutdown would
    otherwise log warnings after the error line.
    """
    context = active_spark()
    if context is not None and context is not spark_before \
            and "PYSPARK_GATEWAY_PORT" not in os.environ:  # spark-submit stops its own
        stop_quietly(context)
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def stop_quietly(context: Any) -> None:
    """Stop a SparkContext with its logging off (we are exiting: the error line is last)."""
    try:
        context.setLogLevel("OFF")
        context.stop()
    except Exception:  # a JVM already gone (Ctrl-C reached it too) has nothing to stop
        pass


def report(result: StageResult) -> None:
    """One summary line for a finished or skipped stage, with where its output is."""
    stats = result.marker.get("stats", {})
    verb = "done" if result.status == "ran" else "already complete (skipped)"
    console.print(f"[green]{result.marker.get('stage')}[/] {verb}: {result.out_dir} "
                  f"(rows in {stats.get('rows_in', 0):,}, out {stats.get('rows_out', 0):,})")
    if result.status == "skipped":
        for line in stats.get("notices", []):
            console.print(f"[yellow]note:[/] {line}", highlight=False)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
    version: Annotated[bool, typer.Option("--version", help="print the version")] = False,
) -> None:
    """Set up logging for all subcommands."""
    if version:
        console.print(f"wit-builder {__version__}")
        raise typer.Exit()
    handler = RichHandler(console=console, show_path=False)
    # py4j logs its own view of a failed or interrupted call through the root logger
    # (a Ctrl-C mid-job prints four tracebacks); the failure itself reaches us as an
    # exception, so those records are dropped.
    handler.addFilter(lambda record: f"{os.sep}py4j{os.sep}" not in record.pathname)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[handler])
    logging.getLogger("py4j").setLevel(logging.WARNING)


# ---- options from config fields -------------------------------------------------------

def _strip_optional(tp: Any) -> Any:
    """`X | None` → X; other types unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def option_type(annotation: Any) -> Any | None:
    """The click-side type of a config field, or None for fields only `--set` can set
    (mappings). Literals become strings: pydantic checks the choice and names the key."""
    tp = _strip_optional(annotation)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return str
    if origin is list:
        (item,) = typing.get_args(tp) or (str,)
        return list[item if item in (int, float, Path) else str]
    if origin is not None or tp not in (str, int, float, bool, Path):
        return None
    return tp


def _default_text(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        return "required" if field.default_factory is None else ""
    if field.default is None:
        return ""
    value = field.default
    return f"default: {', '.join(map(str, value)) if isinstance(value, list) else value}"


def option_help(field: FieldInfo, annotation: Any) -> str:
    """The field's description, its choices (Literal fields) and its default."""
    parts = [field.description or ""]
    tp = _strip_optional(annotation)
    if typing.get_origin(tp) is list:
        tp = typing.get_args(tp)[0]
        parts.append("repeatable")
    if typing.get_origin(tp) is Literal:
        parts.append("one of " + ", ".join(map(str, typing.get_args(tp))))
    parts.append(_default_text(field))
    return "; ".join(p for p in parts if p)


def field_parameter(name: str, field: FieldInfo) -> inspect.Parameter | None:
    """The typer option of one config field (None if it is set through `--set` only)."""
    tp = option_type(field.annotation)
    if tp is None:
        return None
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    flag = str(extra.get("flag") or "--" + name.replace("_", "-"))
    decls = [f"{flag}/--no-{flag[2:]}"] if tp is bool else [flag]
    option = typer.Option(None, *decls, help=option_help(field, field.annotation),
                          show_default=False,
                          rich_help_panel=RUN_PANEL if name in RUN_FIELDS else None)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=tp | None)


def common_parameters() -> list[inspect.Parameter]:
    """`--config` and `--set`, which every stage command has."""
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("config", kw, annotation=Path | None, default=typer.Option(
            None, "--config", help="YAML config file (one section per stage)",
            rich_help_panel=RUN_PANEL)),
        inspect.Parameter("set_", kw, annotation=list[str] | None, default=typer.Option(
            None, "--set", help="override any config key: key=value (repeatable)",
            rich_help_panel=RUN_PANEL)),
    ]


def stage_command(name: str, config_cls: type[BaseModel], help_text: str,
                  run: Callable[[Any], None], on: typer.Typer | None = None,
                  group_action: bool = False) -> None:
    """Register `wit <name>` on `on` (default: the top `app`): options from
    `config_cls`'s fields, then `run(config)`.

    With `group_action`, the command is the group `on`'s own action, run when no
    sub-command is given (`wit overlap` vs `wit overlap report`).
    """
    on = on or app
    params = [p for n, f in config_cls.model_fields.items()
              if (p := field_parameter(n, f)) is not None]
    params += common_parameters()
    if group_action:
        params.insert(0, inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                           annotation=typer.Context))

    def command(**kwargs: Any) -> None:
        ctx = kwargs.pop("ctx", None)
        if ctx is not None and ctx.invoked_subcommand is not None:
            return
        sets, config_file = kwargs.pop("set_"), kwargs.pop("config")
        run(load_config(config_cls, name, config_file, kwargs, sets))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = help_text
    command.__name__ = name
    if group_action:
        on.callback(invoke_without_command=True, help=help_text)(handle_errors(command))
    else:
        on.command(name, help=help_text)(handle_errors(command))


# ---- the stages -----------------------------------------------------------------------

# name → (config class, job module, help). Each job module has run(cfg) -> StageResult.
# Config classes are imported when the CLI starts (cheap: pydantic only); job modules,
# which import Spark and pyarrow machinery, only when their command runs.
SPARK_STAGES = {
    "querylist": ("wit_builder.querylist.configs:QueryListConfig",
                  "wit_builder.querylist.querylist_job",
                  "Derive the query list from a Wikipedia dump, WordNet and pageviews."),
    "extract": ("wit_builder.curate.configs:ExtractConfig", "wit_builder.curate.extract_job",
                "Extract English (image URL, alt-text) pairs from WARC/WAT files."),
    "match": ("wit_builder.curate.configs:MatchConfig", "wit_builder.curate.match_job",
              "Keep the pairs whose text contains a query entry (MetaCLIP rule)."),
    "balance": ("wit_builder.curate.configs:BalanceConfig", "wit_builder.curate.balance_job",
                "Sub-sample matched pairs to at most ~t per entry (MetaCLIP balancing)."),
    "curate": ("wit_builder.curate.configs:CurateConfig", "wit_builder.curate.curate_job",
               "Extract → match → balance in one Spark job."),
    "download": ("wit_builder.images.configs:DownloadConfig",
                 "wit_builder.images.download_job",
                 "Download the pairs' images into webdataset shards (img2dataset)."),
    "shards": ("wit_builder.images.configs:ShardsConfig", "wit_builder.images.shards_job",
               "Remove exact and near-duplicate images; write the final shards."),
    "overlap": ("wit_builder.overlap.configs:OverlapConfig", "wit_builder.overlap.overlap_job",
                "Find pool images that copy evaluation images; write the pool without them."),
}


def _job_runner(module: str) -> Callable[[Any], None]:
    def run(cfg: Any) -> None:
        report(importlib.import_module(module).run(cfg))
    return run


def _register_spark_stages() -> None:
    for name, (config_path, module, help_text) in SPARK_STAGES.items():
        config_module, config_class = config_path.split(":")
        config_cls = getattr(importlib.import_module(config_module), config_class)
        if name in GROUPS:
            group = typer.Typer(no_args_is_help=False, pretty_exceptions_show_locals=False)
            stage_command(name, config_cls, help_text, _job_runner(module), on=group,
                          group_action=True)
            GROUPS[name](group)
            app.add_typer(group, name=name)
        else:
            stage_command(name, config_cls, help_text, _job_runner(module))


def _overlap_commands(group: typer.Typer) -> None:
    """`wit overlap report`, `train-detector` and `calibrate`."""
    from wit_builder.overlap.configs import CalibrateConfig, DetectorConfig, ReportConfig

    def run_report(cfg: Any) -> None:
        from wit_builder.overlap import report_job

        result = report_job.run(cfg)
        report(result)
        console.print(f"report: {result.out_dir / 'report.html'} (and report.md, "
                      "report.json)")

    stage_command("report", ReportConfig, "The CLIP §5 overlap table and galleries of a "
                  "`wit overlap` output.", run_report, on=group)
    stage_command("train-detector", DetectorConfig, "Train the copy detector (CLIP App. C: "
                  "ResNet, InfoNCE over augmented copies) on pool images.",
                  _job_runner("wit_builder.overlap.train_detector_job"), on=group)
    stage_command("calibrate", CalibrateConfig, "Plant transformed copies of eval images "
                  "in a pool sample; precision and recall per transformation and threshold.",
                  _job_runner("wit_builder.overlap.calibrate_job"), on=group)


# Stages with sub-commands: name → function adding them to the stage's group.
GROUPS: dict[str, Callable[[typer.Typer], None]] = {"overlap": _overlap_commands}


def _run_train(cfg: Any) -> None:
    from wit_builder.clip import train_job

    console.print(f"[green]train[/] finished: {train_job.run(cfg)}")


def _run_eval(cfg: Any) -> None:
    from wit_builder.clip import eval_job

    result = eval_job.run(cfg)
    print_eval(eval_job.read_results(result.out_dir))
    report(result)


def _register_torch_stages() -> None:
    from wit_builder.clip.configs import EvalConfig, TrainConfig

    stage_command("train", TrainConfig, "Train CLIP on webdataset shards (run under "
                  "torchrun for several processes/GPUs).", _run_train)
    stage_command("eval", EvalConfig, "Zero-shot classification, linear probe and "
                  "retrieval for a CLIP checkpoint.", _run_eval)


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


def _announce(stage: str, result: Any) -> None:
    """After each pipeline stage: its summary line."""
    if isinstance(result, StageResult):
        report(result)
    elif result is not None:
        console.print(f"[green]{stage}[/] finished: {result}")


@app.command()
@handle_errors
def pipeline(
    config: Annotated[Path, typer.Option("--config", help="YAML file: a section per stage "
                                         "to run, in pipeline order")],
    out: Annotated[Path | None, typer.Option(help="root of the stage outputs (default: "
                                             "the file's `out`)")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="override a stage's key: stage.key=value (repeatable)")] = None,
) -> None:
    """Run every stage that has a section in the config file, each fed by the previous
    ones and skipped when its output is complete (a rerun resumes)."""
    from wit_builder import pipeline as line

    line.run(config, out, stage_overrides(set_), announce=_announce)


def stage_overrides(items: list[str] | None) -> dict[str, dict]:
    """``stage.key=value`` strings as {stage: {key: value}}."""
    from wit_builder.config import parse_set
    from wit_builder.errors import ConfigError

    parsed = parse_set(items or [])
    flat = [k for k, v in parsed.items() if not isinstance(v, dict)]
    if flat:
        raise ConfigError(f"--set {flat[0]}=...: name the stage, e.g. --set download.threads=8")
    return parsed


@app.command()
@handle_errors
def demo(
    config: Annotated[Path, typer.Option("--config", help="pipeline YAML (with a `demo` "
                                         "section: port)")] = Path("configs/demo.yaml"),
    out: Annotated[Path, typer.Option(help="where every stage writes")] = Path("demo_out"),
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="override a stage's key: stage.key=value (repeatable)")] = None,
) -> None:
    """The whole line offline: a small web served on 127.0.0.1 → curate → download →
    shards → overlap → train → eval → report."""
    from wit_builder.demo import run as demo_run

    _, lines = demo_run.run(config, out, stage_overrides(set_), announce=_announce)
    console.rule("demo summary")
    for line in lines:
        console.print(line, highlight=False)


@app.command()
@handle_errors
def show(
    out_dir: Annotated[Path, typer.Argument(help="a stage output directory")],
    rows: Annotated[int, typer.Option(help="preview rows per group")] = 5,
) -> None:
    """Summarize a finished stage output (stats, drops, notices, preview)."""
    from wit_builder.show import show as show_output

    show_output(out_dir, rows)


_register_spark_stages()
_register_torch_stages()


def run_job(stage: str) -> None:
    """Entry point of `jobs/<stage>.py` under spark-submit: `wit <stage>` with the
    script's arguments (the master comes from spark-submit)."""
    app([stage, *sys.argv[1:]], prog_name=f"{stage}.py")


if __name__ == "__main__":
    app()
