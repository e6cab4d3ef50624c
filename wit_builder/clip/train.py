"""`wit train`: train CLIP from scratch on webdataset shards (single process or torchrun).

One optimizer step consumes `accum_steps` micro-batches of `batch_size` pairs per rank.
Gradient accumulation is exact for the contrastive loss: features of all micro-batches are
first computed without gradient, then each micro-batch is recomputed with gradient while
the others' cached features fill the rest of the logits matrix, so the update equals one
step on the whole batch (the temperature's gradient is taken once, not per micro-batch).

Resuming (``--resume auto``, the default) restores weights, optimizer, step, RNG and the
data position (epoch, batches consumed, and where each data reader stood), so a run
killed at any moment and restarted reaches the same weights as an uninterrupted run
(bit-identical on CPU; on GPU up to non-deterministic kernels) without decoding the
epoch's consumed samples again. The learning rate is a pure function of the step. With
``resampled`` shards a resumed run starts a new seeded draw instead (see
`stream.data_start`). The run directory's contract (which config may resume it) is in
`train_job`; the data stream is `stream`, checkpoints `checkpoint`, logging `metrics`.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
from torch import nn

from wit_builder.clip import checkpoint
from wit_builder.clip.configs import TrainConfig, get_config
from wit_builder.clip.data import Batch
from wit_builder.clip.distributed import DistInfo, init_distributed, unwrap
from wit_builder.clip.loss import ClipLoss
from wit_builder.clip.metrics import MetricsLog, Window
from wit_builder.clip.model import CLIP, TextGroups, group_by_length, split_by_length
from wit_builder.clip.optim import clamp_logit_scale, cosine_lr, make_optimizer, set_lr
from wit_builder.clip.stream import BatchStream, data_start, next_micro_batches
from wit_builder.clip.tokenizer import Tokenizer

log = logging.getLogger(__name__)


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


def wrap(model: CLIP, cfg: TrainConfig, dist: DistInfo) -> nn.Module:
    """DDP across ranks, then torch.compile, as configured."""
    wrapped: nn.Module = model
    if dist.world > 1:
        ids = [dist.local_rank] if dist.device.type == "cuda" else None
        wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return torch.compile(wrapped, mode=cfg.compile_mode) if cfg.compile else wrapped


def train(cfg: TrainConfig) -> Path:
    """Train to `cfg.steps`, resuming if a checkpoint exists; returns the last checkpoint."""
    from rich.progress import Progress

    dist = init_distributed()
    cfg.out.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg, dist)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay,
                               fused=dist.device.type == "cuda")
    start = checkpoint.restore(model, optimizer, cfg, dist)
    step, last = start.step, start.path
    position, replay = data_start(cfg, step, start.epoch, start.batches_done, start.data)
    wrapped, loss_fn = wrap(model, cfg, dist), ClipLoss(cfg.local_loss)
    vision, text = get_config(cfg.model).vision, get_config(cfg.model).text
    stream = BatchStream(cfg, vision.image_size, Tokenizer(text.context_length), position,
                         replay)
    metrics, window = MetricsLog(cfg.out, dist.is_main), Window()
    samples_per_step = cfg.batch_size * cfg.accum_steps * dist.world
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
                metrics.write({"step": step, "epoch": position.epoch, "loss": loss,
                               "lr": optimizer.param_groups[0]["lr"], "logit_scale": scale,
                               "temperature": 1 / scale, **window.summary(samples_per_step)})
            if step % cfg.save_every == 0 or step == cfg.steps:
                last = checkpoint.save_training(model, optimizer, cfg, step, position, dist)
    metrics.close()
    return last or cfg.out


