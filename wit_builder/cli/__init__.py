"""`wit`: one subcommand per stage of the roster (`stages.ROSTER`), generated from the
stages' config classes (`options`), plus `wit pipeline`, `wit demo` and `wit show`.

Errors in input, config or existing outputs print one line and exit with status 2;
operating-system errors one line and 1; Ctrl-C one line and 130. What a person is shown
after a stage is in `show`.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler

from wit_builder import __version__, stages
from wit_builder.cli.options import stage_command
from wit_builder.errors import WitError
from wit_builder.spark import SHOW_LOGS_ENV, active_spark, stop_quietly
from wit_builder.terminal import safe, visible

app = typer.Typer(
    help="WIT builder: build CLIP's WIT dataset (query list → curation → shards → CLIP).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


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


def fail(message: str, code: int, spark_before: Any = None) -> None:
    """Print `message` as the one error line and exit with `code`.

    A Spark session the command started is stopped first, quietly: its shutdown would
    otherwise log warnings after the error line.
    """
    context = active_spark()
    if context is not None and context is not spark_before \
            and "PYSPARK_GATEWAY_PORT" not in os.environ:  # spark-submit stops its own
        stop_quietly(context)
    console.print(f"[bold red]error:[/] {safe(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def announce(stage: str, result: Any) -> None:
    """After each stage (alone or in a pipeline): what `show.announce` prints."""
    from wit_builder.show import announce as show_result

    show_result(result, console)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging, and "
                                          "Spark's own log on the terminal (otherwise in "
                                          "a file: WIT_LOG_DIR)")] = False,
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
    handler.addFilter(visible_record)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[handler])
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.getLogger("faiss").setLevel(logging.DEBUG if verbose else logging.WARNING)
    if verbose:  # the Spark JVM's own lines reach the terminal too
        os.environ[SHOW_LOGS_ENV] = "1"


def visible_record(record: logging.LogRecord) -> bool:
    """Log lines carry paths and URLs: their control characters are shown as escapes
    (the handler prints without markup)."""
    record.msg, record.args = visible(record.getMessage()), None
    return True


def _runner(stage: stages.Stage) -> Callable[[Any], None]:
    def run(cfg: Any) -> None:
        announce(stage.name, stage.job_module().run(cfg))
    return run


def register_stages() -> None:
    """One command per roster stage; a stage that others are grouped under is its
    group's own action (`wit overlap`, `wit overlap report`)."""
    groups = {s.group: typer.Typer(no_args_is_help=False, pretty_exceptions_show_locals=False)
              for s in stages.ROSTER if s.group}
    for stage in stages.ROSTER:
        on = groups.get(stage.group or stage.name, app)
        stage_command(stage.name, stage.config_class(), stage.help, _runner(stage), on,
                      handle_errors, group_action=stage.name in groups)
    for name, group in groups.items():
        app.add_typer(group, name=name)


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

    line.run(config, out, stage_overrides(set_), announce=announce)


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

    _, lines = demo_run.run(config, out, stage_overrides(set_), announce=announce)
    console.rule("demo summary")
    for line in lines:
        console.print(safe(line), highlight=False)


@app.command()
@handle_errors
def show(
    out_dir: Annotated[Path, typer.Argument(help="a stage output directory")],
    rows: Annotated[int, typer.Option(help="preview rows per group")] = 5,
) -> None:
    """Summarize a finished stage output (stats, drops, notices, preview)."""
    from wit_builder.show import show as show_output

    show_output(out_dir, rows)


register_stages()


def run_job(stage: str) -> None:
    """Entry point of `jobs/<stage>.py` under spark-submit: `wit <stage>` with the
    script's arguments (the master comes from spark-submit)."""
    app([stage, *sys.argv[1:]], prog_name=f"{stage}.py")


if __name__ == "__main__":
    app()
