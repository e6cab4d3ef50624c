"""The training data stream: batches in a reproducible order, resumable at any position.

`BatchStream` yields batches forever, epoch after epoch, and keeps the rank's
`DataPosition`: the epoch, the batches consumed in it, and each reader's position after
its last consumed batch (`readers.ReaderPosition`). A checkpoint stores it; a resumed
stream restarts every reader there (`data.TrainBatches`), so nothing consumed is decoded
again and the batches equal the uninterrupted run's. Without reader positions that fit
(a checkpoint from before they were saved, other `workers` or ranks than it was saved
with, or other data settings: `checkpoint.DATA_FIELDS`) the stream replays the epoch's
first batches and discards them instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from wit_builder import tarshards
from wit_builder.clip import readers
from wit_builder.clip.configs import TrainConfig
from wit_builder.clip.data import Batch, make_pipeline
from wit_builder.clip.readers import ReaderPosition
from wit_builder.clip.tokenizer import Tokenizer
from wit_builder.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class DataPosition:
    """Where a rank's stream stands (see module docstring). `roles` is the number of
    readers per rank, `last_role` the reader of the last consumed batch (-1: none)."""

    epoch: int = 0
    batches: int = 0
    roles: int = 1
    last_role: int = -1
    readers: dict[int, ReaderPosition] = field(default_factory=dict)

    def consumed(self, batch: Batch) -> None:
        """Account one batch taken from the stream."""
        self.batches += 1
        if batch.position is not None:
            self.readers[batch.position.role] = batch.position
            self.last_role = batch.position.role

    def snapshot(self) -> DataPosition:
        """A copy that later batches do not change."""
        return replace(self, readers=dict(self.readers))

    def state(self) -> dict[str, Any]:
        """The rank's part of a checkpoint (weights_only-loadable)."""
        return {"roles": self.roles, "last_role": self.last_role,
                "readers": [p.state() for _, p in sorted(self.readers.items())]}

    @classmethod
    def from_state(cls, epoch: int, batches: int, state: dict[str, Any]) -> DataPosition:
        """The inverse of `state`, at (`epoch`, `batches`)."""
        found = [ReaderPosition.from_state(s) for s in state["readers"]]
        return cls(epoch, batches, state["roles"], state["last_role"],
                   {p.role: p for p in found})


def data_start(cfg: TrainConfig, step: int, epoch: int, done: int,
               saved: dict[str, Any] | None) -> tuple[DataPosition, int]:
    """The position to start the data from and the batches to replay (decode and
    discard) to reach it, given a checkpoint's step, epoch, batches done and this rank's
    saved reader positions (None when it has none that fit).

    Resampled shards are an endless draw with replacement: replaying it to the saved
    position would decode every batch since step 0, and a fresh draw is statistically the
    same, so a resumed run starts a new draw seeded by its step (logged as its epoch).
    """
    roles = max(cfg.workers, 1)
    if cfg.resampled and step > 0:
        return DataPosition(step, 0, roles), 0
    if done == 0:
        return DataPosition(epoch, 0, roles), 0
    if saved is not None and saved["roles"] == roles:
        log.info("resuming epoch %d after %d batch(es) from %d reader position(s): nothing "
                 "consumed is decoded again", epoch, done, len(saved["readers"]))
        return DataPosition.from_state(epoch, done, saved), 0
    log.warning("the checkpoint's data positions do not fit this run (saved with other "
                "workers, ranks or data settings, or none saved): replaying %d batch(es) of "
                "epoch %d to reach it", done, epoch)
    return DataPosition(epoch, 0, roles), done


class BatchStream:
    """Training batches forever from `start` (see module docstring); `position` is
    where the stream stands after the batches taken so far."""

    def __init__(self, cfg: TrainConfig, image_size: int, tokenizer: Tokenizer,
                 start: DataPosition, replay: int = 0) -> None:
        self.cfg, self.tokenizer, self.position = cfg, tokenizer, start
        self.urls, self.image_size = tarshards.expand(cfg.shards), image_size
        self._batches = self.run(replay)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        return next(self._batches)

    def close(self) -> None:
        """Stop the stream now (its DataLoader workers with it)."""
        self._batches.close()

    def run(self, replay: int) -> Iterator[Batch]:
        """Epoch after epoch from `position`, the first `replay` batches discarded."""
        while True:
            for batch in self.loader():
                self.position.consumed(batch)
                if replay:
                    replay -= 1
                    continue
                yield batch
            if self.position.batches == 0:
                raise InputError(f"no usable sample in {self.cfg.shards}")
            self.position = DataPosition(self.position.epoch + 1, 0, self.position.roles)

    def loader(self) -> torch.utils.data.DataLoader:
        """The DataLoader of the rest of the current epoch."""
        cfg, position = self.cfg, self.position
        pipe = make_pipeline(self.urls, cfg.batch_size, self.image_size, self.tokenizer,
                             resampled=cfg.resampled, seed=cfg.seed, epoch=position.epoch,
                             shuffle_buffer=cfg.shuffle_buffer,
                             first=(position.last_role + 1) % position.roles,
                             positions=position.readers)
        seed = readers.epoch_seed(cfg.seed, position.epoch)
        return torch.utils.data.DataLoader(pipe, batch_size=None, num_workers=cfg.workers,
                                           generator=torch.Generator().manual_seed(seed))


def next_micro_batches(stream: BatchStream, n: int
                       ) -> tuple[list[Batch], DataPosition, float]:
    """`n` batches, the data position after them, and the seconds spent waiting."""
    started = time.perf_counter()
    micro = [next(stream) for _ in range(n)]
    return micro, stream.position.snapshot(), time.perf_counter() - started
