"""Training data: webdataset tar shards → batches of (images, token ids).

A shard holds samples (`tarshards`: an image, ``{key}.txt``, optional ``.json``), as
written by img2dataset and `wit shards`; shards are listed by `tarshards.expand`. Without
``resampled`` every rank and DataLoader worker reads a disjoint subset of the shards
(split by node, then by worker) in a seeded, epoch-dependent order, and every batch
carries its reader's position so that training can resume there (`TrainBatches`,
`readers`); with ``resampled`` each worker draws shards with replacement forever (the
usual choice for multi-node runs with unequal shard counts).

Broken data never stops training: a sample whose image cannot be decoded, or that has no
image or no caption, and a tar member that cannot be read, are skipped and counted by
reason. Each batch carries the counts of its worker since its previous batch, so the
trainer can log them (`Batch.skipped`).
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import webdataset as wds
from PIL import Image
from torchvision import transforms

from wit_builder import tarshards
from wit_builder.clip import readers
from wit_builder.clip.readers import Reader, ReaderPosition

# CLIP's image normalization (mean/std of its training images, per RGB channel).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class Batch:
    """Images (n, 3, H, W), token ids (n, context), samples skipped before it, and (in
    training without ``resampled``) its reader's position after it."""

    images: torch.Tensor
    tokens: torch.Tensor
    skipped: dict[str, int] = field(default_factory=dict)
    position: ReaderPosition | None = None


def train_transform(image_size: int) -> Callable[[Image.Image], torch.Tensor]:
    """Random square crop (90–100% of the area, as CLIP's "random square crop"), resize,
    CLIP normalization."""
    return transforms.Compose([
        transforms.RandomResizedCrop(image_size, scale=(0.9, 1.0),
                                     interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.ToTensor(), transforms.Normalize(CLIP_MEAN, CLIP_STD)])


def eval_transform(image_size: int) -> Callable[[Image.Image], torch.Tensor]:
    """Resize the short side, center crop, CLIP normalization."""
    return transforms.Compose([
        transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(image_size), transforms.ToTensor(),
        transforms.Normalize(CLIP_MEAN, CLIP_STD)])


class Skips:
    """Per-worker skip counter; `take()` returns the counts since the last call."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def tar_error(self, exn: Exception) -> bool:
        """webdataset handler: count an unreadable shard/member and continue."""
        self.counts[f"tar_{type(exn).__name__}"] += 1
        return True

    def take(self) -> dict[str, int]:
        out, self.counts = dict(self.counts), Counter()
        return out


def decode_sample(sample: dict, transform: Callable, skips: Skips
                  ) -> tuple[torch.Tensor, str] | None:
    """(image tensor, caption) of a raw sample, or None (counted) if it is unusable."""
    image = tarshards.image_of(sample)
    if image is None:
        skips.counts["no_image"] += 1
        return None
    if "txt" not in sample:
        skips.counts["no_caption"] += 1
        return None
    try:
        with Image.open(io.BytesIO(image)) as img:
            image = transform(img.convert("RGB"))
        caption = sample["txt"].decode("utf-8")
    except (OSError, ValueError, Image.DecompressionBombError):
        skips.counts["undecodable"] += 1
        return None
    return image, caption


def batches(samples: Iterable[dict], batch_size: int, transform: Callable,
            tokenizer: Callable[[list[str]], torch.Tensor], skips: Skips,
            partial: bool) -> Iterator[Batch]:
    """Decode, skip and group samples into `Batch`es (the last partial one if `partial`)."""
    images: list[torch.Tensor] = []
    captions: list[str] = []
    for sample in samples:
        decoded = decode_sample(sample, transform, skips)
        if decoded is None:
            continue
        images.append(decoded[0])
        captions.append(decoded[1])
        if len(images) == batch_size:
            yield Batch(torch.stack(images), tokenizer(captions), skips.take())
            images, captions = [], []
    if images and partial:
        yield Batch(torch.stack(images), tokenizer(captions), skips.take())


class TrainBatches(torch.utils.data.IterableDataset):
    """A rank's training batches of one epoch without ``resampled``: each DataLoader
    worker (or the process itself) runs one reader (`readers.Reader`) and tags every batch
    with the reader's position after it.

    Resuming, `positions` holds each reader's position after its last consumed batch (a
    reader without one starts afresh) and `first` the role whose batch was due next:
    worker i then plays role ``roles_from(first, workers)[i]``, so the loader's turns
    continue where they stopped.
    """

    def __init__(self, urls: Sequence[str], batch_size: int, transform: Callable,
                 tokenizer: Callable[[list[str]], torch.Tensor], *, seed: int, epoch: int,
                 shuffle_buffer: int, first: int = 0,
                 positions: Mapping[int, ReaderPosition] | None = None) -> None:
        super().__init__()
        self.urls, self.batch_size, self.transform = list(urls), batch_size, transform
        self.tokenizer, self.seed, self.epoch = tokenizer, seed, epoch
        self.bufsize, self.initial = shuffle_buffer, readers.SHUFFLE_INITIAL
        self.first, self.positions = first, dict(positions or {})

    def reader(self, skips: Skips) -> Reader:
        """This process's reader: its role's shards, from its position if it has one."""
        rank, world, worker, workers = wds.utils.pytorch_worker_info()
        role = readers.roles_from(self.first, workers)[worker]
        shards = readers.reader_shards(self.urls, self.seed, self.epoch, rank, world, role,
                                       workers)
        if role in self.positions:
            reader = Reader.resume(shards, self.positions[role], self.bufsize, self.initial,
                                   skips.tar_error)
            skips.take()  # shards read again to refill: their errors were counted before
            return reader
        seed = readers.crop_seed(readers.epoch_seed(self.seed, self.epoch),
                                 rank * workers + role)
        return Reader.start(shards, role, self.bufsize, self.initial,
                            readers.shuffle_seed(self.seed, self.epoch), seed, skips.tar_error)

    def __iter__(self) -> Iterator[Batch]:
        skips = Skips()
        reader = self.reader(skips)
        for batch in batches(reader.samples(), self.batch_size,
                             reader.crops.wrap(self.transform), self.tokenizer, skips,
                             partial=False):
            batch.position = reader.position()
            yield batch


def make_pipeline(shards: str | Sequence[str], batch_size: int, image_size: int,
                  tokenizer: Callable[[list[str]], torch.Tensor], *, train: bool = True,
                  resampled: bool = False, seed: int = 0, epoch: int = 0,
                  shuffle_buffer: int = 1000, first: int = 0,
                  positions: Mapping[int, ReaderPosition] | None = None
                  ) -> torch.utils.data.IterableDataset:
    """The iterable of `Batch`es for this rank and worker (see module docstring);
    `first` and `positions` resume training without ``resampled`` (`TrainBatches`)."""
    urls = tarshards.expand(shards)
    transform = train_transform(image_size) if train else eval_transform(image_size)
    if train and not resampled:
        return TrainBatches(urls, batch_size, transform, tokenizer, seed=seed, epoch=epoch,
                            shuffle_buffer=shuffle_buffer, first=first, positions=positions)
    skips = Skips()
    if resampled:
        transform = readers.worker_crops(transform, readers.epoch_seed(seed, epoch))
        stages: list = [wds.ResampledShards(urls, seed=seed + epoch, deterministic=True)]
    else:
        stages = [wds.SimpleShardList(urls), wds.split_by_node, wds.split_by_worker]
    stages.append(wds.tarfile_to_samples(handler=skips.tar_error))
    if train:
        stages.append(wds.detshuffle(shuffle_buffer, initial=readers.SHUFFLE_INITIAL,
                                     seed=seed, epoch=epoch))
    stages.append(lambda src: batches(src, batch_size, transform, tokenizer, skips,
                                      partial=not train))
    return wds.DataPipeline(*stages)
