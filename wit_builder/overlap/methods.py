"""How images are compared: a method turns images into vectors, indexes the eval set's
vectors in faiss and says which neighbours count as copies.

* ``phash`` — 64-bit pHash, Hamming distance in a faiss binary flat index; a match is a
  distance ≤ threshold (default 4 bits). Robust to resizing and re-encoding, not to crops.
* ``clip:CHECKPOINT`` — the image tower of a `wit train` checkpoint, cosine similarity
  in a faiss flat inner-product index; a match is a similarity ≥ threshold (default
  0.95). These are semantic neighbours, not proof of copying, and are labelled so.

Search is exact (flat indexes): eval sets of up to a few million vectors fit in memory.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wit_builder.errors import ConfigError
from wit_builder.images.phash import phash64, to_int64


@dataclass(frozen=True)
class Method:
    """A comparison method (see module docstring); `name` is what reports show."""

    name: str
    threshold: float
    binary: bool
    checkpoint: str | None = None

    def better(self, score: float, threshold: float | None = None) -> bool:
        """True if `score` is a match at `threshold` (default: the method's)."""
        t = self.threshold if threshold is None else threshold
        return score <= t if self.binary else score >= t


def parse_method(spec: str, threshold: float | None) -> Method:
    """``phash`` or ``clip:CHECKPOINT``; `ConfigError` otherwise."""
    kind, _, arg = spec.partition(":")
    if kind == "phash" and not arg:
        return Method("phash", threshold if threshold is not None else 4.0, binary=True)
    if kind == "clip" and arg:
        if not Path(arg).is_file():
            raise ConfigError(f"method {spec!r}: checkpoint not found: {arg}")
        return Method(spec, threshold if threshold is not None else 0.95, binary=False,
                      checkpoint=arg)
    raise ConfigError(f"unknown method {spec!r}: use phash or clip:CHECKPOINT")


class Embedder:
    """Vectors of images for a method: uint8[8] pHash codes or normalized float32."""

    def __init__(self, method: Method) -> None:
        self.method = method
        self.model: Any = None
        if method.checkpoint:
            import torch

            from wit_builder.clip.data import eval_transform
            from wit_builder.clip.evaluate import load_model

            self.model, _ = load_model(Path(method.checkpoint), None, torch.device("cpu"))
            self.transform = eval_transform(self.model.config.vision.image_size)

    def images(self, images: list[Image.Image]) -> np.ndarray:
        """Vectors of decoded images."""
        if self.model is None:
            import imagehash

            return codes(np.array([to_int64(imagehash.phash(im)) for im in images],
                                  dtype=np.int64))
        import torch

        with torch.no_grad():
            batch = torch.stack([self.transform(im.convert("RGB")) for im in images])
            return self.model.encode_image(batch, normalize=True).float().numpy()

    def encoded(self, blobs: list[bytes]) -> tuple[np.ndarray, list[int]]:
        """Vectors of encoded images and the indices of those that decoded."""
        if self.model is None:
            hashed = [(i, phash64(b)) for i, b in enumerate(blobs)]
            ok = [(i, h[0]) for i, h in hashed if h is not None]
            return codes(np.array([h for _, h in ok], dtype=np.int64)), [i for i, _ in ok]
        decoded = []
        for i, blob in enumerate(blobs):
            try:
                decoded.append((i, Image.open(io.BytesIO(blob)).convert("RGB")))
            except (OSError, ValueError, Image.DecompressionBombError):
                continue
        vectors = self.images([im for _, im in decoded]) if decoded else np.zeros((0, 1))
        return vectors, [i for i, _ in decoded]


def codes(hashes: np.ndarray) -> np.ndarray:
    """int64 hashes as faiss binary codes (n, 8) uint8, most significant byte first."""
    return hashes.astype(">i8").view(np.uint8).reshape(-1, 8)


def build_index(vectors: np.ndarray, binary: bool) -> Any:
    """An exact faiss index over `vectors`."""
    import faiss

    index = faiss.IndexBinaryFlat(64) if binary else faiss.IndexFlatIP(vectors.shape[1])
    if len(vectors):
        index.add(vectors)
    return index


def serialize(index: Any, binary: bool) -> bytes:
    import faiss

    fn = faiss.serialize_index_binary if binary else faiss.serialize_index
    return fn(index).tobytes()


def deserialize(blob: bytes, binary: bool) -> Any:
    import faiss

    fn = faiss.deserialize_index_binary if binary else faiss.deserialize_index
    return fn(np.frombuffer(blob, dtype=np.uint8))
