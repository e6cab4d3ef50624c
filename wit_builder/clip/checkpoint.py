"""Atomic, resumable training checkpoints.

A checkpoint is one ``step_NNNNNNNN.pt`` file written to a temporary name and renamed, then
``latest`` (a one-line text file naming it) is replaced the same way, so a kill at any
moment leaves either the previous or the new checkpoint complete. The model weights are
under ``state_dict`` with open_clip's key names, so ``open_clip.load_checkpoint`` and
``model.load_state_dict(ckpt["state_dict"])`` both work.

Everything in a checkpoint is tensors, numbers, strings and containers (the NumPy RNG
state is stored as a tensor), so it loads with ``torch.load(weights_only=True)``: opening
a checkpoint never runs code from the file. If the newest checkpoint is unreadable (a
disk filled up, a copy was cut), resuming falls back to the newest readable one.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from wit_builder.clip.distributed import DistInfo, unwrap
from wit_builder.errors import InputError
from wit_builder.outputs import atomic_write

if TYPE_CHECKING:
    from torch import nn

    from wit_builder.clip.configs import TrainConfig
    from wit_builder.clip.stream import DataPosition

LATEST = "latest"
log = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    """Every random generator a training step may use (weights_only-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                       "pos": pos, "has_gauss": has_gauss, "gauss": gauss},
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved."""
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(directory: Path, step: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Write `state` as the checkpoint of `step`, point ``latest`` at it, prune old ones."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step_{step:08d}.pt"
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    atomic_write(directory / LATEST, lambda tmp: tmp.write_text(path.name + "\n"))
    for old in sorted(directory.glob("step_*.pt"))[:-keep] if keep > 0 else []:
        old.unlink()
    return path


def load(path: Path) -> dict[str, Any]:
    """A checkpoint's state (CPU tensors), or a bare state dict; `InputError` for a file
    that is neither (random bytes, text, a truncated file, a bare tensor)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"checkpoint not found: {path}") from None
    except Exception as e:  # torch raises many types for non-checkpoint files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path} is not a readable checkpoint ({first[:120]})") from None
    if not isinstance(state, dict) or not state:
        raise InputError(f"{path} is not a checkpoint (holds a {type(state).__name__}, "
                         "not a state dict)")
    return state


def candidates(directory: Path) -> list[Path]:
    """Checkpoints to resume from, best first: the one ``latest`` names, then the others
    newest first."""
    pointer = directory / LATEST
    named = [directory / pointer.read_text().strip()] if pointer.is_file() else []
    return named + [p for p in sorted(directory.glob("step_*.pt"), reverse=True)
                    if p not in named]


def load_latest(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint of a run and its state; None if there is none.

    An unreadable newer checkpoint is skipped with a warning, not an error: the run then
    resumes from the newest one that loads.
    """
    for path in candidates(directory):
        try:
            state = load(path)
        except InputError as e:
            log.warning("skipping unreadable checkpoint: %s", e)
            continue
        if "step" in state and "state_dict" in state:
            return path, state
        log.warning("skipping %s: not a `wit train` checkpoint", path)
    return None


def resume_state(cfg: TrainConfig) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint `cfg.resume` asks for, loaded; None to start from step 0."""
    if cfg.resume is None:
        return None
    if cfg.resume in ("auto", LATEST):
        return load_latest(cfg.out / "checkpoints")
    path = Path(cfg.resume)
    state = load(path)
    if "step" not in state or "optimizer" not in state:
        raise InputError(f"{path} holds weights only, not a `wit train` checkpoint to "
                         "resume (use it with `wit eval`, or start with --set resume=none)")
    return path, state


def state_of(model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
             step: int, position: DataPosition, ranks: list[dict[str, Any]]
             ) -> dict[str, Any]:
    """The checkpoint of a training state: weights, optimizer, step, data position (epoch,
    batches done, and each rank's reader positions in `ranks`), RNG, config."""
    return {"state_dict": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
            "step": step, "epoch": position.epoch, "batches_done": position.batches,
            "data": {"world": len(ranks), "ranks": ranks},
            "rng": rng_state(), "config": cfg.model_dump(mode="json")}


@dataclass(frozen=True)
class Resumed:
    """Where a run starts: step, data position (epoch, batches done, this rank's reader
    positions if the checkpoint has them for this many ranks) and the checkpoint it was
    restored from (None for a fresh start)."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0
    path: Path | None = None
    data: dict[str, Any] | None = None


# The settings that decide which samples a reader reads and in what order: positions
# saved under other values (a run resumed with ``resume=latest``) point elsewhere.
DATA_FIELDS = ("shards", "seed", "shuffle_buffer", "batch_size")


def rank_data(state: dict[str, Any], cfg: TrainConfig, dist: DistInfo
              ) -> dict[str, Any] | None:
    """This rank's saved reader positions, or None: none saved, or saved by another
    number of ranks or under other `DATA_FIELDS`."""
    data, saved = state.get("data"), state.get("config", {})
    if data is None or data["world"] != dist.world:
        return None
    current = cfg.model_dump(mode="json")
    if any(saved.get(f) != current[f] for f in DATA_FIELDS):
        return None
    return data["ranks"][dist.rank]


def restore(model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
            dist: DistInfo) -> Resumed:
    """Load the checkpoint `cfg.resume` names into `model` and `optimizer`, if any."""
    found = resume_state(cfg)
    if found is None:
        return Resumed()
    path, state = found
    unwrap(model).load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    log.info("resumed from %s (step %s)", path, state["step"])
    return Resumed(state["step"], state["epoch"], state["batches_done"], path,
                   rank_data(state, cfg, dist))


def gather_ranks(position: DataPosition, dist: DistInfo) -> list[dict[str, Any]]:
    """Every rank's data position (on rank 0; an empty list elsewhere)."""
    if dist.world == 1:
        return [position.state()]
    ranks: list[Any] = [None] * dist.world if dist.is_main else []
    torch.distributed.gather_object(position.state(), ranks if dist.is_main else None, dst=0)
    return ranks


def save_training(model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                  step: int, position: DataPosition, dist: DistInfo) -> Path:
    """Rank 0 writes; every rank waits for it (so no rank runs ahead of a save)."""
    path = cfg.out / "checkpoints" / f"step_{step:08d}.pt"
    ranks = gather_ranks(position, dist)
    if dist.is_main:
        path = save(cfg.out / "checkpoints", step,
                    state_of(model, optimizer, cfg, step, position, ranks),
                    cfg.keep_checkpoints)
    if dist.world > 1:
        torch.distributed.barrier()
    return path
