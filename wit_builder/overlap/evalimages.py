"""The evaluation images a pool is checked against, with ids a user can find them by.

Sets are named as for `wit eval` (``digits``, ``cifar10:DIR``, ``cifar100:DIR``,
``imagefolder:DIR``). ``eval_id`` is the image's own name: its path relative to an
ImageFolder root, else ``split/index``. Unreadable images are returned as None (counted).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from wit_builder.clip.evalsets import EvalSet, ImageSplit, load_eval_set
from wit_builder.errors import InputError


@dataclass(frozen=True)
class EvalImage:
    """One evaluation image (None when it cannot be decoded)."""

    eval_set: str
    split: str
    index: int
    eval_id: str
    image: Image.Image | None


def splits_of(spec: str, split: str, evalset: EvalSet | None = None
              ) -> list[tuple[str, ImageSplit]]:
    """The (name, split) pairs of an eval set to check: test, train or both (`evalset`:
    the set already loaded, if it is)."""
    evalset = evalset or load_eval_set(spec)
    chosen = [("test", evalset.test)] if split in ("test", "both") else []
    if split in ("train", "both"):
        if evalset.train is None:
            raise InputError(f"eval set {spec!r} has no train split")
        chosen.append(("train", evalset.train))
    return chosen


def image_id(spec: str, split: ImageSplit, split_name: str, index: int) -> str:
    """The eval image's own name (see module docstring)."""
    described = split.describe(index)
    kind, _, root = spec.partition(":")
    if kind == "imagefolder" and root:
        try:
            return str(Path(described).relative_to(Path(root).absolute()))
        except ValueError:
            return str(Path(described).relative_to(Path(root)))
    return f"{split_name}/{index}"


def eval_images(spec: str, split: str) -> Iterator[EvalImage]:
    """Every image of the chosen splits, in index order."""
    name = set_name(spec)
    for split_name, images in splits_of(spec, split):
        for i in range(len(images)):
            try:
                image = images.load(i).convert("RGB")
            except (OSError, ValueError, Image.DecompressionBombError):
                image = None
            yield EvalImage(name, split_name, i, image_id(spec, images, split_name, i), image)


def set_name(spec: str) -> str:
    """A short name for an eval spec: ``digits``, ``cifar10``, or the folder's name."""
    kind, _, arg = spec.partition(":")
    return Path(arg).name if kind == "imagefolder" and arg else kind
