"""Training samples in an order a checkpoint can resume without decoding what it consumed.

Without ``resampled``, each epoch's shard list is shuffled (seeded by the epoch), split by
rank, then among the rank's *readers*: one per DataLoader worker, or one in process. A
reader streams its shards' samples through a shuffle buffer (webdataset's algorithm, same
picks for the same seed) and crops them with its own generator (`CropRng`).

After every batch a reader states where it is (`ReaderPosition`): how far it has read
(shard, samples into it), which samples sit in its shuffle buffer (by shard and ordinal,
not by content), and the states of its shuffle and crop generators. Resumed from one
(`Reader.resume`), a reader never opens a shard before the first one its buffer drew
from, reads the shards it must revisit without decoding them, and then produces exactly
the batches the uninterrupted reader would have (bit-identical).

Readers are *roles*, not DataLoader worker ids: the loader takes batches from its workers
in turn, so a resumed loader is rotated (`roles_from`) to begin with the role whose turn
was next.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

import torch
import webdataset as wds

from wit_builder.errors import InputError

T = TypeVar("T")
Tag = tuple[int, int]  # (shard index in the reader's list, sample ordinal in that shard)
Handler = Callable[[Exception], bool]
_END = object()
SEED_STRIDE = 1 << 32  # crop seeds of different readers never meet (epoch seeds < 2**32)
SHUFFLE_INITIAL = 100  # samples buffered before the first pick (at most the buffer size)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's crops (and of its DataLoader)."""
    return seed * 1_000_003 + epoch


def shuffle_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's shard and sample shuffles: webdataset's ``detshuffle``
    counts epochs from -1, so orders equal those of its pipelines."""
    return seed + epoch + 1


def crop_seed(epoch_seed: int, reader: int) -> int:
    """The crop seed of reader number `reader` of the run (rank × readers + role)."""
    return epoch_seed + SEED_STRIDE * reader


class ShuffleBuffer:
    """webdataset's buffered shuffle with its state in the open: `buffer` (what is held,
    in order) and `rng`. Given the same state and the same items after it, it makes the
    same picks, so a reader can stop after any pick and be restored."""

    def __init__(self, size: int, initial: int, rng: random.Random,
                 buffer: list | None = None) -> None:
        self.size, self.initial, self.rng = size, min(initial, size), rng
        self.buffer: list = buffer if buffer is not None else []

    def run(self, items: Iterator[T]) -> Iterator[T]:
        """Shuffled `items`: fill up to `size` (two per pick while filling), start picking
        at `initial`, drain at the end."""
        for item in items:
            self.buffer.append(item)
            if len(self.buffer) < self.size:
                more = next(items, _END)
                if more is not _END:
                    self.buffer.append(more)
            if len(self.buffer) >= self.initial:
                yield self.pick()
        while self.buffer:
            yield self.pick()

    def pick(self) -> Any:
        """Take a random item; the last one fills its place."""
        k = self.rng.randint(0, len(self.buffer) - 1)
        item, self.buffer[k] = self.buffer[k], self.buffer[-1]
        self.buffer.pop()
        return item


def epoch_shards(urls: Sequence[str], seed: int, epoch: int) -> list[str]:
    """All shards in the epoch's seeded order (the same for every rank and reader)."""
    rng = random.Random(shuffle_seed(seed, epoch))
    return list(ShuffleBuffer(len(urls), len(urls), rng).run(iter(urls)))


def reader_shards(urls: Sequence[str], seed: int, epoch: int, rank: int, world: int,
                  role: int, roles: int) -> list[str]:
    """The shards of one reader: the epoch's order, every `world`-th from `rank`, then
    every `roles`-th of those from `role`."""
    return epoch_shards(urls, seed, epoch)[rank::world][role::roles]


def roles_from(first: int, roles: int) -> list[int]:
    """Reader roles in turn order starting with `first`: DataLoader worker i plays
    role ``roles_from(first, n)[i]``."""
    return [(first + i) % roles for i in range(roles)]


class CropRng:
    """A reader's own torch generator for random crops (torchvision draws from torch's
    global one): swapped in around each crop, so crops depend only on the reader's
    samples, in process or in a worker, and the training RNG is untouched."""

    def __init__(self, seed: int | None = None, state: torch.Tensor | None = None) -> None:
        self.state = state if state is not None else \
            torch.Generator().manual_seed(seed or 0).get_state()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make this generator torch's global one for the block."""
        outer = torch.get_rng_state()
        torch.set_rng_state(self.state)
        try:
            yield
        finally:
            self.state = torch.get_rng_state()
            torch.set_rng_state(outer)

    def wrap(self, transform: Callable[[Any], T]) -> Callable[[Any], T]:
        """`transform` drawing from this generator."""
        def cropped(image: Any) -> T:
            with self.active():
                return transform(image)
        return cropped


def worker_crops(transform: Callable[[Any], T], epoch_seed: int) -> Callable[[Any], T]:
    """`transform` drawing from the crop generator of the worker that calls it, seeded at
    its first call like a reader's (for pipelines without `Reader`s: ``resampled``)."""
    wrapped: list[Callable[[Any], T]] = []

    def cropped(image: Any) -> T:
        if not wrapped:
            rank, _, worker, workers = wds.utils.pytorch_worker_info()
            wrapped.append(CropRng(crop_seed(epoch_seed, rank * workers + worker)
                                   ).wrap(transform))
        return wrapped[0](image)
    return cropped


@dataclass(frozen=True)
class ReaderPosition:
    """Where one reader stands after a batch (see module docstring)."""

    role: int
    shard: int            # index of the shard last read from
    member: int           # samples read from it
    ended: bool           # every shard read to its end
    buffer: list[Tag]     # the shuffle buffer, in order
    shuffle: tuple        # random.Random state
    crop: torch.Tensor    # CropRng state

    def state(self) -> dict[str, Any]:
        """This position as checkpoint data (tensors, numbers, tuples: weights_only)."""
        return {"role": self.role, "shard": self.shard, "member": self.member,
                "ended": self.ended, "crop": self.crop, "shuffle": self.shuffle,
                "buffer": torch.tensor(self.buffer, dtype=torch.int64).reshape(-1, 2)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ReaderPosition:
        """The inverse of `state`."""
        version, internal, gauss = state["shuffle"]
        buffer = [(int(s), int(m)) for s, m in state["buffer"].tolist()]
        return cls(state["role"], state["shard"], state["member"], state["ended"], buffer,
                   (version, tuple(internal), gauss), state["crop"])


def shard_samples(url: str, handler: Handler) -> Iterator[dict]:
    """The samples of one shard (tar errors go to `handler`)."""
    return wds.tarfile_samples(iter([{"url": url}]), handler=handler)


class Reader:
    """One reader's sample stream (see module docstring): `samples()` yields shuffled
    samples, `position()` says where it stands after the last one yielded."""

    def __init__(self, shards: Sequence[str], role: int, shuffle: ShuffleBuffer,
                 crops: CropRng, handler: Handler) -> None:
        self.shards, self.role, self.shuffle, self.crops = shards, role, shuffle, crops
        self.handler = handler
        self.read_to: Tag = (0, 0)
        self.ended = False
        self.raw: Iterator[tuple[Tag, dict]] = iter(())

    @classmethod
    def start(cls, shards: Sequence[str], role: int, bufsize: int, initial: int,
              shuffle_seed: int, crop_seed: int, handler: Handler) -> Reader:
        """A reader at the start of its shards."""
        reader = cls(shards, role, ShuffleBuffer(bufsize, initial, random.Random(shuffle_seed)),
                     CropRng(crop_seed), handler)
        reader.raw = reader.tagged(0)
        return reader

    @classmethod
    def resume(cls, shards: Sequence[str], position: ReaderPosition, bufsize: int,
               initial: int, handler: Handler) -> Reader:
        """A reader restored to `position`: its buffer refilled from the shards (read,
        not decoded), its generators set, reading on where it stopped."""
        rng = random.Random()
        rng.setstate(position.shuffle)
        reader = cls(shards, position.role, ShuffleBuffer(bufsize, initial, rng),
                     CropRng(state=position.crop), handler)
        reader.shuffle.buffer = reader.refill(position)
        return reader

    def tagged(self, first: int) -> Iterator[tuple[Tag, dict]]:
        """(tag, sample) from shard `first` on, noting how far it has read."""
        for index in range(first, len(self.shards)):
            for ordinal, sample in enumerate(shard_samples(self.shards[index], self.handler)):
                self.read_to = (index, ordinal + 1)
                yield (index, ordinal), sample
        self.ended = True

    def refill(self, position: ReaderPosition) -> list[tuple[Tag, dict]]:
        """The buffered samples of `position`, found by reading (not decoding) only the
        shards they are in; leaves `raw` just after the last sample read before."""
        if position.shard >= len(self.shards):
            raise InputError(f"the shards changed since the checkpoint: reader "
                             f"{position.role} had read {position.shard + 1} shard(s), it "
                             f"now has {len(self.shards)} (resume with the same shards)")
        wanted: dict[Tag, dict | None] = dict.fromkeys(position.buffer)
        for index in sorted({shard for shard, _ in wanted if shard < position.shard}):
            self.collect(shard_samples(self.shards[index], self.handler), index, wanted)
        if position.ended:  # nothing is left to read: only buffered samples to find
            self.collect(shard_samples(self.shards[position.shard], self.handler),
                         position.shard, wanted)
        else:
            self.raw = self.tagged(position.shard)
            for tag, sample in islice(self.raw, position.member):
                if tag in wanted:
                    wanted[tag] = sample
        self.read_to, self.ended = (position.shard, position.member), position.ended
        missing = [tag for tag, sample in wanted.items() if sample is None]
        if missing:
            shard, ordinal = missing[0]
            raise InputError(f"the shards changed since the checkpoint: sample {ordinal} of "
                             f"{self.shards[shard]} is gone (resume with the same shards)")
        return [(tag, wanted[tag]) for tag in position.buffer]

    @staticmethod
    def collect(samples: Iterator[dict], index: int, wanted: dict[Tag, dict | None]) -> None:
        """Fill `wanted`'s entries of shard `index` from its `samples`, reading no
        further than the last one wanted."""
        ordinals = [m for s, m in wanted if s == index]
        for ordinal, sample in enumerate(islice(samples, max(ordinals, default=-1) + 1)):
            if (index, ordinal) in wanted:
                wanted[index, ordinal] = sample

    def samples(self) -> Iterator[dict]:
        """The shuffled samples from here on."""
        for _, sample in self.shuffle.run(self.raw):
            yield sample

    def position(self) -> ReaderPosition:
        """Where this reader stands after the last sample `samples` yielded."""
        return ReaderPosition(self.role, *self.read_to, self.ended,
                              [tag for tag, _ in self.shuffle.buffer],
                              self.shuffle.rng.getstate(), self.crops.state.clone())
