"""The stage roster: every stage once, in pipeline order.

A stage's name is its command (`wit <name>`, or `wit <group> <name>`), its config
section, its `stage` string in `_SUCCESS`, `jobs/<name>.py` when it is a Spark job, and
`<package>/<name>_job.py` (dashes as underscores). The CLI, `wit pipeline`, the YAML
section check and the stage table of docs/architecture.md are derived from `ROSTER`, so
adding a stage is one entry here plus its config class and job module.

Config classes and job modules are named by import path and imported on first use: the
CLI starts without Spark, pyarrow or torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class Stage:
    """One stage: `config` is ``module:Class``, `job` the job module's path.

    `group` puts the command under another stage's command (`wit overlap report`);
    `pipeline` says whether `wit pipeline` runs it; `spark_job` whether it has a
    spark-submit script ``jobs/<name>.py``.
    """

    name: str
    config: str
    job: str
    help: str
    group: str | None = None
    pipeline: bool = False
    spark_job: bool = False

    def config_class(self) -> Any:
        """The stage's config class (pydantic; cheap to import)."""
        module, name = self.config.split(":")
        return getattr(importlib.import_module(module), name)

    def job_module(self) -> ModuleType:
        """The job module (`STAGE`, `OUTPUT_VERSION`, `CONFIG`, `run`)."""
        return importlib.import_module(self.job)


def _stage(name: str, package: str, config: str, help_text: str, **kw: Any) -> Stage:
    job = f"wit_builder.{package}.{name.replace('-', '_')}_job"
    return Stage(name, f"wit_builder.{package}.configs:{config}", job, help_text, **kw)


ROSTER: tuple[Stage, ...] = (
    _stage("querylist", "querylist", "QueryListConfig", "Derive the query list from a "
           "Wikipedia dump, WordNet and pageviews.", pipeline=True, spark_job=True),
    _stage("extract", "curate", "ExtractConfig", "Extract English (image URL, alt-text) "
           "pairs from WARC/WAT files.", pipeline=True, spark_job=True),
    _stage("match", "curate", "MatchConfig", "Keep the pairs whose text contains a query "
           "entry (MetaCLIP rule).", pipeline=True, spark_job=True),
    _stage("balance", "curate", "BalanceConfig", "Sub-sample matched pairs to at most ~t "
           "per entry (MetaCLIP balancing).", pipeline=True, spark_job=True),
    _stage("curate", "curate", "CurateConfig", "Extract → match → balance in one Spark "
           "job.", pipeline=True, spark_job=True),
    _stage("download", "images", "DownloadConfig", "Download the pairs' images into "
           "webdataset shards (img2dataset).", pipeline=True, spark_job=True),
    _stage("shards", "images", "ShardsConfig", "Remove exact and near-duplicate images; "
           "write the final shards.", pipeline=True, spark_job=True),
    _stage("train-detector", "overlap", "TrainDetectorConfig", "Train the copy detector "
           "(CLIP App. C: ResNet, InfoNCE over augmented copies) on pool images.",
           group="overlap"),
    _stage("calibrate", "overlap", "CalibrateConfig", "Plant transformed copies of eval "
           "images in a pool sample; precision and recall per transformation and "
           "threshold.", group="overlap"),
    _stage("overlap", "overlap", "OverlapConfig", "Find pool images that copy evaluation "
           "images; write the pool without them.", pipeline=True, spark_job=True),
    _stage("train", "clip", "TrainConfig", "Train CLIP on webdataset shards (run under "
           "torchrun for several processes/GPUs).", pipeline=True),
    _stage("eval", "clip", "EvalConfig", "Zero-shot classification, linear probe and "
           "retrieval for a CLIP checkpoint.", pipeline=True),
    _stage("report", "overlap", "ReportConfig", "The CLIP §5 overlap table and galleries "
           "of a `wit overlap` output.", group="overlap", pipeline=True),
)
BY_NAME = {s.name: s for s in ROSTER}
NAMES = tuple(BY_NAME)
PIPELINE = tuple(s.name for s in ROSTER if s.pipeline)
SPARK_JOBS = tuple(s.name for s in ROSTER if s.spark_job)


def get(name: str) -> Stage:
    """The stage called `name` (KeyError for an unknown one)."""
    return BY_NAME[name]


def command(stage: Stage) -> str:
    """How a user runs the stage: ``wit overlap report``, ``wit shards``."""
    return f"wit {stage.group} {stage.name}" if stage.group else f"wit {stage.name}"


def docs_table() -> str:
    """The stage table of docs/architecture.md (checked against the file by a test)."""
    lines = ["| stage | command | job module | in `wit pipeline` | spark-submit |",
             "|---|---|---|---|---|"]
    for s in ROSTER:
        module = s.job.removeprefix("wit_builder.").replace(".", "/") + ".py"
        lines.append(f"| `{s.name}` | `{command(s)}` | `{module}` | "
                     f"{'yes' if s.pipeline else 'no'} | "
                     f"{f'`jobs/{s.name}.py`' if s.spark_job else '—'} |")
    return "\n".join(lines) + "\n"
