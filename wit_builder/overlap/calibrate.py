"""Calibration of a method: how well does it find transformed copies, at which threshold?

A sample of eval images is copied once per transformation (`TRANSFORMS`: what copying
does to images on the web) and mixed with a sample of pool images, which are taken as
non-copies. Every image is embedded and searched against the whole eval set like a pool
image in `wit overlap`; its nearest eval image and score are kept. For a threshold τ and
transformation t:

* recall(t, τ) = copies made with t whose nearest eval image is their source and whose
  score passes τ, over all copies made with t;
* precision(t, τ) = those true matches over every image passing τ among the copies made
  with t and the pool sample (a copy matched to the wrong eval image is a false match).

The pool sample should hold no copies of eval images (they would count as false
matches): calibrate on the ``filtered/`` shards of a `wit overlap` run. Precision
therefore also depends on the mix (one copy per transformation for every
pool_sample / eval_sample pool images); the suggested threshold is the loosest one whose
precision over all transformations together reaches the target.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from wit_builder import tarshards
from wit_builder.errors import InputError
from wit_builder.overlap.methods import Embedder

MIN_SIDE = 128  # tiny eval images (8×8 digits, 32×32 CIFAR) are upscaled before copying
POOL = "pool"
OVERALL = "all"


def _resize_half(image: Image.Image, rng: random.Random) -> Image.Image:
    return image.resize((max(1, image.width // 2), max(1, image.height // 2)),
                        Image.Resampling.BICUBIC)


def _jpeg(image: Image.Image, rng: random.Random) -> Image.Image:
    return Image.open(io.BytesIO(encode(image, rng.randint(30, 50))))


def _centre_crop(share: float) -> Callable[[Image.Image, random.Random], Image.Image]:
    def crop(image: Image.Image, rng: random.Random) -> Image.Image:
        w, h = round(image.width * share), round(image.height * share)
        left, top = (image.width - w) // 2, (image.height - h) // 2
        return image.crop((left, top, left + w, top + h))
    return crop


def _grayscale(image: Image.Image, rng: random.Random) -> Image.Image:
    return ImageOps.grayscale(image).convert("RGB")


def _rotate(image: Image.Image, rng: random.Random) -> Image.Image:
    return image.rotate(5, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))


def _flip(image: Image.Image, rng: random.Random) -> Image.Image:
    return ImageOps.mirror(image)


def _text(image: Image.Image, rng: random.Random) -> Image.Image:
    out = image.copy()
    size = max(10, image.height // 8)
    font = ImageFont.load_default(size=size)
    ImageDraw.Draw(out).text((size // 2, image.height - 3 * size // 2), "SALE 50% OFF",
                             fill=(255, 255, 255), font=font, stroke_width=2,
                             stroke_fill=(0, 0, 0))
    return out


TRANSFORMS: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "resize_50": _resize_half, "jpeg_30_50": _jpeg, "crop_90": _centre_crop(0.9),
    "crop_75": _centre_crop(0.75), "grayscale": _grayscale, "rotate_5": _rotate,
    "flip": _flip, "text_overlay": _text,
}


def web_size(image: Image.Image) -> Image.Image:
    """`image` in RGB, upscaled so its short side is at least `MIN_SIDE`."""
    image = image.convert("RGB")
    short = min(image.size)
    if short >= MIN_SIDE:
        return image
    scale = MIN_SIDE / short
    return image.resize((round(image.width * scale), round(image.height * scale)),
                        Image.Resampling.BICUBIC)


def encode(image: Image.Image, quality: int = 90) -> bytes:
    """JPEG bytes, as a copy would be stored in the pool."""
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def copies(image: Image.Image, seed: int) -> dict[str, bytes]:
    """One encoded copy of `image` per transformation (seeded: same bytes every run)."""
    base = web_size(image)
    out = {}
    for name, transform in TRANSFORMS.items():
        rng = random.Random(f"{seed}:{name}")
        out[name] = encode(transform(base, rng))
    return out


def hashed_sample(keys: list, count: int, seed: int) -> list:
    """The `count` keys with the smallest seeded hash (same sample every run)."""
    def rank(key: object) -> str:
        return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()
    return sorted(keys, key=rank)[:count]


@dataclass
class Query:
    """One searched image: its group (a transformation or `POOL`), the eval image it was
    copied from (-1 for pool images), and its nearest eval image and score."""

    group: str
    source: int
    found: int
    score: float


def thresholds(binary: bool, scores: np.ndarray) -> np.ndarray:
    """The thresholds the curves are computed at: every Hamming distance 0–32, or cosine
    0.5–1 in steps of 0.005 plus the observed scores' range."""
    if binary:
        return np.arange(0, 33, dtype=np.float64)
    low = min(0.5, float(scores.min())) if len(scores) else 0.5
    return np.round(np.arange(low, 1.0001, 0.005), 4)


def passes(scores: np.ndarray, threshold: float, binary: bool) -> np.ndarray:
    return scores <= threshold if binary else scores >= threshold


def curves(queries: list[Query], binary: bool) -> dict[str, list[dict]]:
    """Per transformation (and `OVERALL`): precision and recall at every threshold."""
    group = np.array([q.group for q in queries])
    score = np.array([q.score for q in queries], dtype=np.float64)
    right = np.array([q.source >= 0 and q.found == q.source for q in queries])
    pool = group == POOL
    out: dict[str, list[dict]] = {}
    for name in [*TRANSFORMS, OVERALL]:
        mine = ~pool if name == OVERALL else group == name
        if not mine.any():
            continue
        points = []
        for t in thresholds(binary, score):
            hit = passes(score, t, binary)
            true = int((hit & mine & right).sum())
            false = int((hit & pool).sum() + (hit & mine & ~right).sum())
            points.append({"threshold": float(t), "recall": true / int(mine.sum()),
                           "precision": true / (true + false) if true + false else 1.0})
        out[name] = points
    return out


def suggest(points: list[dict], target: float, binary: bool) -> dict | None:
    """The threshold with the highest recall whose precision reaches `target` (the
    strictest of equals)."""
    good = [p for p in points if p["precision"] >= target and p["recall"] > 0]
    if not good:
        return None
    return max(good, key=lambda p: (p["recall"], -p["threshold"] if binary
                                    else p["threshold"]))


def at_threshold(table: dict[str, list[dict]], threshold: float) -> dict[str, dict]:
    """Each curve's point at `threshold`."""
    return {name: min(points, key=lambda p: abs(p["threshold"] - threshold))
            for name, points in table.items()}


def pool_sample(shards: list[str], count: int, seed: int) -> tuple[list[bytes], int]:
    """(encoded images, unreadable count) of up to `count` pool samples, read from the
    `shards` in a seeded order."""
    blobs, unreadable = [], 0
    for path in hashed_sample(shards, len(shards), seed):
        for _, _, blob in tarshards.images(path):
            if blob is None:
                unreadable += 1
                continue
            blobs.append(blob)
            if len(blobs) == count:
                return blobs, unreadable
    return blobs, unreadable


def search(embedder: Embedder, index: Any, blobs: list[bytes], batch: int
           ) -> tuple[list[int], list[tuple[int, float]]]:
    """(indices that decoded, their (nearest eval index, score)), in batches."""
    ok, found = [], []
    for start in range(0, len(blobs), batch):
        vectors, decoded = embedder.encoded(blobs[start:start + batch])
        if len(decoded):
            scores, ids = index.search(vectors, 1)
            found += [(int(i[0]), float(s[0])) for s, i in zip(scores, ids, strict=True)]
            ok += [start + d for d in decoded]
    return ok, found


def planted(evals: list[Any], count: int, seed: int) -> list[tuple[str, int, bytes]]:
    """(transformation, eval position, encoded copy) for a seeded sample of `count` eval
    images, each copied once per transformation."""
    out: list[tuple[str, int, bytes]] = []
    for position in hashed_sample(list(range(len(evals))), count, seed):
        made = copies(evals[position].image, seed + position)
        out += [(name, position, blob) for name, blob in made.items()]
    return out


def queries(cfg: Any, embedder: Embedder) -> tuple[list[Query], int, int]:
    """Every searched image of a `CalibrateConfig` run with its result; also the eval
    set's size and the unreadable pool images."""
    from wit_builder.overlap.evalimages import eval_images
    from wit_builder.overlap.index import build_index

    evals = [im for im in eval_images(cfg.eval, "test") if im.image is not None]
    if len(evals) < 2:
        raise InputError(f"eval set {cfg.eval!r} has fewer than 2 readable test images")
    vectors = np.concatenate([embedder.images([im.image for im in evals[s:s + cfg.batch_size]])
                              for s in range(0, len(evals), cfg.batch_size)])
    index = build_index(vectors, embedder.method.binary)
    copied = planted(evals, cfg.eval_sample, cfg.seed)
    pool, unreadable = pool_sample(tarshards.expand(cfg.shards), cfg.pool_sample, cfg.seed)
    if not pool:
        raise InputError("the pool shards hold no readable image")
    groups = [(name, source) for name, source, _ in copied] + [(POOL, -1)] * len(pool)
    ok, found = search(embedder, index, [b for _, _, b in copied] + pool, cfg.batch_size)
    result = [Query(groups[i][0], groups[i][1], f, s)
              for i, (f, s) in zip(ok, found, strict=True)]
    return result, len(evals), unreadable + len(groups) - len(ok)
