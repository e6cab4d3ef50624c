"""`wit pipeline --config FILE.yaml`: every stage that has a section in the file, in order.

The order is the roster's (`stages.PIPELINE`: querylist → extract → match → balance →
curate → download → shards → overlap → train → eval → report). ``curate`` is extract,
match and balance in one job, for small runs; a full-size line uses the three sections
instead, so the extraction is a durable checkpoint (a file has one or the other). A
stage's inputs default to the previous stages' outputs (`wired`, through each
producer's contract functions) unless its section names them, and its ``out`` defaults
to ``<out>/<stage>`` (the file's top-level ``out``, or ``--out``). Each stage skips
when its marker matches its config, so a rerun after a stop resumes at the first
unfinished stage.

Only the sections present run: a file with ``download`` and ``shards`` sections only
(naming ``download.pairs``) runs those two.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from wit_builder import stages, tarshards
from wit_builder.clip.rundir import last_checkpoint
from wit_builder.config import excerpt, format_validation_error, read_yaml
from wit_builder.errors import ConfigError
from wit_builder.outputs import StageResult
from wit_builder.overlap.matches import filtered_pattern

ORDER = stages.PIPELINE
OTHER_KEYS = {"out", "demo"}  # top-level keys that are not stage sections
SPLIT_CURATION = ("extract", "match", "balance")  # what curate does in one job


@dataclass
class Done:
    """What the finished stages left: output dirs and results by stage."""

    outs: dict[str, Path] = field(default_factory=dict)
    results: dict[str, StageResult] = field(default_factory=dict)

    @property
    def checkpoint(self) -> Path | None:
        """The last checkpoint of the training run, if one ran."""
        train = self.results.get("train")
        return last_checkpoint(train.marker) if train else None


def wired(stage: str, done: Done) -> dict[str, Any]:
    """The inputs `stage` takes from earlier stages' outputs (those that ran)."""
    o = done.outs
    shards = tarshards.pattern(o["shards"]) if "shards" in o else None
    wiring: dict[str, dict[str, Any]] = {
        "match": {"pairs": o.get("extract"), "entries": o.get("querylist")},
        "balance": {"pairs": o.get("match"), "entries": o.get("querylist")},
        "curate": {"entries": o.get("querylist")},
        "download": {"pairs": o.get("balance") or o.get("curate")},
        "shards": {"images": o.get("download")},
        "overlap": {"shards": shards},
        "train": {"shards": filtered_pattern(o["overlap"]) if "overlap" in o else shards},
        "eval": {"checkpoint": done.checkpoint},
        "report": {"overlap": o.get("overlap"), "checkpoint": done.checkpoint},
    }
    return {k: v for k, v in wiring.get(stage, {}).items() if v is not None}


def read_pipeline(path: Path) -> dict[str, Any]:
    """The YAML file as a mapping; `ConfigError` if it has no known stage section or an
    unknown one."""
    data = read_yaml(path)
    if not any(s in data for s in ORDER):
        raise ConfigError(f"{path} has no stage section (one of {', '.join(ORDER)})")
    unknown = sorted(set(data) - set(ORDER) - OTHER_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; stages are {list(ORDER)}")
    for name in [s for s in ORDER if s in data] + ["demo"]:
        if data.get(name) is not None and not isinstance(data[name], dict):
            raise ConfigError(f"{path}: section {name!r} must be a mapping of keys, got "
                              f"{type(data[name]).__name__}")
    split = [s for s in SPLIT_CURATION if s in data]
    if "curate" in data and split:
        raise ConfigError(f"{path}: curate is {', '.join(SPLIT_CURATION)} in one job; give "
                          f"either curate or {', '.join(split)}, not both")
    if "out" in data and not isinstance(data["out"], str):
        raise ConfigError(f"{path}: out must be a directory name, got {excerpt(data['out'])}")
    return data


def stage_config(stage: str, section: dict[str, Any], out: Path, done: Done) -> BaseModel:
    """The validated config of `stage`: wired inputs < the section's own keys."""
    cls = stages.get(stage).config_class()
    data = {"out": out / stage, **wired(stage, done),
            **{k.replace("-", "_"): v for k, v in (section or {}).items()}}
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"section {stage}: {format_validation_error(e)}") from None


def run(path: Path, out: Path | None = None, overrides: dict[str, dict] | None = None,
        announce: Callable[[str, StageResult], None] | None = None) -> Done:
    """Run every stage with a section in the file at `path` (see module docstring);
    `overrides` adds keys per stage, `announce(stage, result)` is told after each."""
    data = read_pipeline(path)
    absent = sorted(set(overrides or {}) - {s for s in ORDER if s in data})
    if absent:
        raise ConfigError(f"--set {absent[0]}.…: {path} has no {absent[0]!r} stage to set "
                          f"(its stages: {', '.join(s for s in ORDER if s in data)})")
    root = Path(out or data.get("out") or "wit_out")
    done = Done()
    for stage in ORDER:
        if stage not in data:
            continue
        section = {**(data[stage] or {}), **(overrides or {}).get(stage, {})}
        cfg = stage_config(stage, section, root, done)
        result = stages.get(stage).job_module().run(cfg)
        done.outs[stage], done.results[stage] = result.out_dir, result
        if announce:
            announce(stage, result)
    return done
