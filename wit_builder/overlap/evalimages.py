"""The evaluation images a pool is checked against, with ids a user can find them by.

Sets are named as for `wit eval` (``digits``, ``cifar10:DIR``, ``cifar100:DIR``,
``imagefolder:DIR``), plus ``wds:PATTERN``: webdataset shards holding one split (called
``test``), unlabelled, so the report gives no zero-shot accuracy for them. ``eval_id`` is
the image's own name: its path relative to an ImageFolder root, its sample key in eval
shards, else ``split/index``. Unreadable images are returned as None (counted).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from wit_builder import tarshards
from wit_builder.clip.evalsets import EvalSet, ImageSplit, load_eval_set
from wit_builder.errors import InputError
from wit_builder.inputs import fingerprint


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
    evalset = evalset or load_set(spec)
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
    if kind == "wds":
        return described
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
    """A short name for an eval spec: ``digits``, ``cifar10``, the folder's name, or for
    shards the name of the first shard's folder."""
    kind, _, arg = spec.partition(":")
    if kind == "wds":
        return Path(arg.split("::")[0]).parent.name or "wds"
    return Path(arg).name if kind == "imagefolder" and arg else kind


def load_set(spec: str) -> EvalSet:
    """The eval set of a spec, ``wds:PATTERN`` included."""
    kind, _, arg = spec.partition(":")
    return wds_set(arg) if kind == "wds" else load_eval_set(spec)


def check_specs(specs: list[str]) -> None:
    """`InputError` for an eval set whose folder or shards are not there (checked before
    any work; the sets themselves are read later)."""
    for spec in specs:
        kind, _, arg = spec.partition(":")
        if kind == "wds":
            tarshards.expand(arg)
        elif arg and not Path(arg).is_dir():
            raise InputError(f"eval set {spec!r}: {arg} is not a directory")


def wds_set(pattern: str) -> EvalSet:
    """Eval shards as an unlabelled one-split set; images are read by offset on demand."""
    members: list[tuple[str, str, int, int]] = []  # (shard, key, data offset, size)
    for path in tarshards.expand(pattern):
        members += shard_images(path)
    if not members:
        raise InputError(f"eval shards {pattern!r} hold no images")

    def load(i: int) -> Image.Image:
        path, _, offset, size = members[i]
        with open(path, "rb") as f:
            f.seek(offset)
            return Image.open(io.BytesIO(f.read(size)))

    split = ImageSplit(load, [0] * len(members), describe=lambda i: members[i][1])
    return EvalSet(set_name(f"wds:{pattern}"), [], [], test=split)


def shard_images(path: str) -> list[tuple[str, str, int, int]]:
    """(shard, key, data offset, size) of the image member of each sample."""
    out = []
    try:
        for key, members, _ in tarshards.samples(path):
            image = tarshards.image_of(members)
            if image is not None:
                out.append((path, key, image.offset_data, image.size))
    except (tarfile.TarError, OSError) as e:
        raise InputError(f"eval shard {path} is not a readable tar: {e}") from None
    return out


def spec_files(spec: str) -> list[str]:
    """The files an eval spec reads (none for a set built into a package): every file
    under its folder, or its shards."""
    kind, _, arg = spec.partition(":")
    if kind == "wds":
        return tarshards.expand(arg)
    if not arg:
        return []
    return sorted(os.path.join(root, name)
                  for root, _, names in os.walk(arg) for name in names)


def sets_fingerprint(specs: list[str]) -> str:
    """A digest of the eval sets' files (path, size, mtime) and, for a built-in set, the
    package version: it changes when an image is added, removed or replaced, so a report
    never pairs an overlap run's eval indices with a different set."""
    from importlib.metadata import version

    parts = [(spec, fingerprint(spec_files(spec)) if ":" in spec
              else version("scikit-learn")) for spec in specs]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]
