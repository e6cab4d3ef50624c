"""Zero-shot classifier (vs open_clip's) and metric functions on known answers."""

from __future__ import annotations

import open_clip
import pytest
import torch

from wit_builder.clip.model import create_model
from wit_builder.clip.tokenizer import Tokenizer
from wit_builder.clip.zeroshot import (
    classifier_weights,
    mean_per_class_recall,
    retrieval_recall,
    topk_accuracy,
)


def test_classifier_equals_open_clip_builder():
    torch.manual_seed(0)
    ours = create_model("tiny").eval()
    names = ["dog", "cat", "golden retriever", "fire truck", "tabby cat"]
    templates = ["a photo of a {}.", "a bad photo of the {}.", "art of the {}."]
    weights = classifier_weights(ours, Tokenizer(), names, templates, batch_classes=2)

    class Adapter(torch.nn.Module):  # open_clip's builder calls encode_text(tokens, normalize)
        def encode_text(self, tokens, normalize=False):
            return ours.encode_text(tokens, normalize=normalize)

    reference = open_clip.build_zero_shot_classifier(
        Adapter(), open_clip.get_tokenizer("ViT-B-32"), names, templates,
        device="cpu", use_tqdm=False)
    torch.testing.assert_close(weights, reference)
    assert torch.allclose(weights.norm(dim=0), torch.ones(len(names)))


def test_topk_accuracy():
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    labels = torch.tensor([0, 1, 1])
    assert topk_accuracy(logits, labels, ks=(1, 2)) == pytest.approx(
        {"top1": 1 / 3, "top2": 1.0})


def test_mean_per_class_recall_weights_classes_equally():
    labels = torch.tensor([0, 0, 0, 0, 1])
    preds = torch.tensor([0, 0, 0, 0, 0])
    assert mean_per_class_recall(preds, labels, 3) == pytest.approx(0.5)


def test_retrieval_recall():
    images = torch.eye(3)
    texts = torch.tensor([[1.0, 0, 0], [0, 0.3, 0.95], [0, 0.9, 0.1], [0.6, 0.8, 0]])
    owner = torch.tensor([0, 1, 1, 2])  # text → image it describes
    got = retrieval_recall(images, texts, owner, ks=(1, 2))
    # per text, images by similarity: t0: 0 | t1: 2, 1 | t2: 1 | t3: 1, 0 (owner 2 last)
    assert got["text_to_image_R@1"] == pytest.approx(2 / 4)
    assert got["text_to_image_R@2"] == pytest.approx(3 / 4)
    # per image, texts: img0: t0 | img1: t2 | img2: t1, t2 (both owned by image 1)
    assert got["image_to_text_R@1"] == pytest.approx(2 / 3)
    assert got["image_to_text_R@2"] == pytest.approx(2 / 3)
