"""Atomic, resumable training checkpoints.

A checkpoint is one ``step_NNNNNNNN.pt`` file written to a temporary name and renamed, then
``latest`` (a one-line text file naming it) is replaced the same way, so a kill at any
moment leaves either the previous or the new checkpoint complete. The model weights are
under ``state_dict`` with open_clip's key names, so ``open_clip.load_checkpoint`` and
``model.load_state_dict(ckpt["state_dict"])`` both work.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wit_builder.outputs import atomic_write

LATEST = "latest"


def rng_state() -> dict[str, Any]:
    """Every random generator a training step may use."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
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


def resolve(directory: Path, resume: str | None) -> Path | None:
    """The checkpoint to resume from: None, ``latest`` (None if there is none yet), or a
    path."""
    if resume is None:
        return None
    if resume == LATEST:
        pointer = directory / LATEST
        return directory / pointer.read_text().strip() if pointer.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def load(path: Path) -> dict[str, Any]:
    """A checkpoint's state (CPU tensors; RNG states need the full pickle)."""
    return torch.load(path, map_location="cpu", weights_only=False)
