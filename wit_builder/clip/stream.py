"""The training data stream: batches in a reproducible order, resumable at any position.

`batch_stream` yields (epoch, index in epoch, batch) forever, epoch after epoch; a resumed
run skips the batches its checkpoint had consumed (`data_start`), and with in-process
loading (``workers=0``) random crops come from a private generator (`DataRng`), so the
skipped batches do not shift the training RNG.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch

from wit_builder.clip.configs import TrainConfig
from wit_builder.clip.data import Batch, make_pipeline
from wit_builder.clip.tokenizer import Tokenizer
from wit_builder.errors import InputError


class DataRng:
    """A private torch RNG for in-process data loading (``workers=0``): random crops then
    do not consume the training RNG, so skipping batches on resume replays them exactly."""

    def __init__(self, seed: int) -> None:
        self.state = torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Swap this generator's state in as torch's global RNG for the block."""
        outer = torch.get_rng_state()
        torch.set_rng_state(self.state)
        try:
            yield
        finally:
            self.state = torch.get_rng_state()
            torch.set_rng_state(outer)


def epoch_seed(cfg: TrainConfig, epoch: int) -> int:
    """The seed of one epoch's shard order, shuffle and crops."""
    return cfg.seed * 1_000_003 + epoch


def batch_stream(cfg: TrainConfig, image_size: int, tokenizer: Tokenizer, epoch: int,
                 skip: int) -> Iterator[tuple[int, int, Batch]]:
    """(epoch, index in epoch, batch) forever, starting after `skip` batches of `epoch`."""
    while True:
        pipe = make_pipeline(cfg.shards, cfg.batch_size, image_size, tokenizer, train=True,
                             resampled=cfg.resampled, seed=cfg.seed, epoch=epoch,
                             shuffle_buffer=cfg.shuffle_buffer)
        loader = torch.utils.data.DataLoader(
            pipe, batch_size=None, num_workers=cfg.workers,
            generator=torch.Generator().manual_seed(epoch_seed(cfg, epoch)))
        rng, index, batches = DataRng(epoch_seed(cfg, epoch)), 0, iter(loader)
        while True:
            with rng.active():
                batch = next(batches, None)
            if batch is None:
                break
            if index >= skip:
                yield epoch, index, batch
            index += 1
        if index == 0:
            raise InputError(f"no usable sample in {cfg.shards}")
        epoch, skip = epoch + 1, 0


def data_start(cfg: TrainConfig, step: int, epoch: int, done: int) -> tuple[int, int]:
    """(epoch, batches to skip) to start the data from, given the checkpoint's position.

    Resampled shards are an endless draw with replacement: replaying it to the saved
    position would decode every batch since step 0, and a fresh draw is statistically the
    same, so a resumed run starts a new draw seeded by its step (logged as its epoch).
    """
    if cfg.resampled and step > 0:
        return step, 0
    return epoch, done


def next_micro_batches(stream: Iterator[tuple[int, int, Batch]], n: int
                       ) -> tuple[list[Batch], tuple[int, int], float]:
    """`n` batches, the data position after them, and the seconds spent waiting."""
    started, micro = time.perf_counter(), []
    for _ in range(n):
        epoch, index, batch = next(stream)
        micro.append(batch)
    return micro, (epoch, index + 1), time.perf_counter() - started
