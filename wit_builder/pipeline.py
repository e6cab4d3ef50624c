"""`wit pipeline --config FILE.yaml`: every stage that has a section in the file, in order.

The order is querylist → curate → download → shards → overlap → train → eval → report.
A stage's inputs default to the previous stages' outputs (`WIRING`) unless its section
names them, and its ``out`` defaults to ``<out>/<stage>`` (the file's top-level ``out``,
or ``--out``). Each stage skips when its marker matches its config, so a rerun after a
stop resumes at the first unfinished stage.

Only the sections present run: a file with ``download`` and ``shards`` sections only
(naming ``download.pairs``) runs those two.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from wit_builder.config import format_validation_error
from wit_builder.errors import ConfigError

# stage → (config class, job module), in pipeline order. Every job module has run(cfg).
STAGES = {
    "querylist": ("wit_builder.querylist.configs:QueryListConfig",
                  "wit_builder.querylist.querylist_job"),
    "curate": ("wit_builder.curate.configs:CurateConfig", "wit_builder.curate.curate_job"),
    "download": ("wit_builder.images.configs:DownloadConfig",
                 "wit_builder.images.download_job"),
    "shards": ("wit_builder.images.configs:ShardsConfig", "wit_builder.images.shards_job"),
    "overlap": ("wit_builder.overlap.configs:OverlapConfig",
                "wit_builder.overlap.overlap_job"),
    "train": ("wit_builder.clip.configs:TrainConfig", "wit_builder.clip.train_job"),
    "eval": ("wit_builder.clip.configs:EvalConfig", "wit_builder.clip.eval_job"),
    "report": ("wit_builder.overlap.configs:ReportConfig", "wit_builder.overlap.report_job"),
}
ORDER = tuple(STAGES)


@dataclass
class Done:
    """What the finished stages left: output dirs by stage, and the last checkpoint."""

    outs: dict[str, Path] = field(default_factory=dict)
    checkpoint: Path | None = None
    results: dict[str, Any] = field(default_factory=dict)


def _wired(stage: str, done: Done) -> dict[str, Any]:
    """The inputs `stage` takes from earlier stages' outputs (those that ran)."""
    o = done.outs
    wiring: dict[str, dict[str, Any]] = {
        "curate": {"entries": o.get("querylist")},
        "download": {"pairs": o.get("curate")},
        "shards": {"images": o.get("download")},
        "overlap": {"shards": f"{o['shards']}/*.tar" if "shards" in o else None},
        "train": {"shards": f"{o['overlap']}/filtered/*.tar" if "overlap" in o
                  else f"{o['shards']}/*.tar" if "shards" in o else None},
        "eval": {"checkpoint": done.checkpoint},
        "report": {"overlap": o.get("overlap"), "checkpoint": done.checkpoint},
    }
    return {k: v for k, v in wiring.get(stage, {}).items() if v is not None}


def read_pipeline(path: Path) -> dict[str, Any]:
    """The YAML file as a mapping; `ConfigError` if it is not one with a known section."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict) or not any(s in data for s in ORDER):
        raise ConfigError(f"{path} has no stage section (one of {', '.join(ORDER)})")
    unknown = sorted(set(data) - set(ORDER) - {"out", "demo"})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; stages are {list(ORDER)}")
    return data


def stage_config(stage: str, section: dict[str, Any], out: Path, done: Done) -> BaseModel:
    """The validated config of `stage`: wired inputs < the section's own keys."""
    module, name = STAGES[stage][0].split(":")
    cls = getattr(importlib.import_module(module), name)
    data = {"out": out / stage, **_wired(stage, done),
            **{k.replace("-", "_"): v for k, v in (section or {}).items()}}
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"section {stage}: {format_validation_error(e)}") from None


def run_one(stage: str, cfg: Any, done: Done) -> None:
    """Run one stage and record its output in `done`."""
    result = importlib.import_module(STAGES[stage][1]).run(cfg)
    if stage == "train":  # a run directory: its result is the last checkpoint
        done.checkpoint = result
        done.outs[stage] = cfg.out
        return
    done.outs[stage] = result.out_dir
    done.results[stage] = result


def run(path: Path, out: Path | None = None, overrides: dict[str, dict] | None = None,
        announce: Callable[[str, Any], None] | None = None) -> Done:
    """Run every stage with a section in the file at `path` (see module docstring);
    `overrides` adds keys per stage, `announce(stage, result)` is told after each."""
    data = read_pipeline(path)
    root = Path(out or data.get("out") or "wit_out")
    done = Done()
    for stage in ORDER:
        if stage not in data:
            continue
        section = {**(data[stage] or {}), **(overrides or {}).get(stage, {})}
        cfg = stage_config(stage, section, root, done)
        run_one(stage, cfg, done)
        if announce:
            announce(stage, done.results.get(stage, done.checkpoint))
    return done
