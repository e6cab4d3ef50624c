"""The configuration of `wit overlap`.

Each field's description is also its command-line help (`cli.stage_command`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from wit_builder.clip.evalsets import EVAL_SET_KINDS
from wit_builder.config import SparkStageConfig, StageConfig

OVERLAP_SET_KINDS = (*EVAL_SET_KINDS, "wds")
# ImageNet's per-channel statistics: the usual input normalization of ResNet descriptors
# (the project's copy detector, SSCD).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class OverlapConfig(SparkStageConfig):
    """Parameters of `wit overlap`."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = SparkStageConfig.RUNTIME_FIELDS | {
        "batch_size", "device", "decode_threads"}
    # Fields that only decide which scored neighbours are copies: changing them reuses the
    # scores of a finished output (nothing is embedded again).
    DECISION_FIELDS: ClassVar[frozenset[str]] = frozenset({"threshold", "thresholds", "near"})

    shards: str = Field(description="pool shards: 'dir/{00000..00099}.tar', glob or a::b "
                        "list (a `wit shards` output)")
    eval: list[str] = Field(["digits"], description="eval sets: digits, cifar10:DIR, "
                            "cifar100:DIR, imagefolder:DIR, wds:PATTERN (eval shards)",
                            json_schema_extra={"flag": "--eval"})
    split: Literal["test", "train", "both"] = Field("test", description="eval split(s) "
                                                    "checked")
    method: str = Field("phash", description="phash (Hamming ≤ threshold), detector:DIR "
                        "(a `wit overlap train-detector` output), torchscript:PATH (any "
                        "TorchScript image descriptor) or clip:CHECKPOINT (semantic "
                        "neighbours); cosine ≥ threshold for the last three")
    threshold: float | None = Field(None, description="match threshold; default: 4 bits "
                                    "for phash, the detector's suggestion, 0.8 for "
                                    "torchscript, 0.95 for clip")
    thresholds: dict[str, float] = Field(default_factory=dict, description="per eval set "
                                         "overrides: --set thresholds.digits=2")
    input_size: int = Field(224, ge=8, description="torchscript: input side in pixels")
    mean: tuple[float, float, float] = Field(IMAGENET_MEAN,
                                             description="torchscript: input mean")
    std: tuple[float, float, float] = Field(IMAGENET_STD,
                                            description="torchscript: input std")
    k: int = Field(3, ge=1, le=100, description="nearest eval images kept per pool image")
    index: Literal["flat", "ivf", "hnsw"] = Field("flat", description="faiss index: exact "
                                                  "flat, or approximate ivf/hnsw for eval "
                                                  "sets of millions (recall vs flat in "
                                                  "the stats)")
    near: float | None = Field(None, description="also record neighbours this far past the "
                               "threshold (for the report's borderline gallery); default "
                               "4 bits or 0.05 cosine")
    batch_size: int = Field(256, ge=1, description="pool images embedded at a time")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where images are "
                                                   "embedded and searched (auto: CUDA "
                                                   "when present)")
    decode_threads: int | None = Field(None, ge=1, description="threads decoding pool "
                                       "images in a task; default: 1 on CPU (each task "
                                       "owns a core), 8 on CUDA (keep the GPU fed)")

    @field_validator("eval", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        values = [value] if isinstance(value, str) else value
        for spec in values or []:
            kind, _, arg = str(spec).partition(":")
            if kind not in OVERLAP_SET_KINDS or (kind != "digits") != bool(arg):
                raise ValueError(f"{spec!r} is not one of digits, cifar10:DIR, "
                                 "cifar100:DIR, imagefolder:DIR, wds:PATTERN")
        return values

    @field_validator("eval")
    @classmethod
    def _absolute_sets(cls, values: list[str]) -> list[str]:
        """Eval folders and shards as absolute paths: readers of the output (`wit overlap
        report`) find them from any working directory."""
        return [absolute_spec(spec) for spec in values]

    @field_validator("shards")
    @classmethod
    def _absolute_shards(cls, value: str) -> str:
        return absolute_pattern(value)


def absolute_pattern(pattern: str) -> str:
    """A ``::``-joined shard pattern with each local part made absolute."""
    return "::".join(part if "://" in part or part.startswith("pipe:") or not part
                     else os.path.abspath(part) for part in pattern.split("::"))


def absolute_spec(spec: str) -> str:
    """An eval set spec with its folder or shard pattern made absolute."""
    kind, colon, arg = spec.partition(":")
    if not arg:
        return spec
    return f"{kind}{colon}{absolute_pattern(arg) if kind == 'wds' else os.path.abspath(arg)}"


class TrainDetectorConfig(StageConfig):
    """Parameters of `wit overlap train-detector`."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = StageConfig.RUNTIME_FIELDS | {
        "workers", "device", "checkpoint_every"}

    shards: str = Field(description="pool shards the detector learns from")
    arch: Literal["resnet18", "resnet50"] = Field("resnet18", description="ResNet trunk")
    dim: int = Field(256, ge=8, description="embedding dimension")
    image_size: int = Field(224, ge=32, description="input side in pixels")
    steps: int = Field(2000, ge=1, description="optimizer steps")
    batch_size: int = Field(256, ge=2, description="images per step (InfoNCE negatives)")
    lr: float = Field(1e-3, gt=0, description="peak AdamW learning rate (cosine decay)")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    seed: int = Field(0, description="seed of the weights, data order and augmentations")
    workers: int = Field(2, ge=0, description="DataLoader worker processes")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="training device")
    checkpoint_every: int = Field(200, ge=1, description="steps between resumable "
                                  "checkpoints")


class CalibrateConfig(StageConfig):
    """Parameters of `wit overlap calibrate`."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = StageConfig.RUNTIME_FIELDS | {
        "batch_size", "device"}

    shards: str = Field(description="pool shards to plant copies into")
    eval: str = Field("digits", description="the eval set whose images are copied")
    method: str = Field("phash", description="as for `wit overlap --method`")
    input_size: int = Field(224, ge=8, description="torchscript: input side in pixels")
    mean: tuple[float, float, float] = Field(IMAGENET_MEAN,
                                             description="torchscript: input mean")
    std: tuple[float, float, float] = Field(IMAGENET_STD,
                                            description="torchscript: input std")
    eval_sample: int = Field(100, ge=1, description="eval images copied (each once per "
                             "transformation)")
    pool_sample: int = Field(1000, ge=1, description="pool images used as non-copies")
    target_precision: float = Field(0.99, gt=0, le=1, description="precision the suggested "
                                    "threshold must reach")
    seed: int = Field(0, description="seed of the samples and random transformations")
    batch_size: int = Field(256, ge=1, description="images embedded at a time")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="embedding device")

    @field_validator("eval")
    @classmethod
    def _known(cls, value: str) -> str:
        OverlapConfig._one_or_many(value)
        return value


class ReportConfig(StageConfig):
    """Parameters of `wit overlap report`."""

    overlap: Path = Field(description="a `wit overlap` output dir")
    checkpoint: Path | None = Field(None, description="a CLIP checkpoint: adds zero-shot "
                                    "accuracy on All / Clean / Overlap")
    calibration: Path | None = Field(None, description="a `wit overlap calibrate` output: "
                                     "adds its PR plot")
    gallery: int = Field(12, ge=0, description="strongest matches shown in report.html")
