"""Typed stage configuration: YAML file, CLI flags and `--set key=value` overrides.

Precedence, lowest first: field defaults < `--config FILE.yaml` < explicit CLI flags <
`--set key=value`. A YAML file may hold one section per stage (`querylist:`, `extract:`...)
so a single file can configure a whole pipeline; a file without such a section is read as
the stage's own section. Unknown keys and bad values raise `ConfigError` naming the key.
"""

from __future__ import annotations

import hashlib
import json
import reprlib
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wit_builder.errors import ConfigError
from wit_builder.stages import NAMES as STAGES


class StageConfig(BaseModel):
    """Fields every stage has: where it writes and whether it may replace another run.

    Subclasses add the stage's own parameters; each field's type, default and
    `description` also make the stage's command-line options (`cli.stage_command`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Fields that change how a run executes but not what it writes: left out of the hash,
    # so moving a job from local mode to a cluster does not invalidate finished outputs.
    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"out", "overwrite"})

    out: Path = Field(description="output directory (written atomically)")
    overwrite: bool = Field(False, description="replace an output built with another config")

    def hashed_fields(self) -> dict[str, Any]:
        """The parameters that determine the output, JSON-ready."""
        data = self.model_dump(mode="json")
        return {k: v for k, v in data.items() if k not in self.RUNTIME_FIELDS}


class SparkStageConfig(StageConfig):
    """A stage that runs as a Spark job: adds the master and extra Spark settings."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = StageConfig.RUNTIME_FIELDS | {
        "master", "spark_conf"}

    master: str | None = Field(
        "local[*]", description="Spark master URL (spark-submit's own master always wins)")
    spark_conf: dict[str, str] = Field(default_factory=dict, description="extra Spark settings")


C = TypeVar("C", bound=BaseModel)


def parse_set(items: list[str]) -> dict[str, Any]:
    """Turn `key=value` strings into a dict; values are parsed as YAML scalars/lists.

    ``field.name=value`` sets one entry of a mapping field (``thresholds.digits=2``,
    ``spark_conf.spark.executor.memory=8g``): the first dot separates field and entry.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        value = yaml.safe_load(raw) if raw else ""
        field, dot, entry = key.strip().partition(".")
        field = field.replace("-", "_")
        if dot:
            out.setdefault(field, {})[entry] = value
        else:
            out[field] = value
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    """The YAML file at `path` as a mapping (the one reader of config files: stages,
    `wit pipeline` and `wit demo`); `ConfigError` if it is missing, not YAML or not a
    mapping."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def read_yaml_section(path: Path, stage: str) -> dict[str, Any]:
    """Read `path` and return its `stage:` section.

    A file without any stage section is read as the stage's own section.
    """
    data = read_yaml(path)
    # A file with any stage section configures a pipeline: a stage without a section of
    # its own takes its defaults, and never reads the other stages' sections.
    sectioned = any(key in STAGES for key in data)
    section = data.get(stage, {}) if sectioned else data
    if not isinstance(section, dict):
        raise ConfigError(f"section {stage!r} of {path} must be a mapping")
    return {k.replace("-", "_"): v for k, v in section.items()}


def excerpt(value: Any) -> str:
    """A bounded repr of a config value: a YAML file can hold a value that expands to
    gigabytes (nested aliases), so nested levels, long lists and strings are cut."""
    shown = reprlib.Repr()
    shown.maxlevel, shown.maxlist, shown.maxdict, shown.maxstring, shown.maxother = (
        2, 4, 4, 80, 80)
    text = shown.repr(value)
    return text if len(text) <= 200 else text[:200] + "…"


def format_validation_error(err: ValidationError, most: int = 5) -> str:
    """One line: `invalid configuration: key: problem (got value); key2: ...` (the first
    `most` problems, values shown as bounded excerpts)."""
    lines = []
    errors = err.errors()
    for e in errors[:most]:
        key = ".".join(str(p) for p in e["loc"]) or "<config>"
        got = f" (got {excerpt(e['input'])})" if e["type"] != "missing" else ""
        lines.append(f"{key}: {e['msg']}{got}")
    more = f"; and {len(errors) - most} more" if len(errors) > most else ""
    return "invalid configuration: " + "; ".join(lines) + more


def load_config(
    cls: type[C],
    stage: str,
    config_file: Path | None = None,
    flags: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> C:
    """Build a validated `cls` from the layered sources (see module docstring)."""
    data: dict[str, Any] = read_yaml_section(config_file, stage) if config_file else {}
    data.update({k: v for k, v in (flags or {}).items() if v is not None})
    for key, value in parse_set(sets or []).items():
        merge = isinstance(value, dict) and isinstance(data.get(key), dict)
        data[key] = {**data[key], **value} if merge else value
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None


def config_hash(stage: str, version: int, config: StageConfig, inputs: list[Any],
                leave_out: frozenset[str] = frozenset()) -> str:
    """Stable hash of what determines a stage's output.

    `version` is the stage's output-format version (bump it when the code changes what is
    written); `inputs` are fingerprints of the input files, so a changed input is a
    different run. `leave_out` names fields a part of the output does not depend on (the
    overlap scores do not depend on the thresholds).
    """
    fields = {k: v for k, v in config.hashed_fields().items() if k not in leave_out}
    payload = {"stage": stage, "version": version, "config": fields, "inputs": inputs}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def config_changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    """'key old → new, ...' for the keys whose values differ (values as bounded
    excerpts)."""
    keys = sorted(set(before) | set(after))
    return ", ".join(f"{k} {excerpt(before.get(k))} → {excerpt(after.get(k))}" for k in keys
                     if before.get(k) != after.get(k))
