"""`wit train` on real images: learning, exact accumulation, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.builders import (
    CAPTIONS,
    digit_shards,
    gated_shards,
    repo_env,
    tiny_reference,
    wait_for_fifo,
    wait_until,
)
from wit_builder.clip import checkpoint, readers
from wit_builder.clip.configs import TrainConfig
from wit_builder.clip.data import Batch
from wit_builder.clip.distributed import DistInfo
from wit_builder.clip.loss import ClipLoss
from wit_builder.clip.model import create_model
from wit_builder.clip.tokenizer import Tokenizer
from wit_builder.clip.train import accumulated_backward, train


@pytest.fixture(scope="module")
def shard_files(tmp_path_factory) -> list[Path]:
    """2 shards × 16 real digit images, each with its own real alt-text."""
    return digit_shards(tmp_path_factory.mktemp("train_shards"), 2, 16)


@pytest.fixture(scope="module")
def shards(shard_files) -> str:
    return f"{shard_files[0].parent}/{{00000..00001}}.tar"


def settings(shards: str, out: Path, **extra) -> dict:
    base = dict(shards=shards, out=out, model="tiny", batch_size=8, steps=12, lr=1e-3,
                warmup_steps=2, workers=0, precision="fp32", log_every=2, save_every=2)
    return {**base, **extra}


def test_training_learns_and_writes_open_clip_checkpoints(shards, tmp_path):
    cfg = TrainConfig(**settings(shards, tmp_path / "run", steps=50, batch_size=16,
                                 weight_decay=0.0, log_every=5, save_every=10))
    last = train(cfg)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == list(range(5, 51, 5))
    assert records[-1]["loss"] < 0.5 * records[0]["loss"]  # it memorizes 32 pairs
    assert {"lr", "temperature", "samples_per_s", "data_wait_s", "skipped"} <= set(records[0])
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    state = torch.load(last, weights_only=True)
    assert state["step"] == 50
    tiny_reference().load_state_dict(state["state_dict"], strict=True)
    assert len(list((tmp_path / "run" / "checkpoints").glob("step_*.pt"))) == 3  # kept


def test_gradient_accumulation_equals_one_big_batch(shards):
    cfg = TrainConfig(**settings(shards, Path("unused")))
    images = torch.randn(8, 3, 32, 32)
    tokens = Tokenizer()(CAPTIONS[:8])

    def grads(micro: list[Batch]) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = create_model("tiny")
        accumulated_backward(model, ClipLoss(), micro, cfg, torch.device("cpu"))
        return [p.grad for p in model.parameters()]

    whole = grads([Batch(images, tokens)])
    halves = grads([Batch(images[:4], tokens[:4]), Batch(images[4:], tokens[4:])])
    for a, b in zip(whole, halves, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("grouping", [{"group_text": True}, {"text_groups": 3}])
def test_grouped_text_gives_the_same_loss_and_gradients(shards, grouping):
    images, tokens = torch.randn(16, 3, 32, 32), Tokenizer()(CAPTIONS[:16])
    results = []
    for extra in ({}, grouping):
        cfg = TrainConfig(**settings(shards, Path("unused"), **extra))
        torch.manual_seed(0)
        model = create_model("tiny")
        loss = accumulated_backward(model, ClipLoss(), [Batch(images, tokens)], cfg,
                                    torch.device("cpu"))
        results.append((loss, [p.grad for p in model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_compile_with_variable_text_groups_is_refused(shards):
    with pytest.raises(ValueError, match="with compile use text_groups"):
        TrainConfig(**settings(shards, Path("unused"), group_text=True, compile=True))
    with pytest.raises(ValueError, match="set one"):
        TrainConfig(**settings(shards, Path("unused"), group_text=True, text_groups=2))
    assert TrainConfig(**settings(shards, Path("unused"), text_groups=4, compile=True))


@pytest.fixture(scope="module")
def six_shards(tmp_path_factory) -> list[Path]:
    """6 shards × 16 real digit images with real alt-texts: 12 batches of 8 an epoch."""
    return digit_shards(tmp_path_factory.mktemp("six_shards"), 6, 16)


def wit_train(shards: str, out: Path, workers: int) -> list[str]:
    """`wit train` of one epoch of `six_shards`, a checkpoint every 3 steps."""
    args = settings(shards, out, workers=workers, steps=12, save_every=3)
    cmd = [sys.executable, "-m", "wit_builder.cli", "train"]
    for key in ("shards", "out", "model", "batch_size", "steps", "lr"):
        cmd += [f"--{key.replace('_', '-')}", str(args[key])]
    for key in ("warmup_steps", "workers", "precision", "log_every", "save_every"):
        cmd += ["--set", f"{key}={args[key]}"]
    return [*cmd, "--set", "shuffle_buffer=4"]


def reader_orders(shards: list[Path], workers: int) -> list[list[str]]:
    """Each reader's shards in epoch 0 (seed 0, one rank)."""
    roles = max(workers, 1)
    return [readers.reader_shards([str(s) for s in shards], 0, 0, 0, 1, role, roles)
            for role in range(roles)]


@pytest.mark.parametrize(("workers", "saved"), [(0, 9), (2, 6)])
def test_killed_run_resumes_mid_epoch_to_identical_weights(six_shards, tmp_path, workers,
                                                           saved):
    """SIGKILL mid-epoch, rerun the same command: the final weights and optimizer state
    equal an uninterrupted run's exactly (tolerance 0 on CPU), and the rerun opens only
    the shards that its readers' saved positions still need: the shards they had read
    past are skipped unopened, and nothing consumed is decoded again.

    The killed run reads through a gate that holds each reader's last shard: every
    reader stops with its other shards read (9 batches in process; 3 per worker with
    two), the run saves step `saved` and waits; the test kills it there.
    """
    env = repo_env()
    shards = "::".join(str(s) for s in six_shards)
    subprocess.run(wit_train(shards, tmp_path / "full", workers), check=True, env=env,
                   capture_output=True)
    orders = reader_orders(six_shards, workers)
    gate = tmp_path / "gate"
    gated = gated_shards(six_shards, gate, after=10**6, held=[o[-1] for o in orders])
    cmd = wit_train(gated, tmp_path / "killed", workers)
    proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_fifo(gate / "arrived", proc)
    ckpts = tmp_path / "killed" / "checkpoints"
    wait_until(lambda: (ckpts / "latest").is_file()
               and (ckpts / "latest").read_text() == f"step_{saved:08d}.pt\n", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    opened = len((gate / "opened").read_text().splitlines())
    (gate / "free").touch()  # the rerun (same command, same config) passes the gate
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    full = torch.load(tmp_path / "full/checkpoints/step_00000012.pt", weights_only=True)
    resumed = torch.load(ckpts / "step_00000012.pt", weights_only=True)
    for key, value in full["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    for a, b in zip(full["optimizer"]["state"].values(),
                    resumed["optimizer"]["state"].values(), strict=True):
        assert torch.equal(a["exp_avg"], b["exp_avg"])
    assert (full["epoch"], full["batches_done"]) == (resumed["epoch"], resumed["batches_done"])
    start = torch.load(ckpts / f"step_{saved:08d}.pt", weights_only=True)["data"]["ranks"][0]
    needed = []
    for reader in start["readers"]:
        first = min([reader["shard"], *reader["buffer"][:, 0].tolist()])
        needed += orders[reader["role"]][first:]
    reopened = (gate / "opened").read_text().splitlines()[opened:]
    assert sorted(reopened) == sorted(needed) and len(reopened) < len(six_shards)


def test_resampled_run_resumes_with_a_fresh_seeded_draw(shards, tmp_path):
    """Resampled shards: a resumed run does not replay the draw (that would decode every
    batch since step 0); it starts a new one seeded by its step, reproducibly."""
    finals = []
    for run in ("a", "b"):
        out = tmp_path / run
        train(TrainConfig(**settings(shards, out, resampled=True, steps=4, save_every=4)))
        last = train(TrainConfig(**settings(shards, out, resampled=True, steps=8)))
        records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
        assert [(r["step"], r["epoch"]) for r in records] == [
            (2, 0), (4, 0), (6, 4), (8, 4)]  # 8 steps on 32 samples: one endless draw each
        finals.append(torch.load(last, weights_only=True))
    assert finals[0]["step"] == 8 and (finals[0]["epoch"], finals[0]["batches_done"]) == (4, 4)
    for key, value in finals[0]["state_dict"].items():
        assert torch.equal(value, finals[1]["state_dict"][key]), key


def test_torchrun_two_processes_train_in_step(shards, tmp_path):
    """`wit train` under torchrun (2 CPU processes, gloo): one metrics log and one
    checkpoint series from rank 0, the loss falls, and the run resumes like a single one."""
    env = repo_env(OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "wit_builder.cli", "train", "--shards", shards, "--out",
           str(tmp_path / "ddp"), "--model", "tiny", "--batch-size", "8", "--lr", "1e-3"]
    flags = ["--set", "workers=0", "--set", "precision=fp32", "--set", "warmup_steps=2",
             "--set", "log_every=2", "--set", "save_every=4", "--set", "weight_decay=0"]
    for steps in (12, 16):  # the second run resumes from step 12, with more steps
        more = ["--set", "resume=latest"] if steps == 16 else []
        proc = subprocess.run([*cmd, "--steps", str(steps), *flags, *more], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == list(range(2, 17, 2))  # rank 0 only, no repeats
    assert records[5]["loss"] < records[0]["loss"]
    state = torch.load(tmp_path / "ddp/checkpoints/step_00000016.pt", weights_only=True)
    assert state["step"] == 16
    # 2 ranks × 8 pairs per step over 2 shards of 16: each rank reads one shard, 2 steps
    # per epoch, so 16 steps end epoch 7
    assert (state["epoch"], state["batches_done"]) == (7, 2)


def test_reader_positions_are_used_only_where_they_fit(shards, tmp_path):
    """Saved positions point into one shard order: a rank count or data setting other
    than the checkpoint's (e.g. `resume=latest` with a new seed) does not use them."""
    cfg = TrainConfig(**settings(shards, tmp_path))
    rank = {"roles": 1, "last_role": 0, "readers": []}
    state = {"data": {"world": 1, "ranks": [rank]}, "config": cfg.model_dump(mode="json")}
    alone = DistInfo(0, 1, 0, torch.device("cpu"))
    assert checkpoint.rank_data(state, cfg, alone) is rank
    assert checkpoint.rank_data(state, cfg.model_copy(update={"workers": 3}), alone) is rank
    for change in ({"seed": 1}, {"shuffle_buffer": 7}, {"batch_size": 4}):
        assert checkpoint.rank_data(state, cfg.model_copy(update=change), alone) is None
    assert checkpoint.rank_data(state, cfg, DistInfo(1, 2, 1, torch.device("cpu"))) is None
    assert checkpoint.rank_data({"config": state["config"]}, cfg, alone) is None
