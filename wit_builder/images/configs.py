"""The configurations of stage 4: `wit download` and `wit shards`.

Each field's description is also its command-line help (`cli.stage_command`).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from wit_builder.config import SparkStageConfig
from wit_builder.images.decode import ResizeMode


class DownloadConfig(SparkStageConfig):
    """Parameters of `wit download`."""

    # Besides how it runs: the network patience (timeout, deadline, retries) decides how
    # long a fetch may take, never what an image becomes; changing it keeps the shards a
    # killed run finished (only the unfinished ones use the new values).
    RUNTIME_FIELDS: ClassVar[frozenset[str]] = SparkStageConfig.RUNTIME_FIELDS | {
        "threads", "processes", "distributor", "retry_failed", "timeout", "deadline",
        "retries", "shard_deadline"}
    # Fields that decide what a downloaded image is: a retry must use the finished run's.
    IMAGE_FIELDS: ClassVar[tuple[str, ...]] = (
        "pairs", "image_size", "resize_mode", "min_image_size", "max_aspect_ratio",
        "max_pixels", "respect_opt_out")

    pairs: Path = Field(description="balance or curate output dir (or a pairs dataset)")
    image_size: int = Field(256, ge=8, description="short side after resizing (never "
                            "enlarged)")
    resize_mode: ResizeMode = Field("keep_ratio", description="keep_ratio: short side = "
                                    "image_size; center_crop: then the centre square; "
                                    "no: original size")
    min_image_size: int = Field(32, ge=1, description="smallest short side kept (pixels)")
    max_aspect_ratio: float = Field(10.0, ge=1.0, description="largest long/short side "
                                    "ratio kept")
    max_pixels: int = Field(50_000_000, ge=1, description="largest declared pixel count "
                            "decoded (decompression bombs)")
    samples_per_shard: int = Field(10_000, ge=1, description="input rows per shard")
    timeout: float = Field(10.0, gt=0, description="seconds a connection may stay silent")
    deadline: float = Field(60.0, gt=0, description="seconds for a whole request: connect, "
                            "headers and body (a server dripping bytes is cut off: timeout)")
    shard_deadline: float | None = Field(None, gt=0, description="seconds a shard task may "
                                         "take before its open requests are cut off "
                                         "(timeout); default: every request at its "
                                         "deadline, plus a minute")
    max_bytes: int = Field(32 * 2**20, ge=1, description="largest image body read, in bytes "
                           "(checked against Content-Length and while streaming: too_large)")
    retries: int = Field(1, ge=0, description="extra attempts per failed URL")
    respect_opt_out: bool = Field(True, description="skip images whose X-Robots-Tag says "
                                  "noai, noimageai, noindex or noimageindex")
    allow_network: list[str] = Field([], description="CIDR that may be fetched from "
                                     "although private (e.g. 127.0.0.1/32)")
    threads: int = Field(16, ge=1, description="download threads per task")
    distributor: Literal["pyspark", "multiprocessing"] = Field(
        "pyspark", description="run shard tasks on Spark or on a local process pool")
    processes: int = Field(os.cpu_count() or 1, ge=1,
                           description="processes of the multiprocessing distributor")
    retry_failed: bool = Field(False, description="fetch again the transient failures "
                               "(timeout, 5xx, 429, connection reset) of the finished output "
                               "in --out, into extra shards")

    def changed_image_fields(self, recorded: dict[str, Any]) -> list[str]:
        """'key recorded → now' for each `IMAGE_FIELDS` value that differs from the
        `recorded` config of a finished run."""
        now = self.hashed_fields()
        return [f"{k} {recorded.get(k)!r} → {now.get(k)!r}" for k in self.IMAGE_FIELDS
                if recorded.get(k) != now.get(k)]

    @field_validator("allow_network", mode="before")
    @classmethod
    def _cidrs(cls, value: Any) -> Any:
        values = [value] if isinstance(value, str) else value
        for cidr in values or []:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as e:
                raise ValueError(f"{cidr!r} is not an address range ({e})") from None
        return values


class ShardsConfig(SparkStageConfig):
    """Parameters of `wit shards`."""

    images: Path = Field(description="`wit download` output dir (webdataset .tar shards)")
    max_distance: int = Field(4, ge=0, le=31, description="pHash Hamming distance at or "
                              "below which two images are near duplicates")
    samples_per_shard: int = Field(10_000, ge=1, description="samples per final shard")
    bucket_cap: int = Field(1000, ge=1, description="hashes per verification block of a "
                            "band bucket (bounds a task's memory; no bucket is skipped)")
