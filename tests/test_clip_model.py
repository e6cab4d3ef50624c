"""The CLIP model and tokenizer against open_clip 3.3.0 (the reference implementation)."""

from __future__ import annotations

import warnings

import open_clip
import pytest
import torch

from tests.builders import CAPTIONS, tiny_reference
from wit_builder.clip.model import (
    CLIP,
    TextGroups,
    create_model,
    group_by_length,
    split_by_length,
)
from wit_builder.clip.tokenizer import Tokenizer


def reference(name: str) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_clip.create_model(name, pretrained=None).eval()


@pytest.mark.parametrize("name", ["ViT-B-32", "ViT-B-16", "ViT-S-32"])
def test_state_dict_layout_equals_open_clip(name):
    ours = {k: v.shape for k, v in create_model(name).state_dict().items()}
    theirs = {k: v.shape for k, v in reference(name).state_dict().items()}
    assert ours == theirs


def assert_same_outputs(ours: CLIP, theirs: torch.nn.Module, image_size: int) -> None:
    torch.manual_seed(0)
    images = torch.randn(3, 3, image_size, image_size)
    tokens = Tokenizer()(CAPTIONS[:3])
    with torch.no_grad():
        for mine, ref in ((ours.encode_image(images), theirs.encode_image(images)),
                          (ours.encode_text(tokens), theirs.encode_text(tokens))):
            assert (mine - ref).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", ["ViT-B-32", "ViT-B-32-quickgelu", "ViT-B-16", "ViT-S-32"])
def test_our_weights_load_strictly_into_open_clip_and_agree(name):
    ours = create_model(name).eval()
    theirs = reference(name)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    assert_same_outputs(ours, theirs, 224)


def test_open_clip_weights_load_here_and_agree():
    theirs = reference("ViT-B-32")
    ours = create_model("ViT-B-32").eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert_same_outputs(ours, theirs, 224)
    assert ours.logit_scale.exp().item() == pytest.approx(1 / 0.07)


def test_tiny_config_matches_open_clip_class():
    ours = create_model("tiny").eval()
    theirs = tiny_reference()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    assert_same_outputs(ours, theirs, 32)


def test_quick_gelu_changes_the_function():
    plain, quick = create_model("tiny").eval(), create_model("tiny-quickgelu").eval()
    quick.load_state_dict(plain.state_dict())
    images = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(plain.encode_image(images), quick.encode_image(images))


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(1)
    model = create_model("tiny")
    images, tokens = torch.randn(4, 3, 32, 32), Tokenizer()(CAPTIONS[:4])

    def grads() -> list[torch.Tensor]:
        model.zero_grad()
        img, txt, scale = model(images, tokens)
        (scale * img @ txt.T).logsumexp(dim=1).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.set_grad_checkpointing(True)
    for a, b in zip(plain, grads(), strict=True):
        torch.testing.assert_close(a, b)


def check_groups(tokens: torch.Tensor, groups: TextGroups) -> list[tuple[int, int]]:
    """The groups hold every row once, each with its EOT; returns their (rows, length)."""
    needed = tokens.argmax(dim=-1) + 1
    joined = torch.cat([torch.nn.functional.pad(p, (0, tokens.shape[1] - p.shape[1]))
                        for p in groups.parts])
    assert torch.equal(joined[groups.inverse], tokens)  # nobody loses its EOT or a token
    shapes = [tuple(p.shape) for p in groups.parts]
    assert all(n % 16 == 0 or n == 77 for _, n in shapes)
    lengths = [n for _, n in shapes]
    assert lengths == sorted(lengths)
    for part in groups.parts:  # each cut to its longest row, rounded up
        assert (part.argmax(dim=-1) + 1).max() > part.shape[1] - 16
    assert sum(r for r, _ in shapes) == len(needed)
    return shapes


def test_length_groups_cover_the_batch_and_bound_shapes():
    tokens = Tokenizer()(CAPTIONS[:256])
    shapes = check_groups(tokens, group_by_length(tokens, multiple=16, min_rows=8))
    assert min(r for r, _ in shapes) >= 8
    assert len({n for _, n in shapes}) == len(shapes)  # one group per rounded length
    # real alt-texts are short: well under half of the 256 × 77 positions are run
    assert sum(r * n for r, n in shapes) < 0.5 * 256 * 77


def test_equal_length_groups_keep_row_counts_fixed():
    """`split_by_length`: row counts depend only on the batch size (compile-friendly)."""
    for start in (0, 256, 512):
        tokens = Tokenizer()(CAPTIONS[start:start + 256])
        shapes = check_groups(tokens, split_by_length(tokens, parts=4))
        assert [r for r, _ in shapes] == [64] * 4
        assert sum(r * n for r, n in shapes) < 0.6 * 256 * 77
    shapes = check_groups(tokens[:10], split_by_length(tokens[:10], parts=4))
    assert [r for r, _ in shapes] == [3, 3, 2, 2]
    assert len(split_by_length(tokens[:2], parts=4).parts) == 2


def test_length_groups_give_the_same_features_and_gradients():
    """Causal attention: positions after a row's EOT never reach its features."""
    tokens = Tokenizer()(CAPTIONS[:64])
    variable, equal = group_by_length(tokens, min_rows=4), split_by_length(tokens, 3)
    assert len(variable.parts) > 1
    torch.manual_seed(0)
    model = create_model("tiny")
    results = []
    for g in (None, variable, equal):
        model.zero_grad()
        features = model.encode_text(tokens, normalize=True, groups=g)
        (features * torch.linspace(-1, 1, features.numel()).view_as(features)).sum().backward()
        results.append((features.detach(), [p.grad.clone() for p in model.parameters()
                                            if p.grad is not None]))
    for features, grads in results[1:]:
        torch.testing.assert_close(results[0][0], features, rtol=0, atol=1e-5)
        for a, b in zip(results[0][1], grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_unknown_model_name():
    with pytest.raises(KeyError, match="known"):
        create_model("ViT-X-99")


def test_tokenizer_ids_equal_open_clip_on_real_captions():
    extra = ["", "A &amp;amp; B", "naïve café 😀 日本語 123,456", "don't it's we'll", "x" * 500]
    texts = CAPTIONS + extra
    ours, theirs = Tokenizer()(texts), open_clip.get_tokenizer("ViT-B-32")(texts)
    assert len(texts) > 900 and torch.equal(ours, theirs)


def test_tokenizer_truncation_keeps_eot():
    tok = Tokenizer()
    ids = tok(["word " * 200])[0]
    assert ids.shape == (77,) and ids[0] == tok.sot_id and ids[-1] == tok.eot_id
    assert ids.argmax() == 76  # the text tower pools here
    short = tok(["a dog"])[0]
    assert short[:4].tolist() == [tok.sot_id, *tok.encode("a dog"), tok.eot_id][:4]
    assert (short[4:] == 0).all() and tok.vocab_size == 49408
