"""How images are compared: a method turns images into vectors, and says which eval-set
neighbours count as copies.

* ``phash`` — 64-bit pHash, Hamming distance in a faiss binary index; a match is a
  distance ≤ threshold (default 4 bits). Robust to resizing and re-encoding, not to crops.
* ``detector:DIR`` — the project's copy detector (`detector`, a `wit overlap
  train-detector` output): a `torch.export` program (``model.pt2``; older outputs'
  TorchScript ``model.pt`` still load) + ``detector.json`` (input size, normalization,
  suggested threshold).
* ``torchscript:PATH`` — any TorchScript image descriptor (SSCD's published models, for
  example); input size, mean and std come from the config (``--set input_size=288``).
* ``clip:CHECKPOINT`` — the image tower of a `wit train` checkpoint. These are semantic
  neighbours, not proof of copying, and are labelled so.

The last three compare L2-normalized float vectors by cosine similarity (inner product);
a match is a similarity ≥ threshold. The vectors are indexed by `index.build_index`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wit_builder.errors import ConfigError, InputError
from wit_builder.images.phash import phash64, to_int64
from wit_builder.overlap.configs import IMAGENET_MEAN, IMAGENET_STD

DEFAULT_THRESHOLDS = {"phash": 4.0, "torchscript": 0.8, "clip": 0.95}
DEFAULT_NEAR = {True: 4.0, False: 0.05}  # binary (bits) / cosine
DETECTOR_FILE = "detector.json"
DETECTOR_MODEL = "model.pt2"  # a torch.export program
LEGACY_DETECTOR_MODEL = "model.pt"  # TorchScript, as detectors were saved before


@dataclass(frozen=True)
class Embedding:
    """How a method turns images into vectors (everything scoring needs, no threshold)."""

    name: str
    kind: str
    binary: bool
    path: str | None = None
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def device_for(self, name: str) -> str:
        """The device to embed on for a config's `name` (pHash runs on the CPU, without
        importing torch)."""
        return "cpu" if self.kind == "phash" else resolve_device(name)


@dataclass(frozen=True)
class Rule:
    """Which neighbours count as copies: a score passing the threshold (≤ for binary
    Hamming distances, ≥ for cosine); `thresholds` overrides it per eval set; `near` is
    how far past it a neighbour is still recorded for manual review."""

    threshold: float
    binary: bool
    thresholds: dict[str, float] = field(default_factory=dict)
    near: float = 0.0

    def threshold_for(self, eval_set: str) -> float:
        return self.thresholds.get(eval_set, self.threshold)

    def better(self, score: float, threshold: float | None = None) -> bool:
        """True if `score` is a match at `threshold` (default: the rule's)."""
        t = self.threshold if threshold is None else threshold
        return score <= t if self.binary else score >= t

    def near_limit(self, eval_set: str) -> float:
        """The weakest score still recorded as a borderline neighbour of `eval_set`."""
        t = self.threshold_for(eval_set)
        return t + self.near if self.binary else t - self.near

    def decide(self, score: float, eval_set: str) -> str | None:
        """``match``, ``near`` or None for a neighbour of `eval_set` at `score`."""
        if self.better(score, self.threshold_for(eval_set)):
            return "match"
        if self.better(score, self.near_limit(eval_set)):
            return "near"
        return None


@dataclass(frozen=True)
class Method:
    """A comparison method as configured (see module docstring): its `embedding` (how
    vectors are made) and its `rule` (the decision); `name` is what reports show."""

    name: str
    kind: str
    threshold: float
    binary: bool
    path: str | None = None
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    thresholds: dict[str, float] = field(default_factory=dict)
    near: float = 0.0

    @property
    def embedding(self) -> Embedding:
        return Embedding(self.name, self.kind, self.binary, self.path, self.input_size,
                         self.mean, self.std)

    @property
    def rule(self) -> Rule:
        return Rule(self.threshold, self.binary, self.thresholds, self.near)

    @property
    def semantic(self) -> bool:
        """True for CLIP neighbours (similar content, not necessarily a copy)."""
        return self.kind == "clip"

    def threshold_for(self, eval_set: str) -> float:
        return self.rule.threshold_for(eval_set)

    def better(self, score: float, threshold: float | None = None) -> bool:
        """True if `score` is a match at `threshold` (default: the method's)."""
        return self.rule.better(score, threshold)

    def device_for(self, name: str) -> str:
        """See `Embedding.device_for`."""
        return self.embedding.device_for(name)


def parse_method(spec: str, threshold: float | None = None, **settings: Any) -> Method:
    """A `Method` from ``--method`` and the config's `settings` (input_size, mean, std,
    thresholds, near); `ConfigError` for an unknown method or a missing file."""
    kind, _, arg = spec.partition(":")
    if kind == "phash" and not arg:
        method = Method(spec, kind, DEFAULT_THRESHOLDS[kind], binary=True)
    elif kind in ("clip", "torchscript") and arg:
        if not Path(arg).is_file():
            raise ConfigError(f"method {spec!r}: file not found: {arg}")
        method = Method(spec, kind, DEFAULT_THRESHOLDS[kind], binary=False, path=arg)
    elif kind == "detector" and arg:
        method = detector_method(spec, Path(arg))
    else:
        raise ConfigError(f"unknown method {spec!r}: use phash, detector:DIR, "
                          "torchscript:PATH or clip:CHECKPOINT")
    return configured(method, threshold, settings)


def configured(method: Method, threshold: float | None, settings: dict[str, Any]) -> Method:
    """`method` with the config's threshold, overrides and input settings applied."""
    from dataclasses import replace

    near = settings.pop("near", None)
    if method.kind == "detector":  # the detector's JSON fixes its inputs
        settings = {k: v for k, v in settings.items() if k not in ("input_size", "mean", "std")}
    made = replace(method, threshold=method.threshold if threshold is None else threshold,
                   near=DEFAULT_NEAR[method.binary] if near is None else near,
                   **{k: tuple(v) if isinstance(v, list) else v
                      for k, v in settings.items() if v is not None})
    check_thresholds(made)
    return made


def check_thresholds(method: Method) -> None:
    """`ConfigError` for a threshold outside the method's scores (Hamming distances of
    64-bit pHashes are 0–64 bits, cosine similarities −1–1): a run with one would find
    nothing, or everything. A per-set threshold that no score can meet is allowed: it
    switches that set off (its matches count 0); one every score meets is not."""
    low, high, unit = (0, 64, "bits") if method.binary else (-1, 1, "cosine")
    if not low <= method.threshold <= high:
        raise ConfigError(f"threshold {method.threshold} is impossible for {method.kind}: "
                          f"its scores are {low}–{high} {unit}")
    for name, value in method.thresholds.items():
        if value >= high if method.binary else value <= low:
            raise ConfigError(f"thresholds.{name} {value} would match every image for "
                              f"{method.kind} (scores are {low}–{high} {unit})")
    if not 0 <= method.near <= high - low:
        raise ConfigError(f"near {method.near} is impossible for {method.kind}: it is a "
                          f"distance of 0–{high - low} {unit} past the threshold")


def detector_method(spec: str, directory: Path) -> Method:
    """The method of a `wit overlap train-detector` output directory."""
    described, model = directory / DETECTOR_FILE, directory / DETECTOR_MODEL
    if not model.is_file():
        model = directory / LEGACY_DETECTOR_MODEL
    if not (described.is_file() and model.is_file()):
        raise ConfigError(f"method {spec!r}: {directory} is not a `wit overlap "
                          f"train-detector` output (needs {DETECTOR_FILE} and {DETECTOR_MODEL})")
    info = json.loads(described.read_text())
    return Method(spec, "detector", float(info["threshold"]), binary=False, path=str(model),
                  input_size=int(info["input_size"]), mean=tuple(info["mean"]),
                  std=tuple(info["std"]))


def method_files(method: Method) -> list[str]:
    """The files a method reads (their fingerprints belong in a stage's config hash): the
    model, and for a detector its JSON (which sets threshold and inputs)."""
    files = [method.path] if method.path else []
    if method.kind == "detector":
        files.append(str(Path(method.path).with_name(DETECTOR_FILE)))
    return files


def resolve_device(name: str) -> str:
    """'cuda' or 'cpu' for a config's device ('auto': CUDA when torch sees a GPU)."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but torch sees no GPU")
    return "cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu"


class Embedder:
    """Vectors of images for a method (its `Embedding`, or a `Method`, which has the same
    fields): uint8[8] pHash codes or normalized float32."""

    def __init__(self, method: Embedding | Method, device: str = "cpu",
                 threads: int = 1) -> None:
        self.method, self.device = method, device
        # decoding (and pHashing) a batch in threads: Pillow and the transforms release
        # the GIL, so a GPU task is not held up by one decoding core
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self.encode: Callable[[list[Image.Image]], np.ndarray] = phash_codes
        if method.kind == "clip":
            self.encode = self._clip_encoder()
        elif method.kind in ("torchscript", "detector"):
            self.encode = self._model_encoder()

    def _clip_encoder(self) -> Callable[[list[Image.Image]], np.ndarray]:
        import torch

        from wit_builder.clip.data import eval_transform
        from wit_builder.clip.evaluate import UNNAMED_HINT, load_model

        model, _ = load_model(Path(self.method.path), None, torch.device(self.device),
                              UNNAMED_HINT)
        transform = eval_transform(model.config.vision.image_size)
        return lambda images: self._run(lambda x: model.encode_image(x, normalize=True),
                                        transform, images)

    def _model_encoder(self) -> Callable[[list[Image.Image]], np.ndarray]:
        import torch

        model = load_model(self.method.path, self.device)
        transform = square_transform(self.method.input_size, self.method.mean,
                                     self.method.std)
        return lambda images: self._run(
            lambda x: torch.nn.functional.normalize(model(x).float(), dim=-1),
            transform, images)

    def _run(self, forward: Callable, transform: Callable,
             images: list[Image.Image]) -> np.ndarray:
        import torch

        with torch.no_grad():
            batch = torch.stack(self.each(lambda im: transform(im.convert("RGB")), images))
            out = forward(batch.to(self.device))
        if out.ndim != 2:
            raise InputError(f"method {self.method.name}: the model returned a tensor of "
                             f"shape {tuple(out.shape)}, not one vector per image")
        return np.ascontiguousarray(out.float().cpu().numpy())

    def each(self, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        """`fn` over `items`, in order, on the decode threads when there are several."""
        return list(self.pool.map(fn, items)) if self.pool else [fn(x) for x in items]

    def images(self, images: list[Image.Image]) -> np.ndarray:
        """Vectors of decoded images."""
        return self.encode(images)

    def encoded(self, blobs: list[bytes]) -> tuple[np.ndarray, list[int]]:
        """Vectors of encoded images and the indices of those that decoded."""
        if self.method.kind == "phash":  # hashes JPEGs at a reduced decode scale
            hashed = enumerate(self.each(phash64, blobs))
            ok = [(i, h[0]) for i, h in hashed if h is not None]
            return codes(np.array([h for _, h in ok], dtype=np.int64)), [i for i, _ in ok]
        decoded = [(i, im) for i, im in enumerate(self.each(decode, blobs)) if im is not None]
        vectors = self.images([im for _, im in decoded]) if decoded else np.zeros((0, 1))
        return vectors, [i for i, _ in decoded]


def square_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """PIL image → normalized float tensor of the whole image squashed to size×size (no
    crop, so a cropped copy still shows most of what its source shows)."""
    import torch
    from torchvision.transforms import v2

    return v2.Compose([v2.PILToTensor(), v2.Resize((size, size), antialias=True),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def decode(blob: bytes) -> Image.Image | None:
    """An RGB image from encoded bytes; None when they do not decode."""
    try:
        return Image.open(io.BytesIO(blob)).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def load_model(path: str, device: str) -> Any:
    """An image descriptor: a `torch.export` program (``.pt2``: the project's copy
    detector) or a TorchScript module (published descriptors such as SSCD's)."""
    if not path.endswith(".pt2"):
        return load_torchscript(path, device)
    import torch

    try:
        program = torch.export.load(path)
    except (RuntimeError, ValueError, KeyError, OSError) as e:
        raise InputError(f"{path} is not an exported torch program: {e}") from None
    if device != "cpu":
        from torch.export.passes import move_to_device_pass

        program = move_to_device_pass(program, device)
    return program.module()


def load_torchscript(path: str, device: str) -> Any:
    """A TorchScript module in eval mode; `InputError` when `path` is not one."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # TorchScript is the format SSCD's models ship in
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(path, map_location=device).eval()
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path} is not a TorchScript model: {first}") from None


def phash_codes(images: list[Image.Image]) -> np.ndarray:
    """faiss binary codes of decoded images' pHashes."""
    import imagehash

    return codes(np.array([to_int64(imagehash.phash(im)) for im in images], dtype=np.int64))


def codes(hashes: np.ndarray) -> np.ndarray:
    """int64 hashes as faiss binary codes (n, 8) uint8, most significant byte first."""
    return hashes.astype(">i8").view(np.uint8).reshape(-1, 8)
