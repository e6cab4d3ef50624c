"""Spark session handling shared by every job.

`get_spark` reuses an active session (as under `spark-submit`, or a notebook), otherwise
starts one with the requested master (default `local[*]`). Python workers run the same
interpreter as the driver (`PYSPARK_PYTHON`), so the venv's packages are on the executors
of a local or same-machine cluster; for a remote master the `wit_builder` package itself
is zipped and shipped with `addPyFile` (its third-party dependencies must be installed on
the workers, e.g. with the image in `docker/`).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from wit_builder.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from wit_builder.config import SparkStageConfig
    from wit_builder.outputs import StageResult
    from wit_builder.stats import StageStats

log = logging.getLogger(__name__)

# Settings that keep local and small-cluster runs quiet and predictable; any of them can be
# overridden through `spark_conf`.
DEFAULT_CONF = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


def local_conf(master: str) -> dict[str, str]:
    """Defaults by master. Local mode: few shuffle partitions (Spark's 200 cost seconds
    there). A cluster: shuffles start with many partitions and adaptive execution merges
    them to ~128 MB each, so a small run and a snapshot-size one both get partitions of a
    sensible size without a setting per input (Spark's fixed 200 would make 2 GB
    partitions of a 400 GB shuffle)."""
    if not master:  # spark-submit's master: its own settings decide
        return {}
    if master.startswith("local"):
        return {"spark.sql.shuffle.partitions": str(max(4, 2 * (os.cpu_count() or 1)))}
    return {"spark.sql.adaptive.enabled": "true",
            "spark.sql.adaptive.coalescePartitions.enabled": "true",
            "spark.sql.adaptive.coalescePartitions.initialPartitionNum": "2048",
            "spark.sql.adaptive.advisoryPartitionSizeInBytes": "128m",
            "spark.sql.shuffle.partitions": "2048"}


# CPython collects its youngest generation after every 700 net container allocations. A
# worker parsing wikitext allocates millions of short-lived tokens that form no cycles, so
# those collections find nothing yet cost the query-list scan 7% of its time.
WORKER_GC_THRESHOLD = 50_000


@contextlib.contextmanager
def fewer_gc_passes(threshold: int = WORKER_GC_THRESHOLD) -> Iterator[None]:
    """Run the body with the collector's first threshold raised to `threshold` (it still
    collects, 70x less often), then restore the previous thresholds."""
    previous = gc.get_threshold()
    gc.set_threshold(threshold, *previous[1:])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def active_spark() -> Any:
    """This process's SparkContext, if pyspark is loaded and one is up (else None).

    Not `SparkSession.getActiveSession()`: that asks the JVM, whose answer is per JVM
    thread, and after a Ctrl-C py4j talks to the JVM through a new thread.
    """
    if "pyspark" not in sys.modules:
        return None
    from pyspark import SparkContext

    return SparkContext._active_spark_context


def stop_quietly(context: Any) -> None:
    """Stop a SparkContext with its logging off (we are exiting: the error line is last)."""
    try:
        context.setLogLevel("OFF")
        context.stop()
    except Exception:  # a JVM already gone (Ctrl-C reached it too) has nothing to stop
        pass


# Set (by `wit --verbose`) to let the JVM's own output reach the terminal.
SHOW_LOGS_ENV = "WIT_SHOW_SPARK_LOGS"


def spark_log_file() -> Path:
    """Where this process's Spark JVM writes its own output (WIT_LOG_DIR, else a
    ``wit-builder-logs`` folder in the temp directory)."""
    folder = Path(os.environ.get("WIT_LOG_DIR") or Path(tempfile.gettempdir())
                  / "wit-builder-logs")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"spark-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


@contextlib.contextmanager
def jvm_output_to(path: Path | None) -> Iterator[None]:
    """Point this process's stdout and stderr file descriptors at `path` while the body
    starts the JVM, which keeps them for its life: Spark's and the JVM's own lines
    (log4j warnings, port retries, module notices, task traces) go to that file, not
    around the CLI's one-line messages. None: leave them on the terminal."""
    if path is None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        send_output_to(path)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
    log.debug("Spark's own log: %s", path)


def send_output_to(path: Path | str) -> None:
    """Point this process's stdout and stderr file descriptors at the file `path`
    (appended to): what it and the processes it starts print goes there."""
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(target)


def get_spark(
    master: str | None = "local[*]",
    app_name: str = "wit-builder",
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """Return the active Spark session or start one.

    `master=None` leaves the master to `spark-submit` / `spark-defaults.conf`. Under
    `spark-submit` (its JVM is already running and exported PYSPARK_GATEWAY_PORT) the
    master given to spark-submit always wins over `master`.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if master and "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(master)
    settings = {**DEFAULT_CONF, **local_conf(master or ""), **(conf or {})}
    for key, value in settings.items():
        builder = builder.config(key, value)
    with jvm_output_to(None if os.environ.get(SHOW_LOGS_ENV) else spark_log_file()):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if spark.sparkContext.master.startswith("local"):
        quiet_task_errors(spark)
    if not spark.sparkContext.master.startswith("local"):
        ship_package(spark)
    return spark


# Loggers that print a failed task's whole Java stack trace (100+ lines) before the job
# fails; the failure itself still reaches the driver and becomes one line (or, for a bug,
# a Python traceback that carries the trace).
TASK_ERROR_LOGGERS = ("org.apache.spark.executor.Executor",
                      "org.apache.spark.scheduler.TaskSetManager")


def quiet_task_errors(spark: SparkSession) -> None:
    """Silence the per-task stack traces in local mode, where executors log to the
    user's console."""
    jvm = spark.sparkContext._jvm
    level = jvm.org.apache.logging.log4j.Level.FATAL
    for name in TASK_ERROR_LOGGERS:
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(name, level)


def package_zip() -> Path:
    """Zip the `wit_builder` package (sources only) into a temp file and return its path."""
    pkg_dir = Path(__file__).resolve().parent
    folder = tempfile.mkdtemp(prefix="wit-pyfiles-")
    # Spark serves the file to executors for the session's life: remove it at exit.
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    target = Path(folder) / "wit_builder.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(pkg_dir.rglob("*.py")):
            zf.write(path, path.relative_to(pkg_dir.parent))
    return target


def ship_package(spark: SparkSession) -> None:
    """Make `wit_builder` importable on a remote cluster's Python workers."""
    path = package_zip()
    spark.sparkContext.addPyFile(str(path))
    log.info("shipped %s to the cluster", path)


def spark_error_message(exc: BaseException | str) -> str:
    """The innermost useful line of a Spark/Py4J error (the JVM trace is very long)."""
    text = str(exc)
    for line in text.splitlines():
        if "Encountered error while reading file" in line or "Exception:" in line:
            return line.strip()
    return text.splitlines()[0] if text else type(exc).__name__


def spark_schema(schema: pa.Schema) -> StructType:
    """The Spark schema of an Arrow schema: stage schemas are written once, in pyarrow,
    and Spark's (``mapInArrow`` output types) are derived from them."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def schema_plus(df: DataFrame, *fields: pa.Field) -> StructType:
    """`df`'s schema with `fields` (Arrow) appended: the output of a ``mapInArrow`` that
    adds columns."""
    import pyarrow as pa
    from pyspark.sql.types import StructType

    # A new StructType: `StructType.add` would change `df`'s cached schema in place.
    added = spark_schema(pa.schema(list(fields))).fields
    return StructType([*df.schema.fields, *added])


_FILE_IN_ERROR = re.compile(r"reading file (\S+?)\.?\s")
T = TypeVar("T")


def run_spark_action(action: Callable[[], T], what: str) -> T:
    """Run a Spark action, turning unreadable-input failures into one-line `InputError`s.

    Errors that are not about reading a file are re-raised unchanged.
    """
    try:
        return action()
    except Exception as e:  # Py4J/Spark errors have no common importable base
        msg = str(e)
        match = _FILE_IN_ERROR.search(msg)
        if match is None:
            raise
        raise InputError(f"{what}: cannot read {match.group(1)} ({read_error_cause(msg)})"
                         ) from None


def read_error_cause(msg: str) -> str:
    """A short cause for a Spark file-read failure: truncated, not bz2, or the innermost
    ``Caused by`` line (the decoder's own complaint)."""
    if "end of stream" in msg or "EOFException" in msg:
        return "truncated or corrupt"
    if "Stream is not BZip2 formatted" in msg or "not in the BZip2 format" in msg:
        return "not a bz2 file"
    causes = [line.split("Caused by:", 1)[1].strip() for line in msg.splitlines()
              if "Caused by:" in line]
    if causes:
        return f"corrupt data: {causes[-1][:160]}"
    return spark_error_message(msg)


def run_spark_stage(stage: str, version: int, cfg: SparkStageConfig, inputs: list[Any],
                    build: Callable[[Path, SparkSession], StageStats],
                    spark: SparkSession | None = None, resumable: bool = False
                    ) -> StageResult:
    """`outputs.run_stage` for a Spark stage: the session (`spark`, or one started from
    the config's master) is only created when the stage really runs, not when it skips."""
    from wit_builder.outputs import run_stage

    def body(tmp: Path) -> StageStats:
        return build(tmp, spark or get_spark(cfg.master, f"wit-{stage}", cfg.spark_conf))

    return run_stage(stage, version, cfg, inputs, body, resumable)


def number_rows(df: DataFrame, order: str) -> DataFrame:
    """`df` with each row's position in `order` order (``index``, from 0), persisted.

    zipWithIndex numbers the range-partitioned, sorted rows partition by partition; a
    window over the whole table (``row_number().over(Window.orderBy(order))``) would move
    every row, texts and URLs included, into one task.
    """
    import pyarrow as pa
    from pyspark import StorageLevel

    rows = df.orderBy(order).rdd.zipWithIndex().map(lambda pair: (*pair[0], pair[1]))
    schema = schema_plus(df, pa.field("index", pa.int64()))
    return df.sparkSession.createDataFrame(rows, schema).persist(StorageLevel.MEMORY_AND_DISK)
