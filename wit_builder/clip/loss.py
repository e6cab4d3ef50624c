"""CLIP's contrastive loss: symmetric cross-entropy over image–text similarity logits.

For a global batch of N pairs, ``logits = scale · I Tᵀ`` (N × N, normalized features) and
the loss is the mean of the cross-entropy of each image over the N texts and of each text
over the N images, the matching pair being the target. Under data parallelism each rank
holds N/W pairs; features are all-gathered *with gradient* so every rank's gradient is the
gradient of the global-batch loss (the paper's batch of 32,768 is built this way):

* ``local_loss=False``: every rank computes the full N × N loss (same value everywhere);
* ``local_loss=True``: a rank computes only its N/W rows (and columns) against all N, a
  W-times smaller logits matrix; the mean of the ranks' losses is the global loss, and
  after DDP averages gradients they equal those of the full loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def gather_features(features: torch.Tensor) -> torch.Tensor:
    """All ranks' features concatenated in rank order; gradients flow back to each rank."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return features
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(features), dim=0)


class ClipLoss(nn.Module):
    """Symmetric InfoNCE with optional feature gathering (see module docstring)."""

    def __init__(self, local_loss: bool = False) -> None:
        super().__init__()
        self.local_loss = local_loss

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor) -> torch.Tensor:
        all_images = gather_features(image_features)
        all_texts = gather_features(text_features)
        if self.local_loss:
            rank = dist.get_rank() if dist.is_initialized() else 0
            offset = rank * image_features.shape[0]
            logits_per_image = logit_scale * image_features @ all_texts.T
            logits_per_text = logit_scale * text_features @ all_images.T
            labels = torch.arange(image_features.shape[0], device=image_features.device)
            labels = labels + offset
        else:
            logits_per_image = logit_scale * all_images @ all_texts.T
            logits_per_text = logits_per_image.T
            labels = torch.arange(all_images.shape[0], device=all_images.device)
        return (F.cross_entropy(logits_per_image, labels)
                + F.cross_entropy(logits_per_text, labels)) / 2
