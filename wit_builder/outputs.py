"""Atomic, resumable stage outputs.

A stage writes into a hidden temporary sibling of its output directory and renames it into
place only after everything (data, `stats.json`, `_SUCCESS`) is written, so a killed job
never leaves a half-written output where a later stage would read it. The `_SUCCESS`
marker is JSON holding the config hash; a rerun with the same hash is skipped, a rerun with
a different hash is refused unless `overwrite` is set.

One writer per output directory: starting a run removes temporary siblings left by
killed runs of the same output.

Stages whose work is long and splits into pieces (image download) run `resumable`: their
temporary sibling is named after the config hash (``.NAME.work-HASH``) and survives a
failed or killed run, so a rerun with the same config finds the pieces already finished
there (the stage decides which are); a run with another config removes it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from wit_builder import __version__
from wit_builder.config import StageConfig, config_changes, config_hash
from wit_builder.errors import Incomplete, InputError, OutputExistsError, WitError
from wit_builder.stats import StageStats

MARKER = "_SUCCESS"
STATS_FILE = "stats.json"
log = logging.getLogger(__name__)


def read_marker(out_dir: Path) -> dict[str, Any] | None:
    """The parsed `_SUCCESS` marker of `out_dir`, or None if there is none; `InputError`
    if it is torn or not a JSON object."""
    marker = out_dir / MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise InputError(f"{marker} is torn or not a marker (not a JSON object): "
                         f"{out_dir} is not a finished wit output")
    return data


def marker_or_none(out_dir: Path) -> dict[str, Any] | None:
    """`read_marker`, with a torn marker read as none (the directory is then not a
    finished output)."""
    try:
        return read_marker(out_dir)
    except InputError:
        return None


def finished(out_dir: Path | str, *stages: str) -> dict[str, Any]:
    """The marker of `out_dir` if it is a finished output of one of `stages`;
    `InputError` (one message for every reader) otherwise."""
    path = Path(out_dir)
    marker = marker_or_none(path)
    if marker is None or marker.get("stage") not in stages:
        wanted = " or ".join(f"`wit {s}`" for s in stages)
        raise InputError(f"{path} is not a finished {wanted} output")
    return marker


def read_stats(out_dir: Path | str) -> dict[str, Any]:
    """The `stats.json` of a stage output (rows in/out, drops, notices, extra figures)."""
    return json.loads((Path(out_dir) / STATS_FILE).read_text())


def piece_done(path: Path) -> bool:
    """True if a piece of a resumable stage (a shard, a state file) is finished: pieces
    are written temp-then-rename (`atomic_write`), so the file existing is the mark."""
    return path.is_file()


def write_json(path: Path, data: Any) -> None:
    """`data` as indented JSON at `path`, atomically."""
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text))


def amend(out_dir: Path, stats: StageStats) -> dict[str, Any]:
    """Replace the stats of a finished output that a stage updated in place (a retry):
    `stats.json`, then the marker (last, each atomically); the new marker."""
    marker = {**finished(out_dir, stats.stage), "stats": stats.to_dict()}
    write_json(out_dir / STATS_FILE, stats.to_dict())
    write_json(out_dir / MARKER, marker)
    return marker


def check_existing(out_dir: Path, stage: str, chash: str, overwrite: bool
                   ) -> Literal["run", "skip"]:
    """Decide what to do with an existing `out_dir` (see module docstring)."""
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return "run"
    marker = marker_or_none(out_dir)
    if marker is not None and marker.get("config_hash") == chash:
        return "skip"
    if overwrite:
        return "run"
    if marker is not None and marker.get("stage") != stage:
        raise OutputExistsError(
            f"{out_dir} holds a finished `wit {marker.get('stage')}` output: choose another "
            "--out (or pass --overwrite to replace it)")
    if marker is None:
        raise OutputExistsError(
            f"{out_dir} exists but has no {MARKER} marker (not a finished wit output); "
            "pass --overwrite to replace it"
        )
    raise OutputExistsError(
        f"{out_dir} was built with config {marker.get('config_hash')}, this run is {chash}; "
        "pass --overwrite to replace it"
    )


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Produce the file `path` by calling `write` on a hidden temporary sibling, then
    renaming it: a reader sees the old file or the complete new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def _remove_stale_temps(out_dir: Path, keep: Path | None = None) -> None:
    for pattern in (f".{out_dir.name}.tmp-*", f".{out_dir.name}.work-*"):
        for stale in out_dir.parent.glob(pattern):
            if stale != keep:
                log.warning("removing leftover of an interrupted run: %s", stale)
                shutil.rmtree(stale, ignore_errors=True)


WORK_CONFIG = ".config.json"  # the hashed config of the run a work dir belongs to


def check_other_work(out_dir: Path, chash: str, cfg: StageConfig) -> None:
    """`OutputExistsError` if an unfinished run of another config left finished pieces
    beside `out_dir`: they are never dropped silently (``--overwrite`` drops them)."""
    for other in sorted(out_dir.parent.glob(f".{out_dir.name}.work-*")):
        if other.name.endswith(f"-{chash}") or not holds_files(other, skip=WORK_CONFIG):
            continue
        recorded = other / WORK_CONFIG
        before = json.loads(recorded.read_text()) if recorded.is_file() else {}
        changes = config_changes(before, cfg.hashed_fields()) or "its inputs changed"
        raise OutputExistsError(
            f"{other} holds an unfinished run with other settings ({changes}): rerun with "
            "those to resume it, or pass --overwrite to drop it")


def _work_dir(out_dir: Path, chash: str, resumable: bool, cfg: StageConfig) -> Path:
    """The temporary sibling a run writes into (see module docstring)."""
    if resumable:
        work = out_dir.parent / f".{out_dir.name}.work-{chash}"
        if work.is_dir():
            log.info("resuming the unfinished run in %s", work)
        work.mkdir(exist_ok=True)
        write_json(work / WORK_CONFIG, cfg.hashed_fields())
        return work
    work = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    return work


def worth_resuming(work: Path, error: BaseException) -> bool:
    """True if a failed resumable run's work dir is kept: it holds finished pieces and
    the run was stopped (Ctrl-C, a kill, a full disk, `Incomplete`), not refused for its
    input, which a rerun with the same settings would meet again."""
    refused = isinstance(error, WitError) and not isinstance(error, Incomplete)
    return not refused and holds_files(work)


def holds_files(directory: Path, skip: str = WORK_CONFIG) -> bool:
    """True if `directory` holds a file anywhere below it (folders alone, and the `skip`
    file, do not count)."""
    return any(p.is_file() and p.name != skip for p in directory.rglob("*"))


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename `tmp` to `out_dir`, replacing any previous output only after the rename."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class StageResult:
    """What `run_stage` did: `status` is "ran" or "skipped"; `marker` is the `_SUCCESS` JSON."""

    status: Literal["ran", "skipped"]
    out_dir: Path
    marker: dict[str, Any]


def run_stage(
    stage: str,
    version: int,
    cfg: StageConfig,
    inputs: list[Any],
    body: Callable[[Path], StageStats],
    resumable: bool = False,
) -> StageResult:
    """Run `body(tmp_dir)` as an atomic, resumable stage writing to `cfg.out`.

    `body` writes its files into `tmp_dir` and returns its stats; this function writes
    `stats.json` and `_SUCCESS` and renames the directory into place. If `body` raises,
    nothing at `cfg.out` changes; the temporary directory is removed, unless the stage
    is `resumable` (then a rerun with the same config continues in it).
    """
    out_dir = Path(cfg.out).absolute()
    chash = config_hash(stage, version, cfg, inputs)
    if check_existing(out_dir, stage, chash, cfg.overwrite) == "skip":
        log.info("%s: %s is complete for config %s; skipping", stage, out_dir, chash)
        return StageResult("skipped", out_dir, read_marker(out_dir) or {})
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    keep = out_dir.parent / f".{out_dir.name}.work-{chash}" if resumable else None
    if resumable and not cfg.overwrite:
        check_other_work(out_dir, chash, cfg)
    _remove_stale_temps(out_dir, keep)
    tmp = _work_dir(out_dir, chash, resumable, cfg)
    started = time.time()
    try:
        stats = body(tmp)
        (tmp / WORK_CONFIG).unlink(missing_ok=True)
        stats.extra.setdefault("seconds", round(time.time() - started, 3))
        marker = write_marker(tmp, stage, chash, cfg, stats)
        _swap_into_place(tmp, out_dir)
    except BaseException as error:
        if not resumable or not worth_resuming(tmp, error):
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    stats.print()
    return StageResult("ran", out_dir, marker)


def make_marker(stage: str, chash: str, cfg: StageConfig, stats: StageStats
                ) -> dict[str, Any]:
    """The `_SUCCESS` content of a finished run (see module docstring)."""
    return {
        "stage": stage,
        "config_hash": chash,
        "config": cfg.hashed_fields(),
        "stats": stats.to_dict(),
        "wit_version": __version__,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_marker(
    tmp: Path, stage: str, chash: str, cfg: StageConfig, stats: StageStats
) -> dict[str, Any]:
    """Write `stats.json` and the `_SUCCESS` marker into `tmp`; return the marker."""
    marker = make_marker(stage, chash, cfg, stats)
    (tmp / STATS_FILE).write_text(json.dumps(marker["stats"], indent=2) + "\n")
    (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return marker
