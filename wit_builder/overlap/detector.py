"""The project's copy detector, as CLIP's Appendix C describes its duplicate detector.

A torchvision ResNet (weights from scratch; no download) whose classifier is replaced by
a linear layer to a `dim`-d embedding, L2-normalized. It is trained with InfoNCE at a
fixed temperature of 0.07: in a batch of N pool images, each image's plain view must
pick its own augmented copy among the N augmented views (and the reverse). The copies
are what copying does to an image on the web: random crops, rescaling, aspect change,
small rotations, flips, colour jitter, grayscale and JPEG re-encoding.

The trained network is exported as TorchScript (a float tensor N×3×S×S, normalized with
`MEAN`/`STD`, in; N×dim unit vectors out) next to ``detector.json`` (input size, mean,
std, dimension, suggested threshold), so ``--method detector:DIR`` and
``--method torchscript:PATH`` share one code path (`methods.TorchScriptEmbedder`).
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from wit_builder import tarshards
from wit_builder.outputs import atomic_write
from wit_builder.overlap.calibrate import encode
from wit_builder.overlap.configs import IMAGENET_MEAN, IMAGENET_STD
from wit_builder.overlap.methods import decode, square_transform

TEMPERATURE = 0.07
MEAN, STD = IMAGENET_MEAN, IMAGENET_STD  # a usual choice for ResNets


class CopyDetector(nn.Module):
    """ResNet trunk → linear → L2-normalized embedding."""

    def __init__(self, arch: str = "resnet18", dim: int = 256) -> None:
        super().__init__()
        self.net = getattr(torchvision.models, arch)(weights=None)
        self.net.fc = nn.Linear(self.net.fc.in_features, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(images), dim=-1)


def plain_transform(size: int) -> v2.Compose:
    """How every image is seen at search time (`methods.square_transform`)."""
    return square_transform(size, MEAN, STD)


def copy_transform(size: int) -> v2.Compose:
    """A random web copy of an image (see module docstring), then as `plain_transform`."""
    return v2.Compose([
        v2.RandomResizedCrop((size, size), scale=(0.4, 1.0), ratio=(0.6, 1.67),
                             antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.RandomRotation(8)], p=0.3),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.05)], p=0.7),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([JpegCopy(25, 90)], p=0.5),
        v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])


class JpegCopy(nn.Module):
    """Re-encode a PIL image as JPEG at a random quality in [low, high] (Pillow's encoder:
    torchvision's own image codecs are deprecated)."""

    def __init__(self, low: int, high: int) -> None:
        super().__init__()
        self.low, self.high = low, high

    def forward(self, image: Image.Image) -> Image.Image:
        quality = int(torch.randint(self.low, self.high + 1, ()).item())
        return Image.open(io.BytesIO(encode(image, quality))).convert("RGB")


def info_nce(plain: torch.Tensor, copies: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE at `TEMPERATURE`: row i of `plain` matches row i of `copies`."""
    logits = plain @ copies.T / TEMPERATURE
    labels = torch.arange(len(plain), device=plain.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def pool_images(shards: list[str]) -> Iterator[Image.Image | None]:
    """Every pool sample's image in shard order, decoded to RGB (None: unreadable)."""
    for path in shards:
        for _, _, blob in tarshards.images(path):
            yield decode(blob) if blob is not None else None


class PairStream(torch.utils.data.IterableDataset):
    """Endless (plain view, copy view) pairs of the pool's images, shards cycled in a
    seeded order; DataLoader workers split the shards. An unreadable image yields None
    (counted by the caller)."""

    def __init__(self, shards: list[str], size: int, seed: int) -> None:
        self.shards, self.size, self.seed = shards, size, seed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor] | None]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        mine = self.shards[worker::workers] or self.shards
        rng = random.Random(self.seed * 1000 + worker)
        torch.manual_seed(self.seed * 1000 + worker)
        plain, copy = plain_transform(self.size), copy_transform(self.size)
        while True:
            seen = 0
            for image in pool_images(rng.sample(mine, len(mine))):
                seen += 1
                yield None if image is None else (plain(image), copy(image))
            if not seen:  # an empty pool: end the stream instead of spinning
                return


def distinct_pairs(shards: list[str], size: int, count: int, seed: int
                   ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(plain, copy) views of up to `count` distinct readable pool images (first ones in
    shard order), for the closing similarity check."""
    torch.manual_seed(seed)
    plain, copy = plain_transform(size), copy_transform(size)
    pairs = []
    for image in pool_images(shards):
        if image is not None:
            pairs.append((plain(image), copy(image)))
        if len(pairs) == count:
            break
    return pairs


def export(model: CopyDetector, size: int) -> torch.export.ExportedProgram:
    """The model in eval mode on the CPU as an exported program (`torch.export`) taking
    any batch of size×size images."""
    model = model.eval().cpu()
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    with torch.no_grad():
        return torch.export.export(model, (torch.zeros(2, 3, size, size),),
                                   dynamic_shapes={"images": {0: batch}})


def save(program: torch.export.ExportedProgram, path: Any) -> None:
    """Write an exported program (``model.pt2``) atomically."""
    atomic_write(Path(path), lambda tmp: torch.export.save(program, str(tmp)))


def suggest_threshold(positives: np.ndarray, negatives: np.ndarray) -> float:
    """A starting threshold: above 99% of the similarities between distinct images, but
    not above the median copy similarity. `wit overlap calibrate` measures the real one."""
    if len(negatives) == 0:
        return 0.9
    cut = float(np.quantile(negatives, 0.99))
    if len(positives):
        cut = min(cut, float(np.median(positives)))
    return round(min(max(cut, 0.0), 0.999), 3)


def similarity_check(model: nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]],
                     device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(cosine of each image with its copy, cosine of each image with every other)."""
    if len(pairs) < 2:
        return np.zeros(0), np.zeros(0)
    with torch.no_grad():
        plain = model(torch.stack([p for p, _ in pairs]).to(device)).float()
        copies = model(torch.stack([c for _, c in pairs]).to(device)).float()
    sims = (plain @ copies.T).cpu().numpy()
    off = ~np.eye(len(pairs), dtype=bool)
    pool = (plain @ plain.T).cpu().numpy()
    return np.diag(sims).copy(), pool[off]


def describe(arch: str, dim: int, size: int, threshold: float, **extra: Any) -> dict:
    """The ``detector.json`` that goes with an exported model."""
    return {"format": "wit-copy-detector/1", "arch": arch, "dim": dim, "input_size": size,
            "mean": list(MEAN), "std": list(STD), "threshold": threshold, **extra}
