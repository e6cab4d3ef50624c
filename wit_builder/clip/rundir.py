"""The `wit train` run directory: its contract around the training loop.

A run directory (`--out`) holds one configuration's run: ``run.json`` records its config
hash and hashed fields, ``checkpoints/`` its checkpoints, ``metrics.jsonl`` and
``tensorboard/`` its logs, and ``_SUCCESS`` (stage ``train``, the last checkpoint in its
stats) marks it finished.

* Same config (or no run yet): train, resuming from the newest readable checkpoint.
* Another config: refused with the changed keys listed, unless ``--overwrite`` (the old
  run is removed and training starts afresh) or ``--set resume=latest`` (the run goes on
  with the new config; the change is logged and recorded in ``run.json``).
* A directory that is another stage's output, or not a run at all: refused unless
  ``--overwrite``.

The directory is checked and ``run.json`` written before any model is built, so an
unwritable `--out` fails at once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wit_builder.config import config_changes
from wit_builder.errors import OutputExistsError
from wit_builder.outputs import MARKER, read_marker, write_json

if TYPE_CHECKING:
    from wit_builder.clip.configs import TrainConfig

STAGE = "train"
RUN_FILE = "run.json"
log = logging.getLogger(__name__)


def read_run(out: Path) -> dict[str, Any] | None:
    """The ``run.json`` of a run directory, or None."""
    path = out / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def check_run_dir(cfg: TrainConfig, chash: str) -> bool:
    """Check `cfg.out` against the contract (module docstring); True if the directory
    must be cleared before training."""
    out = cfg.out
    marker = read_marker(out)
    if marker is not None and marker.get("stage") != STAGE and not cfg.overwrite:
        raise OutputExistsError(f"{out} holds a finished `wit {marker.get('stage')}` output; "
                                "choose another --out (or --overwrite to replace it)")
    previous = read_run(out)
    if previous is None:
        if out.is_dir() and any(out.iterdir()) and not cfg.overwrite:
            raise OutputExistsError(f"{out} exists and is not a `wit train` run directory; "
                                    "choose another --out (or --overwrite to replace it)")
        return cfg.overwrite
    if cfg.overwrite:
        return True
    if previous["config_hash"] == chash:
        if cfg.resume is None:
            raise OutputExistsError(f"{out} holds a run and resume=none would start it "
                                    "over: pass --overwrite to start afresh")
        return False
    changes = config_changes(previous["config"], cfg.hashed_fields())
    if cfg.resume == "latest":
        log.warning("resuming %s with a changed config: %s", out, changes)
        return False
    raise OutputExistsError(f"{out} holds a run with another config ({changes}); pass "
                            "--overwrite to start afresh, or --set resume=latest to continue "
                            "it with the new config")


def is_main_process() -> bool:
    """True for rank 0 of a torchrun job (and for a plain single process)."""
    return int(os.environ.get("RANK", "0")) == 0


def prepare(cfg: TrainConfig, chash: str) -> None:
    """Check the run directory, clear it if asked, record the config (hash `chash`).

    Only rank 0 writes; the other ranks only check.
    """
    clear = check_run_dir(cfg, chash)
    if not is_main_process():
        return
    if clear and cfg.out.exists():
        log.warning("--overwrite: removing the previous run in %s", cfg.out)
        shutil.rmtree(cfg.out)
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / MARKER).unlink(missing_ok=True)  # unfinished until this config completes
    record = {"stage": STAGE, "config_hash": chash, "config": cfg.hashed_fields()}
    write_json(cfg.out / RUN_FILE, record)


def last_checkpoint(marker: dict[str, Any]) -> Path | None:
    """The last checkpoint of a finished run, from its marker."""
    found = marker.get("stats", {}).get("checkpoint")
    return Path(found) if found else None
