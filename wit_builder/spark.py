"""Spark session handling shared by every job.

`get_spark` reuses an active session (as under `spark-submit`, or a notebook), otherwise
starts one with the requested master (default `local[*]`). Python workers run the same
interpreter as the driver (`PYSPARK_PYTHON`), so the venv's packages are on the executors
of a local or same-machine cluster; for a remote master the `wit_builder` package itself
is zipped and shipped with `addPyFile` (its third-party dependencies must be installed on
the workers, e.g. with the image in `docker/`).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from wit_builder.config import StageConfig
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
    """Defaults for local mode: few shuffle partitions (Spark's 200 cost seconds there)."""
    if not master.startswith("local"):
        return {}
    return {"spark.sql.shuffle.partitions": str(max(4, 2 * (os.cpu_count() or 1)))}


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
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if not spark.sparkContext.master.startswith("local"):
        ship_package(spark)
    return spark


def package_zip() -> Path:
    """Zip the `wit_builder` package (sources only) into a temp file and return its path."""
    pkg_dir = Path(__file__).resolve().parent
    target = Path(tempfile.mkdtemp(prefix="wit-pyfiles-")) / "wit_builder.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(pkg_dir.rglob("*.py")):
            zf.write(path, path.relative_to(pkg_dir.parent))
    return target


def ship_package(spark: SparkSession) -> None:
    """Make `wit_builder` importable on a remote cluster's Python workers."""
    path = package_zip()
    spark.sparkContext.addPyFile(str(path))
    log.info("shipped %s to the cluster", path)


def spark_error_message(exc: BaseException) -> str:
    """The innermost useful line of a Spark/Py4J error (the JVM trace is very long)."""
    text = str(exc)
    for line in text.splitlines():
        if "Encountered error while reading file" in line or "Exception:" in line:
            return line.strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_spark_stage(stage: str, version: int, cfg: StageConfig, inputs: list[Any],
                    build: Callable[[Path, SparkSession], StageStats],
                    spark: SparkSession | None = None) -> StageResult:
    """`outputs.run_stage` for a Spark stage: the session (`spark`, or one started from
    the config's master) is only created when the stage really runs, not when it skips."""
    from wit_builder.outputs import run_stage

    def body(tmp: Path) -> StageStats:
        return build(tmp, spark or get_spark(cfg.master, f"wit-{stage}", cfg.spark_conf))

    return run_stage(stage, version, cfg, inputs, body)
