"""CLIP (Radford et al. 2021): a Vision Transformer and a causal text Transformer trained
to put matching image/text pairs close together in a shared embedding space.

Parameter names and shapes are open_clip's (see docs/architecture.md), so `state_dict()` loads into
``open_clip.create_model(name)`` with ``strict=True`` and OpenAI/open_clip weights load
here. Attention runs through `torch.nn.functional.scaled_dot_product_attention` (fused
kernels on GPU); blocks can use activation checkpointing to trade compute for memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from wit_builder.clip.configs import ClipConfig, TextConfig, VisionConfig


class QuickGELU(nn.Module):
    """x·σ(1.702x): the GELU approximation OpenAI's CLIP weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back (stable under bf16/fp16 autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(),
                            self.bias.float(), self.eps).to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention with `nn.MultiheadAttention`'s parameter layout."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))


class Mlp(nn.Sequential):
    """Position-wise feed-forward: c_fc → GELU → c_proj."""

    def __init__(self, width: int, ratio: float, quick_gelu: bool) -> None:
        hidden = int(width * ratio)
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = QuickGELU() if quick_gelu else nn.GELU()
        self.c_proj = nn.Linear(hidden, width)


class ResidualBlock(nn.Module):
    """Pre-norm Transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, quick_gelu: bool) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ln_2 = LayerNorm(width)
        self.mlp = Mlp(width, mlp_ratio, quick_gelu)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of `ResidualBlock`s on (batch, tokens, width) inputs."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float,
                 quick_gelu: bool) -> None:
        super().__init__()
        self.width, self.layers = width, layers
        self.grad_checkpointing = False
        self.resblocks = nn.ModuleList(
            ResidualBlock(width, heads, mlp_ratio, quick_gelu) for _ in range(layers))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        for block in self.resblocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, causal, use_reentrant=False)
            else:
                x = block(x, causal)
        return x

    def init_weights(self) -> None:
        """CLIP's init: attention/MLP std scaled by width and depth."""
        attn_std = self.width ** -0.5
        proj_std = attn_std * (2 * self.layers) ** -0.5
        fc_std = (2 * self.width) ** -0.5
        for block in self.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)


class VisionTransformer(nn.Module):
    """ViT: patch embedding + class token → Transformer → class token → projection."""

    def __init__(self, cfg: VisionConfig, embed_dim: int, quick_gelu: bool) -> None:
        super().__init__()
        width, scale = cfg.width, cfg.width ** -0.5
        self.conv1 = nn.Conv2d(3, width, cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.grid ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, cfg.layers, cfg.heads, cfg.mlp_ratio, quick_gelu)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv1(images).flatten(2).transpose(1, 2)  # (batch, patches, width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class TextTower(nn.Module):
    """The text tower's parameters (CLIP registers them at its top level, see `CLIP`)."""

    def __init__(self, cfg: TextConfig, embed_dim: int, quick_gelu: bool) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.width))
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads, cfg.mlp_ratio,
                                       quick_gelu)
        self.ln_final = LayerNorm(cfg.width)
        self.text_projection = nn.Parameter(torch.empty(cfg.width, embed_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=cfg.width ** -0.5)


class CLIP(nn.Module):
    """Both towers and the learned temperature.

    The text tower's modules sit at the top level (``token_embedding``, ``transformer``...)
    as in OpenAI's and open_clip's checkpoints; the vision tower is ``visual``.
    """

    def __init__(self, cfg: ClipConfig) -> None:
        super().__init__()
        self.config = cfg
        self.visual = VisionTransformer(cfg.vision, cfg.embed_dim, cfg.quick_gelu)
        text = TextTower(cfg.text, cfg.embed_dim, cfg.quick_gelu)
        self.token_embedding = text.token_embedding
        self.positional_embedding = text.positional_embedding
        self.transformer = text.transformer
        self.ln_final = text.ln_final
        self.text_projection = text.text_projection
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.visual.transformer.init_weights()
        self.transformer.init_weights()

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute block activations in the backward pass (less memory, ~30% slower)."""
        self.visual.transformer.grad_checkpointing = enabled
        self.transformer.grad_checkpointing = enabled

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.visual(images)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False,
                    groups: TextGroups | None = None) -> torch.Tensor:
        """Text features pooled at each row's end-of-text token (the largest id).

        With `groups` (the same rows cut by length, see `group_by_length`; `tokens` is then
        unused) each group runs only up to its own length: attention is causal, so
        positions after a row's EOT never reach its features, and the result equals the
        full-context one.
        """
        if groups is None:
            features = self._text_features(tokens)
        else:
            grouped = torch.cat([self._text_features(part) for part in groups.parts])
            features = grouped[groups.inverse]
        return F.normalize(features, dim=-1) if normalize else features

    def _text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]
        x = self.ln_final(self.transformer(x, causal=True))
        pooled = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        return pooled @ self.text_projection

    def forward(self, images: torch.Tensor, tokens: torch.Tensor,
                groups: TextGroups | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalized image features, normalized text features, exp(logit_scale))."""
        return (self.encode_image(images, normalize=True),
                self.encode_text(tokens, normalize=True, groups=groups),
                self.logit_scale.exp())


@dataclass(frozen=True)
class TextGroups:
    """A token batch cut for the text tower: its rows sorted by caption length and split
    into `parts`, each cut to its longest caption (rounded up); ``features[inverse]``
    puts the features of the concatenated parts back in batch order."""

    parts: tuple[torch.Tensor, ...]
    inverse: torch.Tensor

    def to(self, device: torch.device) -> TextGroups:
        return TextGroups(tuple(p.to(device, non_blocking=True) for p in self.parts),
                          self.inverse.to(device, non_blocking=True))


def group_by_length(tokens: torch.Tensor, multiple: int = 16, min_rows: int = 8
                    ) -> TextGroups:
    """Groups of rows whose lengths round up to the same value: the fewest positions run,
    but the number and shapes of the groups change from batch to batch (eager mode).

    Lengths run through each row's EOT token, rounded up to a `multiple` (few distinct
    shapes, kernel-friendly) and capped at the context. A group of fewer than `min_rows`
    rows joins the next longer one (the longest joins the one before it): tiny launches
    cost more than the padding they save.
    """
    order, padded = _sorted_lengths(tokens, multiple)
    _, counts = torch.unique_consecutive(padded, return_counts=True)
    sizes, pending = [], 0
    for count in counts.tolist():
        pending += count
        if pending >= min_rows:
            sizes.append(pending)
            pending = 0
    if pending:  # a short tail of the longest rows
        if sizes:
            sizes[-1] += pending
        else:
            sizes.append(pending)
    return _cut(tokens, order, padded, sizes)


def split_by_length(tokens: torch.Tensor, parts: int, multiple: int = 16) -> TextGroups:
    """`parts` groups of (nearly) equal row counts, shortest captions first.

    Only the groups' lengths vary between batches, over a few values (multiples of
    `multiple`, or the context), so a compiled model sees a handful of shapes: this is
    the grouping that works with ``torch.compile`` and CUDA graphs.
    """
    order, padded = _sorted_lengths(tokens, multiple)
    rows = len(tokens)
    sizes = [rows // parts + (i < rows % parts) for i in range(min(parts, rows))]
    return _cut(tokens, order, padded, sizes)


def _sorted_lengths(tokens: torch.Tensor, multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row order by length, sorted lengths through EOT rounded up and capped)."""
    needed = tokens.argmax(dim=-1) + 1
    order = torch.argsort(needed, stable=True)
    padded = (needed[order] + multiple - 1) // multiple * multiple
    return order, padded.clamp(max=tokens.shape[1])


def _cut(tokens: torch.Tensor, order: torch.Tensor, padded: torch.Tensor,
         sizes: list[int]) -> TextGroups:
    """Consecutive groups of `sizes` sorted rows, each cut to its longest row's length."""
    ends = torch.tensor(sizes).cumsum(0) - 1
    lengths = padded[ends].tolist()
    parts = tokens[order].split(sizes)
    return TextGroups(tuple(p[:, :n].contiguous() for p, n in zip(parts, lengths, strict=True)),
                      torch.argsort(order))


def create_model(name: str, quick_gelu: bool | None = None) -> CLIP:
    """A randomly initialized CLIP of a named config (see `configs.MODEL_CONFIGS`)."""
    from wit_builder.clip.configs import get_config

    return CLIP(get_config(name, quick_gelu))
