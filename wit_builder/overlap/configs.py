"""The configuration of `wit overlap`.

Each field's description is also its command-line help (`cli.stage_command`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from wit_builder.clip.configs import EVAL_SET_KINDS
from wit_builder.config import SparkStageConfig, StageConfig


class OverlapConfig(SparkStageConfig):
    """Parameters of `wit overlap`."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = SparkStageConfig.RUNTIME_FIELDS | {
        "batch_size"}

    shards: str = Field(description="pool shards: 'dir/{00000..00099}.tar', glob or a::b "
                        "list (a `wit shards` output)")
    eval: list[str] = Field(["digits"], description="eval sets: digits, cifar10:DIR, "
                            "cifar100:DIR, imagefolder:DIR", json_schema_extra={"flag": "--eval"})
    split: Literal["test", "train", "both"] = Field("test", description="eval split(s) "
                                                    "checked")
    method: str = Field("phash", description="phash (Hamming ≤ threshold) or "
                        "clip:CHECKPOINT (cosine ≥ threshold: semantic neighbours)")
    threshold: float | None = Field(None, description="match threshold; default: 4 bits "
                                    "for phash, 0.95 for clip")
    k: int = Field(3, ge=1, le=100, description="nearest eval images kept per pool image")
    batch_size: int = Field(256, ge=1, description="pool images embedded at a time")

    @field_validator("eval", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        values = [value] if isinstance(value, str) else value
        for spec in values or []:
            kind, _, arg = str(spec).partition(":")
            if kind not in EVAL_SET_KINDS or (kind != "digits") != bool(arg):
                raise ValueError(f"{spec!r} is not one of digits, cifar10:DIR, "
                                 "cifar100:DIR, imagefolder:DIR")
        return values


class ReportConfig(StageConfig):
    """Parameters of `wit overlap report`."""

    overlap: Path = Field(description="a `wit overlap` output dir")
    checkpoint: Path | None = Field(None, description="a CLIP checkpoint: adds zero-shot "
                                    "accuracy on All / Clean / Overlap")
    gallery: int = Field(12, ge=0, description="strongest matches shown in report.html")
