"""Training the copy detector (`detector`): batches of (plain, copy) views drawn from pool
shards, InfoNCE with a warmup-then-cosine schedule, a resumable state saved every
``checkpoint_every`` steps, and the closing similarity check that suggests a threshold.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from wit_builder import tarshards
from wit_builder.errors import InputError
from wit_builder.outputs import atomic_write, piece_done
from wit_builder.overlap import detector

if TYPE_CHECKING:
    from wit_builder.overlap.configs import TrainDetectorConfig

STATE_FILE = "state.pt"
LOG_FILE = "train_log.jsonl"
CHECK_IMAGES = 256  # images in the closing similarity check
WARMUP = 0.05  # share of steps with a linearly rising learning rate


class Draws:
    """Batches of (plain, copy) views from a `PairStream`, counting unreadable images."""

    def __init__(self, cfg: TrainDetectorConfig, seed: int) -> None:
        stream = detector.PairStream(tarshards.expand(cfg.shards), cfg.image_size, seed)
        loader = torch.utils.data.DataLoader(stream, batch_size=None,
                                             num_workers=cfg.workers,
                                             collate_fn=lambda item: item)
        self.items: Iterator[Any] = iter(loader)
        self.size, self.drawn, self.unreadable = cfg.batch_size, 0, 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch; `InputError` when the pool yields no readable image."""
        pairs = []
        while len(pairs) < self.size:
            item = next(self.items, False)
            if item is False:  # a whole pass over the pool yielded nothing
                raise InputError("the pool shards hold no samples")
            self.drawn += 1
            if item is None:
                self.unreadable += 1
                if self.unreadable >= 1000 and not pairs and self.drawn == self.unreadable:
                    raise InputError("the pool's images do not decode (1000 tried)")
                continue
            pairs.append(item)
        return torch.stack([p for p, _ in pairs]), torch.stack([c for _, c in pairs])


def schedule(step: int, steps: int) -> float:
    """Learning-rate factor: linear warmup, then cosine decay to 0."""
    warm = max(1, int(steps * WARMUP))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def start(cfg: TrainDetectorConfig, work: Path, device: str
          ) -> tuple[detector.CopyDetector, torch.optim.Optimizer, Any, int, dict]:
    """The model, optimizer, scheduler, first step and counters (a saved state if any)."""
    torch.manual_seed(cfg.seed)
    model = detector.CopyDetector(cfg.arch, cfg.dim).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                  lambda s: schedule(s, cfg.steps))
    saved = work / STATE_FILE
    if not piece_done(saved):
        return model, optimizer, scheduler, 0, {"drawn": 0, "unreadable": 0}
    state = torch.load(saved, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return model, optimizer, scheduler, int(state["step"]), state["counts"]


def save_state(work: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any, step: int, counts: dict) -> None:
    """The resumable training state, written atomically."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "step": step, "counts": counts}
    atomic_write(work / STATE_FILE, lambda tmp: torch.save(state, tmp))


def train(cfg: TrainDetectorConfig, work: Path, device: str) -> tuple[detector.CopyDetector, dict]:
    """Train from the saved state (or from scratch) to `cfg.steps`; returns the model and
    the draw counters."""
    from rich.progress import Progress

    model, optimizer, scheduler, step, counts = start(cfg, work, device)
    draws = Draws(cfg, cfg.seed + step)
    model.train()
    with Progress(transient=True) as progress, (work / LOG_FILE).open("a", buffering=1) as log:
        task = progress.add_task("training the copy detector", total=cfg.steps,
                                 completed=step)
        while step < cfg.steps:
            plain, copies = draws.next()
            loss = detector.info_nce(model(plain.to(device)), model(copies.to(device)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            log.write(json.dumps({"step": step, "loss": round(loss.item(), 5)}) + "\n")
            progress.update(task, completed=step)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                now = {"drawn": counts["drawn"] + draws.drawn,
                       "unreadable": counts["unreadable"] + draws.unreadable}
                save_state(work, model, optimizer, scheduler, step, now)
    final = torch.load(work / STATE_FILE, map_location="cpu", weights_only=True)["counts"]
    return model.eval(), final


def check(cfg: TrainDetectorConfig, model: detector.CopyDetector, device: str) -> dict[str, Any]:
    """Similarities of fresh copies and of distinct images; the suggested threshold."""
    pairs = detector.distinct_pairs(tarshards.expand(cfg.shards), cfg.image_size, CHECK_IMAGES,
                                    cfg.seed + 1)
    positives, negatives = detector.similarity_check(model, pairs, torch.device(device))
    if len(positives) < 2:
        raise InputError("the pool has fewer than 2 readable images to check the detector on")
    return {"threshold": detector.suggest_threshold(positives, negatives),
            "check": {"images": len(positives),
                      "copy_similarity_median": round(float(np.median(positives)), 4),
                      "distinct_similarity_max": round(float(negatives.max()), 4)}}
