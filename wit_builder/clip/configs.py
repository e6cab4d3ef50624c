"""Model configurations as data, and the `wit train` / `wit eval` stage configs.

Model sizes follow the CLIP paper (ViT-B/32, ViT-B/16) and open_clip's registry (ViT-S-32), so a
checkpoint of a named config loads into open_clip's model of the same name. ``tiny`` is a
CPU-sized model for tests and smoke runs (same architecture, small widths).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from wit_builder.clip.evalsets import EVAL_SET_KINDS
from wit_builder.config import StageConfig


@dataclass(frozen=True)
class VisionConfig:
    """Vision Transformer: square images cut into `patch_size` patches."""

    image_size: int = 224
    patch_size: int = 32
    width: int = 768
    layers: int = 12
    head_width: int = 64  # heads = width // head_width, as in open_clip
    mlp_ratio: float = 4.0

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class TextConfig:
    """Causal text Transformer over BPE tokens, pooled at the end-of-text token."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    mlp_ratio: float = 4.0


@dataclass(frozen=True)
class ClipConfig:
    """A CLIP model: both towers project to `embed_dim`."""

    embed_dim: int = 512
    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    quick_gelu: bool = False  # OpenAI's released weights were trained with QuickGELU


MODEL_CONFIGS: dict[str, ClipConfig] = {
    "ViT-B-32": ClipConfig(512, VisionConfig(patch_size=32), TextConfig()),
    "ViT-B-16": ClipConfig(512, VisionConfig(patch_size=16), TextConfig()),
    "ViT-S-32": ClipConfig(384, VisionConfig(patch_size=32, width=384),
                           TextConfig(width=384, heads=6)),
    "tiny": ClipConfig(64, VisionConfig(image_size=32, patch_size=8, width=64, layers=2,
                                        head_width=32),
                       TextConfig(width=64, heads=2, layers=2)),
}


def get_config(name: str, quick_gelu: bool | None = None) -> ClipConfig:
    """The named config; ``NAME-quickgelu`` (open_clip's naming) turns QuickGELU on."""
    base, _, suffix = name.partition("-quickgelu")
    if base not in MODEL_CONFIGS or suffix:
        known = ", ".join(sorted(MODEL_CONFIGS))
        raise KeyError(f"unknown model {name!r} (known: {known}; add -quickgelu for QuickGELU)")
    cfg = MODEL_CONFIGS[base]
    wants_quick = name.endswith("-quickgelu") if quick_gelu is None else quick_gelu
    return replace(cfg, quick_gelu=wants_quick)


def check_model_name(name: str) -> str:
    """`name` if it names a model config (see `get_config`), else a `ValueError` that
    lists the known names (pydantic turns it into a one-line config error)."""
    try:
        get_config(name)
    except KeyError as e:
        raise ValueError(e.args[0]) from None
    return name


class TrainConfig(StageConfig):
    """Parameters of `wit train`; defaults follow the CLIP paper's recipe where it has one.

    The run directory `out` holds the checkpoints of one configuration: the hashed fields
    (all but `RUNTIME_FIELDS`) must match the run already there to resume it (see
    `checkpoint.check_run`).
    """

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = StageConfig.RUNTIME_FIELDS | {
        "resume", "workers", "save_every", "keep_checkpoints", "log_every"}

    shards: str = Field(description="webdataset shards: 'dir/{00000..00099}.tar', glob, "
                        "or a::b list")
    out: Path = Field(description="run directory: checkpoints, metrics.jsonl, tensorboard/")
    model: str = Field("ViT-B-32", description="model config: ViT-B-32, ViT-B-16, ViT-S-32, "
                       "tiny (+ -quickgelu)")
    batch_size: int = Field(256, ge=1, description="pairs per rank per micro-batch")
    accum_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    steps: int = Field(1000, ge=1, description="optimizer steps in total")
    lr: float = Field(5e-4, gt=0, description="peak learning rate")
    warmup_steps: int = Field(100, ge=0, description="linear warmup steps")
    weight_decay: float = Field(0.2, ge=0, description="AdamW weight decay")
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm")
    precision: Literal["fp32", "bf16"] = Field("bf16", description="bf16 = autocast")
    grad_checkpointing: bool = Field(False, description="recompute activations in backward")
    compile: bool = Field(False, description="torch.compile the model")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune",
                          "max-autotune-no-cudagraphs"] = Field(
        "default", description="torch.compile mode; reduce-overhead = CUDA graphs")
    group_text: bool = Field(False, description="run captions in length groups: exact, "
                             "skips compute on padding; pays off when compute-bound (CPU, "
                             "large batches), not with compile (shapes change per batch)")
    text_groups: int = Field(0, ge=0, description="N > 0: sort captions by length into N "
                             "equal groups, each run to its longest caption: exact, and "
                             "few shapes, so it works with compile and CUDA graphs")
    local_loss: bool = Field(False, description="per-rank logits rows (less memory)")
    resampled: bool = Field(False, description="draw shards with replacement, endlessly; "
                            "a resumed run starts a new draw seeded by its step")
    shuffle_buffer: int = Field(1000, ge=1, description="samples in the shuffle buffer")
    workers: int = Field(4, ge=0, description="DataLoader worker processes per rank")
    seed: int = Field(0, description="seed of weights, data order and crops")
    save_every: int = Field(500, ge=1, description="checkpoint every N steps")
    keep_checkpoints: int = Field(3, ge=1, description="checkpoints kept")
    log_every: int = Field(10, ge=1, description="metrics line every N steps")
    resume: str | None = Field(
        "auto", description="auto = resume the run in --out if its config matches (refuse "
        "if not); latest = resume it even with a changed config; a checkpoint path; none")

    @field_validator("model")
    @classmethod
    def _model_known(cls, value: str) -> str:
        return check_model_name(value)

    @field_validator("resume", mode="before")
    @classmethod
    def _resume_value(cls, value: Any) -> Any:
        if value is None or str(value).lower() in ("", "none"):
            return None
        if value in ("auto", "latest") or Path(str(value)).is_file():
            return value
        raise ValueError("must be auto, latest, none or an existing checkpoint file")

    @model_validator(mode="after")
    def _one_text_grouping(self) -> TrainConfig:
        if self.compile and self.group_text:
            raise ValueError("group_text changes the text shapes every batch, which would "
                             "recompile the model: with compile use text_groups=N")
        if self.group_text and self.text_groups:
            raise ValueError("group_text and text_groups are two ways to group captions: "
                             "set one")
        return self


class EvalConfig(StageConfig):
    """Parameters of `wit eval`."""

    checkpoint: Path = Field(description="a `wit train` checkpoint or an open_clip state dict")
    out: Path = Field(description="output directory for eval.json")
    model: str | None = Field(None, description="model config; default: the checkpoint's")
    datasets: list[str] = Field(["digits"], description="digits, cifar10:DIR, cifar100:DIR, "
                                "imagefolder:DIR", json_schema_extra={"flag": "--dataset"})
    retrieval_shards: str | None = Field(None, description="webdataset image-caption shards "
                                         "for retrieval R@k")
    templates: Path | None = Field(None, description="prompt file, one '{}' template a line")
    linear_probe: bool = Field(True, description="fit a logistic-regression probe")
    probe_cs: list[float] = Field([0.01, 0.1, 1.0, 10.0, 100.0], min_length=1,
                                  description="inverse regularization values tried")
    batch_size: int = Field(256, ge=1, description="images per forward pass")
    workers: int = Field(0, ge=0, description="DataLoader worker processes")
    seed: int = Field(0, description="seed of the probe's split")

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = StageConfig.RUNTIME_FIELDS | {"workers"}

    @field_validator("model")
    @classmethod
    def _model_known(cls, value: str | None) -> str | None:
        return None if value is None else check_model_name(value)

    @field_validator("datasets")
    @classmethod
    def _set_kinds(cls, value: list[str]) -> list[str]:
        for spec in value:
            kind, _, arg = spec.partition(":")
            if kind not in EVAL_SET_KINDS or (kind != "digits") != bool(arg):
                raise ValueError(f"{spec!r} is not one of digits, cifar10:DIR, "
                                 "cifar100:DIR, imagefolder:DIR")
        return value
