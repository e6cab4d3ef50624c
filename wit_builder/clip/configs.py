"""Model configurations as data.

Sizes follow the CLIP paper (ViT-B/32, ViT-B/16) and open_clip's registry (ViT-S-32), so a
checkpoint of a named config loads into open_clip's model of the same name. ``tiny`` is a
CPU-sized model for tests and smoke runs (same architecture, small widths).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


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
