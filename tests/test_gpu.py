"""GPU paths: run on a machine with CUDA (`pytest -m gpu`); skipped elsewhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from tests.builders import CAPTIONS, digit_shards, png, write_shard
from wit_builder.clip.configs import TrainConfig, get_config
from wit_builder.clip.model import CLIP
from wit_builder.clip.tokenizer import Tokenizer

pytestmark = pytest.mark.gpu


def test_cuda_features_equal_cpu_features():
    torch.manual_seed(0)
    model = CLIP(get_config("tiny")).eval()
    images, tokens = torch.randn(4, 3, 32, 32), Tokenizer()(CAPTIONS[:4])
    with torch.no_grad():
        cpu = model.encode_image(images), model.encode_text(tokens)
        model = model.cuda()
        gpu = model.encode_image(images.cuda()), model.encode_text(tokens.cuda())
    for a, b in zip(cpu, gpu, strict=True):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-3, atol=1e-3)


def test_bf16_training_on_cuda_learns_and_saves_cpu_loadable_checkpoints(tmp_path):
    from wit_builder.clip.train import train

    digits = (load_digits().images * 255 / 16).astype(np.uint8)
    members = []
    for k in range(32):
        members += [(f"{k:04d}.png", png(digits[k])), (f"{k:04d}.txt", CAPTIONS[k].encode())]
    shard = write_shard(tmp_path / "00000.tar", members)
    cfg = TrainConfig(shards=str(shard), out=tmp_path / "run", model="tiny", batch_size=16,
                      steps=40, lr=1e-3, warmup_steps=2, weight_decay=0.0, workers=0,
                      precision="bf16", log_every=5, save_every=20)
    last = train(cfg)
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["step"] == 40
    CLIP(get_config("tiny")).load_state_dict(state["state_dict"])
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()

    losses = [json.loads(line)["loss"] for line in lines]
    assert losses[-1] < 0.7 * losses[0]


def test_overlap_on_cuda_finds_what_the_cpu_finds(tmp_path, spark):
    """Detector embeddings on CUDA (and the fp16 flat index when faiss has GPU support)
    give the same matches as the CPU, scores within fp16 rounding."""
    import pyarrow.parquet as pq

    from wit_builder.clip.evalsets import load_digits_set
    from wit_builder.overlap import detector, overlap_job
    from wit_builder.overlap.configs import OverlapConfig

    torch.manual_seed(0)
    model_dir = tmp_path / "detector"
    model_dir.mkdir()
    detector.save(detector.export(detector.CopyDetector(), 64), model_dir / "model.pt2")
    (model_dir / "detector.json").write_text(json.dumps(
        detector.describe("resnet18", 256, 64, 0.999)))
    test = load_digits_set().test
    members = [(f"{i:04d}.png", png(np.asarray(test.load(i)))) for i in range(0, 40, 3)]
    shard = write_shard(tmp_path / "00000.tar", members)
    found = {}
    for device in ("cpu", "cuda"):
        cfg = OverlapConfig(shards=str(shard), out=tmp_path / device, device=device,
                            method=f"detector:{model_dir}", k=1)
        rows = pq.read_table(overlap_job.run(cfg, spark).out_dir / "overlap.parquet")
        found[device] = {(r["key"], r["eval_index"]): r["score"] for r in rows.to_pylist()}
    assert found["cpu"].keys() == found["cuda"].keys() and len(found["cpu"]) >= 10
    for key, score in found["cpu"].items():
        assert abs(score - found["cuda"][key]) < 2e-3


def test_training_resumed_mid_epoch_on_cuda_reaches_the_same_weights(tmp_path):
    """Two DataLoader workers, fp32: a run resumed from another run's mid-epoch
    checkpoint (its readers' positions) ends with the uninterrupted run's weights."""
    import shutil

    from wit_builder.clip.train import train

    digit_shards(tmp_path, 4, 24)
    settings = dict(shards=f"{tmp_path}/{{00000..00003}}.tar", model="tiny", batch_size=8,
                    steps=12, lr=1e-3, warmup_steps=2, workers=2, precision="fp32",
                    shuffle_buffer=8, log_every=3, save_every=3)
    full = train(TrainConfig(**settings, out=tmp_path / "full"))
    (tmp_path / "resumed" / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "full/checkpoints/step_00000006.pt", tmp_path / "resumed/checkpoints")
    (tmp_path / "resumed/checkpoints/latest").write_text("step_00000006.pt\n")
    resumed = train(TrainConfig(**settings, out=tmp_path / "resumed"))
    a, b = (torch.load(p, map_location="cpu", weights_only=True) for p in (full, resumed))
    assert b["step"] == 12 and (a["epoch"], a["batches_done"]) == (b["epoch"], b["batches_done"])
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=1e-5, atol=1e-6)
