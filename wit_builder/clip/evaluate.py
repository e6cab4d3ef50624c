"""`wit eval`: zero-shot classification, linear probes and retrieval for a CLIP checkpoint.

For each eval set (see `evalsets`): image features of the test split are classified by
cosine similarity to template-ensembled class embeddings (top-1, top-5, mean per-class
recall); if the set has a train split, a linear probe — scikit-learn logistic regression
on the frozen image features, its inverse regularization C chosen on a held-out fifth of
the train split, then refit on all of it — is scored on the test split. With
``retrieval_shards`` (webdataset image–caption shards) image→text and text→image R@1/5/10
are computed. Images that cannot be decoded are skipped and counted per set.

`eval_job` runs this as a stage: results go to ``OUT/eval.json`` with the usual
``stats.json`` and ``_SUCCESS`` marker.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from wit_builder.clip import checkpoint
from wit_builder.clip.configs import EvalConfig, get_config
from wit_builder.clip.data import eval_transform, make_pipeline
from wit_builder.clip.evalsets import EvalSet, ImageSplit, load_eval_set
from wit_builder.clip.model import CLIP
from wit_builder.clip.tokenizer import Tokenizer
from wit_builder.clip.zeroshot import (
    classifier_weights,
    mean_per_class_recall,
    retrieval_recall,
    topk_accuracy,
)
from wit_builder.errors import ConfigError, InputError

log = logging.getLogger(__name__)


NAME_HINT = "pass --model"
UNNAMED_HINT = ("give a `wit train` checkpoint, or a state dict saved as "
                "{'state_dict': ..., 'config': {'model': NAME}}")


def load_model(path: Path, name: str | None, device: torch.device,
               hint: str = NAME_HINT) -> tuple[CLIP, str]:
    """A CLIP with the checkpoint's weights, in eval mode, and its config name.

    Accepts `wit train` checkpoints (``state_dict`` + ``config``), open_clip training
    checkpoints (``state_dict``, keys maybe prefixed ``module.``) and bare state dicts;
    one that does not name its model needs `name` (`hint` says how to give it).
    """
    state = checkpoint.load(path)
    weights = state.get("state_dict", state)
    if not isinstance(weights, dict) or not all(
            isinstance(v, torch.Tensor) for v in weights.values()):
        raise InputError(f"{path} holds no model weights (not a state dict of tensors)")
    weights = {k.removeprefix("module."): v for k, v in weights.items()}
    name = name or state.get("config", {}).get("model")
    if name is None:
        raise ConfigError(f"{path} does not name its model: {hint}")
    model = CLIP(get_config(name))
    problem = state_dict_mismatch(model, weights)
    if problem:
        raise InputError(f"{path} does not fit model {name}: {problem}")
    model.load_state_dict(weights)
    return model.to(device).eval(), name


def state_dict_mismatch(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> str:
    """'' if `weights` fit `model` exactly, else a one-line summary of what differs."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    reshaped = [k for k in expected if k in weights and tuple(weights[k].shape) != expected[k]]
    if not (missing or unexpected or reshaped):
        return ""
    example = next((f"{k} {tuple(weights[k].shape)} vs {expected[k]}" for k in reshaped),
                   (missing + unexpected)[0] if missing or unexpected else "")
    return (f"{len(missing)} missing, {len(unexpected)} unexpected, {len(reshaped)} with "
            f"other shapes (e.g. {example})")


def _valid_only(items: list[tuple]) -> tuple[torch.Tensor | None, torch.Tensor, list[int]]:
    """Collate (tensor, label) pairs; (None, index) marks an unreadable image."""
    good = [(x, y) for x, y in items if x is not None]
    bad = [y for x, y in items if x is None]
    if not good:
        return None, torch.empty(0, dtype=torch.long), bad
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good]), bad


@torch.no_grad()
def image_features(model: CLIP, split: ImageSplit, cfg: EvalConfig
                   ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Normalized features and labels of the readable images; descriptions of the rest."""
    device = next(model.parameters()).device
    split = split.with_transform(eval_transform(model.config.vision.image_size))
    loader = torch.utils.data.DataLoader(split, batch_size=cfg.batch_size,
                                         num_workers=cfg.workers, collate_fn=_valid_only)
    features, labels, unreadable = [], [], []
    for images, batch_labels, bad in loader:
        unreadable += [split.describe(i) for i in bad]
        if images is not None:
            features.append(model.encode_image(images.to(device), normalize=True).float().cpu())
            labels.append(batch_labels)
    if not features:
        raise InputError("no readable image in the split")
    return torch.cat(features), torch.cat(labels), unreadable


def zero_shot_correct(model: CLIP, evalset: EvalSet, split: ImageSplit, cfg: EvalConfig
                      ) -> np.ndarray:
    """Per image of `split`: 1 if the zero-shot classifier's top-1 is right, 0 if wrong,
    -1 if the image is unreadable (the overlap report's per-image view)."""
    split = split.with_transform(eval_transform(model.config.vision.image_size))
    tokenizer = Tokenizer(model.config.text.context_length)
    weights = classifier_weights(model, tokenizer, evalset.classnames, evalset.templates)
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(split, batch_size=cfg.batch_size,
                                         num_workers=cfg.workers, collate_fn=_with_index)
    correct = np.full(len(split), -1, dtype=np.int8)
    offset = 0  # the loader is sequential: batch positions + offset = split indices
    with torch.no_grad():
        for images, labels, positions, size in loader:
            if images is not None:
                features = model.encode_image(images.to(device), normalize=True).float()
                predicted = (features @ weights.float()).argmax(dim=1).cpu()
                correct[np.asarray(positions) + offset] = (predicted == labels).numpy()
            offset += size
    return correct


def _with_index(items: list[tuple]) -> tuple[torch.Tensor | None, torch.Tensor, list[int], int]:
    """Collate readable images with their labels, their positions in the batch, and the
    batch's size."""
    good = [(x, y, i) for i, (x, y) in enumerate(items) if x is not None]
    if not good:
        return None, torch.empty(0, dtype=torch.long), [], len(items)
    return (torch.stack([x for x, _, _ in good]), torch.tensor([y for _, y, _ in good]),
            [i for _, _, i in good], len(items))


def zero_shot(model: CLIP, evalset: EvalSet, features: torch.Tensor, labels: torch.Tensor
              ) -> dict[str, float]:
    """Top-1/top-5 accuracy and mean per-class recall of the zero-shot classifier."""
    tokenizer = Tokenizer(model.config.text.context_length)
    weights = classifier_weights(model, tokenizer, evalset.classnames, evalset.templates)
    logits = features.to(weights.device) @ weights.float()
    labels = labels.to(weights.device)
    return {**topk_accuracy(logits, labels, ks=(1, min(5, len(evalset.classnames)))),
            "mean_per_class_recall": mean_per_class_recall(
                logits.argmax(dim=1), labels, len(evalset.classnames))}


def linear_probe(train: tuple[torch.Tensor, torch.Tensor],
                 test: tuple[torch.Tensor, torch.Tensor], cs: list[float], seed: int,
                 n_classes: int) -> dict[str, float]:
    """Logistic regression on frozen features; C picked on a fifth of `train` held out."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = train[0].numpy(), train[1].numpy()
    counts = np.bincount(y)
    stratify = y if counts[counts > 0].min() >= 2 else None
    fit_x, val_x, fit_y, val_y = train_test_split(x, y, test_size=0.2, random_state=seed,
                                                  stratify=stratify)

    def fit(c: float, xs: np.ndarray, ys: np.ndarray) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(xs, ys)

    scores = {c: fit(c, fit_x, fit_y).score(val_x, val_y) for c in cs}
    best = max(cs, key=lambda c: (scores[c], -c))  # ties: the stronger regularization
    predictions = torch.from_numpy(fit(best, x, y).predict(test[0].numpy()))
    return {"top1": (predictions == test[1]).float().mean().item(),
            "mean_per_class_recall": mean_per_class_recall(predictions, test[1], n_classes),
            "C": best, "validation_top1": scores[best]}


def evaluate_set(model: CLIP, evalset: EvalSet, cfg: EvalConfig) -> dict:
    """Zero-shot (and linear-probe) metrics of one set, with its image counts."""
    test_x, test_y, unreadable = image_features(model, evalset.test, cfg)
    result = {"classes": len(evalset.classnames), "templates": len(evalset.templates),
              "test_images": len(test_y), "zero_shot": zero_shot(model, evalset, test_x, test_y)}
    if cfg.linear_probe and evalset.train is not None:
        train_x, train_y, bad_train = image_features(model, evalset.train, cfg)
        unreadable += bad_train
        result["train_images"] = len(train_y)
        result["linear_probe"] = linear_probe((train_x, train_y), (test_x, test_y),
                                              cfg.probe_cs, cfg.seed, len(evalset.classnames))
    result["unreadable_images"] = len(unreadable)
    if unreadable:
        log.warning("%s: %d unreadable image(s) skipped, e.g. %s", evalset.name,
                    len(unreadable), unreadable[0])
        result["unreadable_examples"] = unreadable[:10]
    return result


@torch.no_grad()
def retrieval(model: CLIP, shards: str, cfg: EvalConfig) -> dict:
    """Image↔text recall@1/5/10 over every readable pair of `shards` (one caption each)."""
    device = next(model.parameters()).device
    tokenizer = Tokenizer(model.config.text.context_length)
    pipe = make_pipeline(shards, cfg.batch_size, model.config.vision.image_size, tokenizer,
                         train=False)
    images, texts, skipped = [], [], Counter()
    for batch in pipe:  # retrieval_recall normalizes the features
        images.append(model.encode_image(batch.images.to(device)).float())
        texts.append(model.encode_text(batch.tokens.to(device)).float())
        skipped.update(batch.skipped)
    if not images:
        raise InputError(f"no readable image-caption pair in {shards}")
    image_x, text_x = torch.cat(images), torch.cat(texts)
    pairs = torch.arange(len(image_x), device=image_x.device)
    return {"pairs": len(pairs), "skipped": dict(skipped),
            **retrieval_recall(image_x, text_x, pairs)}


def evaluate_all(cfg: EvalConfig) -> dict:
    """Evaluate the checkpoint on every configured set and return the results."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, name = load_model(cfg.checkpoint, cfg.model, device)
    torch.manual_seed(cfg.seed)
    results: dict = {"checkpoint": str(cfg.checkpoint), "model": name, "datasets": {}}
    for spec in cfg.datasets:
        evalset = load_eval_set(spec, cfg.templates)
        log.info("evaluating %s", evalset.name)
        results["datasets"][evalset.name] = evaluate_set(model, evalset, cfg)
    if cfg.retrieval_shards:
        results["retrieval"] = retrieval(model, cfg.retrieval_shards, cfg)
    return results
