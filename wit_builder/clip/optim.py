"""CLIP's optimization recipe: AdamW with decoupled weight decay on matrices only, and a
cosine learning-rate schedule with linear warmup.

Paper values: β1 = 0.9, β2 = 0.98, ε = 1e-6, weight decay 0.2. Gains and biases (every
1-d parameter: LayerNorm weights, biases, the class embedding) and the temperature
``logit_scale`` get no weight decay; matrices, including embeddings and projections, do.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from wit_builder.clip.distributed import unwrap

BETAS = (0.9, 0.98)
EPS = 1e-6
WEIGHT_DECAY = 0.2
MAX_LOGIT_SCALE = math.log(100)  # the temperature is clipped so logits scale ≤ 100


def exempt_from_decay(name: str, param: nn.Parameter) -> bool:
    """Gains, biases (any 1-d tensor) and the temperature are not decayed."""
    return param.ndim < 2 or name.endswith("logit_scale")


def param_groups(model: nn.Module, weight_decay: float = WEIGHT_DECAY) -> list[dict]:
    """Two AdamW groups: decayed matrices, and the exempt parameters with decay 0."""
    decay, exempt = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (exempt if exempt_from_decay(name, param) else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": exempt, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, lr: float, weight_decay: float = WEIGHT_DECAY,
                   fused: bool | None = None) -> torch.optim.AdamW:
    """AdamW with CLIP's betas and eps over `param_groups`."""
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=BETAS, eps=EPS,
                             fused=fused)


def cosine_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int,
              min_lr: float = 0.0) -> float:
    """Linear warmup from 0 to `base_lr` over `warmup_steps`, then cosine decay to
    `min_lr` at `total_steps` (and `min_lr` after)."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate (the schedule is a pure function of the step, so a
    resumed run continues it exactly)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


@torch.no_grad()
def clamp_logit_scale(model: nn.Module) -> None:
    """Keep exp(logit_scale) ≤ 100 (call after each optimizer step)."""
    scale = unwrap(model).logit_scale
    scale.clamp_(0, MAX_LOGIT_SCALE)
