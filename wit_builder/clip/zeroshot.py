"""Zero-shot classification and retrieval metrics for CLIP models.

A zero-shot classifier is one embedding per class: each class name is put into every
prompt template ("a photo of a {}."), the texts are embedded and L2-normalized, averaged
over templates (an ensemble in embedding space) and normalized again. Images are then
classified by cosine similarity to these class embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from wit_builder.clip.model import CLIP


@torch.no_grad()
def classifier_weights(model: CLIP, tokenizer: Callable[[list[str]], torch.Tensor],
                       classnames: Sequence[str], templates: Sequence[str],
                       batch_classes: int = 32) -> torch.Tensor:
    """(embed_dim, n_classes) matrix of normalized, template-ensembled class embeddings."""
    device = next(model.parameters()).device
    columns = []
    for start in range(0, len(classnames), batch_classes):
        names = classnames[start:start + batch_classes]
        texts = [t.format(name) for name in names for t in templates]
        emb = model.encode_text(tokenizer(texts).to(device), normalize=True)
        emb = emb.reshape(len(names), len(templates), -1).mean(dim=1)
        columns.append(F.normalize(emb, dim=-1))
    return torch.cat(columns).T


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor,
                  ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Share of rows whose label is among the k highest logits, for each k."""
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hits = ranked == labels[:, None]
    return {f"top{k}": hits[:, :k].any(dim=1).float().mean().item() for k in ks}


def mean_per_class_recall(predictions: torch.Tensor, labels: torch.Tensor,
                          n_classes: int) -> float:
    """Average over classes present in `labels` of the share of their rows predicted right
    (the metric CLIP reports for unbalanced sets such as Caltech-101 and Pets)."""
    correct = torch.bincount(labels[predictions == labels], minlength=n_classes).float()
    total = torch.bincount(labels, minlength=n_classes).float()
    present = total > 0
    return (correct[present] / total[present]).mean().item()


def retrieval_recall(image_features: torch.Tensor, text_features: torch.Tensor,
                     text_image: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
                     ) -> dict[str, float]:
    """Image↔text recall@k; text i describes image ``text_image[i]`` (an image may have
    several texts). Image→text counts a hit if any of its texts is in the top k."""
    sims = F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
    out = {}
    for k in ks:
        top_images = sims.T.topk(min(k, sims.shape[0]), dim=1).indices  # per text
        out[f"text_to_image_R@{k}"] = (top_images == text_image[:, None]).any(1).float() \
            .mean().item()
        top_texts = sims.topk(min(k, sims.shape[1]), dim=1).indices  # per image
        owner = text_image[top_texts]
        images = torch.arange(sims.shape[0], device=sims.device)[:, None]
        out[f"image_to_text_R@{k}"] = (owner == images).any(1).float().mean().item()
    return out
