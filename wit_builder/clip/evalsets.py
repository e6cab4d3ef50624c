"""Evaluation sets for `wit eval`: class names, prompt templates, train/test image splits.

A set is named by a spec string:

* ``digits`` — scikit-learn's handwritten digits (1,797 real 8×8 scans, shipped in the
  package, so it works offline), split 75/25 stratified with a fixed seed (`DIGITS_SPLIT`);
* ``cifar10:DIR`` / ``cifar100:DIR`` — the CIFAR "python version" pickles as distributed
  (``data_batch_1..5`` + ``test_batch`` + ``batches.meta``; ``train`` + ``test`` + ``meta``);
* ``imagefolder:DIR`` — ``DIR/<class>/<image>``; if ``DIR`` has ``train/`` and ``test/``
  (or ``val/``) subfolders they are the splits, else all of ``DIR`` is the test split.
  Class names are folder names with ``_`` read as spaces.

Templates: the 80 ImageNet prompts of the CLIP paper (read from open_clip's package
metadata, not retyped) unless the set has its own or ``--templates FILE`` is given.
"""

from __future__ import annotations

import copy
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from wit_builder.errors import InputError

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TEMPLATES = ("a photo of the number {}.", "a photo of the digit {}.",
                   "a handwritten {}.", "the number {}.")
DIGITS_SPLIT = {"test_size": 0.25, "random_state": 0}


def imagenet_templates() -> list[str]:
    """The CLIP paper's 80 ImageNet prompt templates, as ``str.format`` patterns."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return [template("{}") for template in OPENAI_IMAGENET_TEMPLATES]


class ImageSplit:
    """Labelled images, each opened on demand; `transform` maps a PIL image to a tensor.

    An image file that cannot be decoded yields (None, index); the consumer counts it as
    unreadable (see `evaluate.image_features`), never silently dropping it.
    """

    def __init__(self, load: Callable[[int], Image.Image], labels: Sequence[int],
                 describe: Callable[[int], str] = str) -> None:
        self.load, self.labels, self.describe = load, np.asarray(labels), describe
        self.transform: Callable[[Image.Image], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def with_transform(self, transform: Callable[[Image.Image], torch.Tensor]
                       ) -> ImageSplit:
        """A view of the same images with `transform` (the caller's split is unchanged)."""
        view = copy.copy(self)
        view.transform = transform
        return view

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | tuple[None, int]:
        try:
            image = self.load(index).convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            return None, index
        tensor = self.transform(image) if self.transform else image
        return tensor, int(self.labels[index])


@dataclass
class EvalSet:
    """A classification set: names, templates, and its splits (train may be absent)."""

    name: str
    classnames: list[str]
    templates: list[str]
    test: ImageSplit
    train: ImageSplit | None = None


def array_split(pixels: np.ndarray, labels: np.ndarray) -> ImageSplit:
    """A split over in-memory uint8 images (N, H, W) or (N, H, W, 3)."""
    return ImageSplit(lambda i: Image.fromarray(pixels[i]), labels)


def load_digits_set() -> EvalSet:
    """scikit-learn digits, 8×8 scans scaled to 0–255, fixed stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pixels = (digits.images * 255 / 16).round().astype(np.uint8)
    train_x, test_x, train_y, test_y = train_test_split(
        pixels, digits.target, stratify=digits.target, **DIGITS_SPLIT)
    return EvalSet("digits", list(DIGIT_NAMES), list(DIGIT_TEMPLATES),
                   test=array_split(test_x, test_y), train=array_split(train_x, train_y))


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"CIFAR file missing: {path}")
    with path.open("rb") as f:
        try:
            return pickle.load(f, encoding="bytes")
        except (pickle.UnpicklingError, EOFError, ValueError) as e:
            raise InputError(f"not a CIFAR pickle: {path} ({e})") from None


def _cifar_split(files: list[Path], label_key: bytes) -> ImageSplit:
    """CIFAR rows are 3072 bytes: the red, green and blue 32×32 planes."""
    data, labels = [], []
    for path in files:
        batch = _unpickle(path)
        if b"data" not in batch or label_key not in batch:
            raise InputError(f"{path} lacks {label_key.decode()!r}/'data' (wrong CIFAR kind?)")
        data.append(np.asarray(batch[b"data"], dtype=np.uint8))
        labels += list(batch[label_key])
    pixels = np.concatenate(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return array_split(np.ascontiguousarray(pixels), np.asarray(labels))


def load_cifar(directory: Path, classes: int) -> EvalSet:
    """CIFAR-10 or CIFAR-100 from the python pickles in `directory`."""
    if classes == 10:
        names = _unpickle(directory / "batches.meta")[b"label_names"]
        train_files = [directory / f"data_batch_{i}" for i in range(1, 6)]
        test_files, key = [directory / "test_batch"], b"labels"
    else:
        names = _unpickle(directory / "meta")[b"fine_label_names"]
        train_files, test_files, key = [directory / "train"], [directory / "test"], b"fine_labels"
    classnames = [n.decode().replace("_", " ") for n in names]
    return EvalSet(f"cifar{classes}", classnames, imagenet_templates(),
                   test=_cifar_split(test_files, key), train=_cifar_split(train_files, key))


def image_files(folder: Path) -> list[Path]:
    """The images under `folder`, each file once: symlinked folders are not followed (a
    link loop would list images again and again), and two paths to one file count once."""
    found: dict[str, Path] = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found.setdefault(os.path.realpath(path), path)
    return sorted(found.values())


def _folder_split(directory: Path, folders: list[str]) -> ImageSplit:
    """Images of `directory/<folder>/…`, labelled by the folder's position in `folders`."""
    paths, labels = [], []
    for label, name in enumerate(folders):
        files = image_files(directory / name) if (directory / name).is_dir() else []
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise InputError(f"no images under {directory} (expected {directory}/<class>/<image>)")
    return ImageSplit(lambda i: Image.open(paths[i]), labels, lambda i: str(paths[i]))


def _class_folders(directory: Path) -> list[str]:
    """The class folders' names, as they are on disk."""
    names = sorted(p.name for p in directory.iterdir() if p.is_dir())
    if not names:
        raise InputError(f"no class folders in {directory}")
    return names


def class_name(folder: str) -> str:
    """The class name a folder stands for (``sea_lion`` and ``sea lion`` → "sea lion")."""
    return folder.replace("_", " ")


def load_imagefolder(directory: Path) -> EvalSet:
    """``DIR/<class>/*`` (test only) or ``DIR/{train,test|val}/<class>/*``."""
    if not directory.is_dir():
        raise InputError(f"not a directory: {directory}")
    test_dir = next((directory / d for d in ("test", "val") if (directory / d).is_dir()), None)
    if test_dir is not None and (directory / "train").is_dir():
        folders = _class_folders(directory / "train")
        return EvalSet(directory.name, [class_name(f) for f in folders], imagenet_templates(),
                       test=_folder_split(test_dir, folders),
                       train=_folder_split(directory / "train", folders))
    folders = _class_folders(directory)
    return EvalSet(directory.name, [class_name(f) for f in folders], imagenet_templates(),
                   test=_folder_split(directory, folders))


# The set kinds `load_eval_set` reads (``digits`` takes no argument, the others a folder).
EVAL_SET_KINDS = ("digits", "cifar10", "cifar100", "imagefolder")


def load_eval_set(spec: str, templates_file: Path | None = None) -> EvalSet:
    """The set a spec names (see module docstring); `templates_file` overrides templates."""
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        out = load_digits_set()
    elif kind in ("cifar10", "cifar100") and arg:
        out = load_cifar(Path(arg), int(kind[5:]))
    elif kind == "imagefolder" and arg:
        out = load_imagefolder(Path(arg))
    else:
        raise InputError(f"unknown eval set {spec!r}: use digits, cifar10:DIR, "
                         "cifar100:DIR or imagefolder:DIR")
    if templates_file is not None:
        out.templates = read_templates(templates_file)
    return out


def read_templates(path: Path) -> list[str]:
    """One prompt per line, each with one ``{}`` for the class name."""
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    bad = [line for line in lines if line.count("{}") != 1]
    if not lines or bad:
        raise InputError(f"{path}: every template needs exactly one '{{}}'"
                         + (f", e.g. {bad[0]!r}" if bad else " (file is empty)"))
    return lines
