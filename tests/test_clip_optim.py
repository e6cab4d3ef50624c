"""Optimizer groups, LR schedule and temperature clamp of the CLIP recipe."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from wit_builder.clip.model import create_model
from wit_builder.clip.optim import (
    clamp_logit_scale,
    cosine_lr,
    make_optimizer,
    param_groups,
)


def test_no_decay_on_gains_biases_and_temperature():
    model = create_model("tiny")
    decay, exempt = param_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    exempt_names = {names[id(p)] for p in exempt["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert "logit_scale" in exempt_names and "visual.class_embedding" in exempt_names
    assert "ln_final.weight" in exempt_names and "visual.conv1.weight" in decay_names
    assert "transformer.resblocks.0.attn.in_proj_bias" in exempt_names
    assert {"token_embedding.weight", "text_projection", "visual.proj"} <= decay_names
    assert exempt["weight_decay"] == 0.0 and decay["weight_decay"] == 0.2
    assert len(exempt_names) + len(decay_names) == len(list(model.parameters()))


def test_adamw_settings():
    opt = make_optimizer(create_model("tiny"), lr=5e-4)
    assert opt.defaults["betas"] == (0.9, 0.98) and opt.defaults["eps"] == 1e-6


def test_cosine_schedule_with_warmup():
    lr = [cosine_lr(s, 1.0, warmup_steps=10, total_steps=110) for s in range(120)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)
    assert lr[10] == pytest.approx(1.0) and lr[60] == pytest.approx(0.5)
    assert lr[110] == pytest.approx(0.0, abs=1e-12) and lr[119] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(lr[10:]))


def test_temperature_is_clamped_at_100():
    model = create_model("tiny")
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    clamp_logit_scale(model)
    assert model.logit_scale.exp().item() == pytest.approx(100.0)
    assert model.logit_scale.item() == pytest.approx(math.log(100))
