"""`wit train`: train CLIP from scratch on webdataset shards (single process or torchrun).

One optimizer step consumes `accum_steps` micro-batches of `batch_size` pairs per rank.
Gradient accumulation is exact for the contrastive loss: features of all micro-batches are
first computed without gradient, then each micro-batch is recomputed with gradient while
the others' cached features fill the rest of the logits matrix, so the update equals one
step on the whole batch (the temperature's gradient is taken once, not per micro-batch).

Resuming (``--resume latest``, the default) restores weights, optimizer, step, RNG and the
data position (epoch and batches consumed), so a run killed at any moment and restarted
reaches the same weights as an uninterrupted run (bit-identical on CPU; on GPU up to
non-deterministic kernels). The learning rate is a pure function of the step. With
``resampled`` shards a resumed run starts a new seeded draw instead (see `data_start`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from wit_builder.clip import checkpoint
from wit_builder.clip.configs import get_config
from wit_builder.clip.data import Batch, make_pipeline
from wit_builder.clip.distributed import DistInfo, init_distributed, unwrap
from wit_builder.clip.loss import ClipLoss
from wit_builder.clip.model import CLIP, TextGroups, group_by_length, split_by_length
from wit_builder.clip.optim import clamp_logit_scale, cosine_lr, make_optimizer, set_lr
from wit_builder.clip.tokenizer import Tokenizer
from wit_builder.errors import InputError

log = logging.getLogger(__name__)


class TrainConfig(BaseModel):
    """Parameters of `wit train`; defaults follow the CLIP paper's recipe where it has one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shards: str = Field(description="webdataset shards: brace pattern, glob or a::b list")
    out: Path = Field(description="run directory: checkpoints, metrics.jsonl, tensorboard/")
    model: str = Field("ViT-B-32", description="model config name (see clip/configs.py)")
    batch_size: int = Field(256, ge=1, description="pairs per rank per micro-batch")
    accum_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    steps: int = Field(1000, ge=1, description="optimizer steps in total")
    lr: float = Field(5e-4, gt=0)
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.2, ge=0)
    grad_clip: float | None = Field(None, gt=0, description="max gradient norm")
    precision: Literal["fp32", "bf16"] = Field("bf16", description="bf16 = autocast")
    grad_checkpointing: bool = False
    compile: bool = Field(False, description="torch.compile the model")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune",
                          "max-autotune-no-cudagraphs"] = Field(
        "default", description="torch.compile mode; reduce-overhead = CUDA graphs")
    group_text: bool = Field(False, description="run captions in length groups: exact, "
                             "skips compute on padding; pays off when compute-bound (CPU, "
                             "large batches), not with compile (shapes change per batch)")
    text_groups: int = Field(0, ge=0, description="N > 0: sort captions by length into N "
                             "equal groups, each run to its longest caption: exact, and "
                             "few shapes, so it works with compile and CUDA graphs")
    local_loss: bool = Field(False, description="per-rank logits rows (less memory)")
    resampled: bool = Field(False, description="draw shards with replacement, endlessly; "
                            "a resumed run starts a new draw seeded by its step")
    shuffle_buffer: int = Field(1000, ge=1)
    workers: int = Field(4, ge=0, description="DataLoader worker processes per rank")
    seed: int = 0
    save_every: int = Field(500, ge=1, description="checkpoint every N steps")
    keep_checkpoints: int = Field(3, ge=1)
    log_every: int = Field(10, ge=1)
    resume: str | None = Field("latest", description="'latest', a checkpoint path, or None")

    @model_validator(mode="after")
    def _one_text_grouping(self) -> TrainConfig:
        if self.compile and self.group_text:
            raise ValueError("group_text changes the text shapes every batch, which would "
                             "recompile the model: with compile use text_groups=N")
        if self.group_text and self.text_groups:
            raise ValueError("group_text and text_groups are two ways to group captions: "
                             "set one")
        return self


class DataRng:
    """A private torch RNG for in-process data loading (``workers=0``): random crops then
    do not consume the training RNG, so skipping batches on resume replays them exactly."""

    def __init__(self, seed: int) -> None:
        self.state = torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        outer = torch.get_rng_state()
        torch.set_rng_state(self.state)
        try:
            yield
        finally:
            self.state = torch.get_rng_state()
            torch.set_rng_state(outer)


def epoch_seed(cfg: TrainConfig, epoch: int) -> int:
    return cfg.seed * 1_000_003 + epoch


def batch_stream(cfg: TrainConfig, image_size: int, tokenizer: Tokenizer, epoch: int,
                 skip: int) -> Iterator[tuple[int, int, Batch]]:
    """(epoch, index in epoch, batch) forever, starting after `skip` batches of `epoch`."""
    while True:
        pipe = make_pipeline(cfg.shards, cfg.batch_size, image_size, tokenizer, train=True,
                             resampled=cfg.resampled, seed=cfg.seed, epoch=epoch,
                             shuffle_buffer=cfg.shuffle_buffer)
        loader = torch.utils.data.DataLoader(
            pipe, batch_size=None, num_workers=cfg.workers,
            generator=torch.Generator().manual_seed(epoch_seed(cfg, epoch)))
        rng, index, batches = DataRng(epoch_seed(cfg, epoch)), 0, iter(loader)
        while True:
            with rng.active():
                batch = next(batches, None)
            if batch is None:
                break
            if index >= skip:
                yield epoch, index, batch
            index += 1
        if index == 0:
            raise InputError(f"no usable sample in {cfg.shards}")
        epoch, skip = epoch + 1, 0


def build_model(cfg: TrainConfig, dist: DistInfo) -> CLIP:
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    if dist.device.type == "cuda":  # fp32 matmuls outside autocast (loss logits) on TF32
        torch.backends.cuda.matmul.allow_tf32 = True
    model = CLIP(get_config(cfg.model)).to(dist.device)
    model.set_grad_checkpointing(cfg.grad_checkpointing)
    return model


def autocast(cfg: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")


def length_groups(tokens: torch.Tensor, cfg: TrainConfig) -> TextGroups | None:
    """The caption length groups `cfg` asks for (`group_text`, `text_groups`), or None."""
    if cfg.group_text:
        return group_by_length(tokens)
    if cfg.text_groups:
        return split_by_length(tokens, cfg.text_groups)
    return None


def to_device(batch: Batch, cfg: TrainConfig, device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor, TextGroups | None]:
    """Model inputs of a batch: images, tokens and caption length groups (cut on the
    host, so without a device sync)."""
    groups = length_groups(batch.tokens, cfg)
    if groups is not None:
        groups = groups.to(device)
        if cfg.compile:
            # Static: a graph per combination of group lengths (a few on real captions).
            # Dynamic lengths compile once but ran ~2x slower on an H100 (see README).
            for part in groups.parts:
                torch._dynamo.mark_static(part, 1)
    return (batch.images.to(device, non_blocking=True),
            batch.tokens.to(device, non_blocking=True), groups)


def accumulated_backward(model: nn.Module, loss_fn: ClipLoss, micro: list[Batch],
                         cfg: TrainConfig, device: torch.device) -> float:
    """Backward of the loss of all `micro`-batches as one batch; returns the loss."""
    inputs = [to_device(b, cfg, device) for b in micro]
    if cfg.compile:  # one new CUDA-graph "step" per optimizer step (reduce-overhead mode)
        torch.compiler.cudagraph_mark_step_begin()
    if len(inputs) == 1:
        with autocast(cfg, device):
            loss = loss_fn(*model(*inputs[0]))
        loss.backward()
        return loss.item()
    with torch.no_grad(), autocast(cfg, device):
        # cloned: CUDA-graph replays reuse their output memory
        cached = [[t.clone() for t in model(*x)[:2]] for x in inputs]
    for i, x in enumerate(inputs):
        last = i == len(inputs) - 1
        # DDP all-reduces on the last backward only
        sync = model.no_sync() if hasattr(model, "no_sync") and not last \
            else contextlib.nullcontext()
        with sync, autocast(cfg, device):
            image, text, scale = model(*x)
            images = torch.cat([*(c[0] for c in cached[:i]), image,
                                *(c[0] for c in cached[i + 1:])])
            texts = torch.cat([*(c[1] for c in cached[:i]), text,
                               *(c[1] for c in cached[i + 1:])])
            loss = loss_fn(images, texts, scale if i == 0 else scale.detach())
            loss.backward()
    return loss.item()


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                   step: int) -> None:
    """Schedule, clip, step, zero, clamp the temperature."""
    set_lr(optimizer, cosine_lr(step, cfg.lr, cfg.warmup_steps, cfg.steps))
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    clamp_logit_scale(unwrap(model))


class MetricsLog:
    """Rank 0's JSONL file and TensorBoard writer (both appended to on resume)."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.file = (out / "metrics.jsonl").open("a") if enabled else None
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for key, value in record.items():
            if isinstance(value, int | float) and key != "step":
                self.writer.add_scalar(f"train/{key}", value, record["step"])

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.writer.close()


def checkpoint_state(model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                     step: int, position: tuple[int, int]) -> dict[str, Any]:
    return {"state_dict": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
            "step": step, "epoch": position[0], "batches_done": position[1],
            "rng": checkpoint.rng_state(), "config": cfg.model_dump(mode="json")}


def restore(model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig
            ) -> tuple[int, int, int]:
    """Load the checkpoint `cfg.resume` names, if any: (step, epoch, batches done)."""
    path = checkpoint.resolve(cfg.out / "checkpoints", cfg.resume)
    if path is None:
        return 0, 0, 0
    state = checkpoint.load(path)
    unwrap(model).load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    checkpoint.set_rng_state(state["rng"])
    log.info("resumed from %s (step %s)", path, state["step"])
    return state["step"], state["epoch"], state["batches_done"]


def wrap(model: CLIP, cfg: TrainConfig, dist: DistInfo) -> nn.Module:
    """DDP across ranks, then torch.compile, as configured."""
    wrapped: nn.Module = model
    if dist.world > 1:
        ids = [dist.local_rank] if dist.device.type == "cuda" else None
        wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return torch.compile(wrapped, mode=cfg.compile_mode) if cfg.compile else wrapped


class Window:
    """Throughput, data-wait time and skipped samples since the last log line."""

    def __init__(self) -> None:
        self.start, self.steps, self.data_wait = time.perf_counter(), 0, 0.0
        self.skipped: Counter[str] = Counter()

    def record(self, micro: list[Batch], waited: float) -> None:
        self.steps += 1
        self.data_wait += waited
        for batch in micro:
            self.skipped.update(batch.skipped)

    def summary(self, samples_per_step: int) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.start
        out = {"samples_per_s": self.steps * samples_per_step / elapsed,
               "data_wait_s": self.data_wait, "skipped": dict(self.skipped)}
        self.__init__()
        return out


def data_start(cfg: TrainConfig, step: int, epoch: int, done: int) -> tuple[int, int]:
    """(epoch, batches to skip) to start the data from, given the checkpoint's position.

    Resampled shards are an endless draw with replacement: replaying it to the saved
    position would decode every batch since step 0, and a fresh draw is statistically the
    same, so a resumed run starts a new draw seeded by its step (logged as its epoch).
    """
    if cfg.resampled and step > 0:
        return step, 0
    return epoch, done


def next_micro_batches(stream: Iterator[tuple[int, int, Batch]], n: int
                       ) -> tuple[list[Batch], tuple[int, int], float]:
    """`n` batches, the data position after them, and the seconds spent waiting."""
    started, micro = time.perf_counter(), []
    for _ in range(n):
        epoch, index, batch = next(stream)
        micro.append(batch)
    return micro, (epoch, index + 1), time.perf_counter() - started


def train(cfg: TrainConfig) -> Path:
    """Train to `cfg.steps`, resuming if a checkpoint exists; returns the last checkpoint."""
    from rich.progress import Progress

    dist = init_distributed()
    cfg.out.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg, dist)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay,
                               fused=dist.device.type == "cuda")
    step, epoch, done = restore(model, optimizer, cfg)
    epoch, done = data_start(cfg, step, epoch, done)
    wrapped, loss_fn = wrap(model, cfg, dist), ClipLoss(cfg.local_loss)
    vision, text = get_config(cfg.model).vision, get_config(cfg.model).text
    stream = batch_stream(cfg, vision.image_size, Tokenizer(text.context_length), epoch, done)
    metrics, window = MetricsLog(cfg.out, dist.is_main), Window()
    samples_per_step = cfg.batch_size * cfg.accum_steps * dist.world
    last = checkpoint.resolve(cfg.out / "checkpoints", "latest")
    with Progress(disable=not dist.is_main, transient=True) as progress:
        task = progress.add_task("training", total=cfg.steps, completed=step)
        while step < cfg.steps:
            micro, position, waited = next_micro_batches(stream, cfg.accum_steps)
            loss = accumulated_backward(wrapped, loss_fn, micro, cfg, dist.device)
            optimizer_step(wrapped, optimizer, cfg, step)
            step += 1
            window.record(micro, waited)
            progress.update(task, completed=step, description=f"loss {loss:.3f}")
            if step % cfg.log_every == 0 or step == cfg.steps:
                scale = unwrap(model).logit_scale.exp().item()
                metrics.write({"step": step, "epoch": position[0], "loss": loss,
                               "lr": optimizer.param_groups[0]["lr"], "logit_scale": scale,
                               "temperature": 1 / scale, **window.summary(samples_per_step)})
            if step % cfg.save_every == 0 or step == cfg.steps:
                last = save_checkpoint(model, optimizer, cfg, step, position, dist)
    metrics.close()
    return last or cfg.out


def save_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                    step: int, position: tuple[int, int], dist: DistInfo) -> Path:
    """Rank 0 writes; every rank waits for it (so no rank runs ahead of a save)."""
    path = cfg.out / "checkpoints" / f"step_{step:08d}.pt"
    if dist.is_main:
        path = checkpoint.save(cfg.out / "checkpoints", step,
                               checkpoint_state(model, optimizer, cfg, step, position),
                               cfg.keep_checkpoints)
    if dist.world > 1:
        torch.distributed.barrier()
    return path
