"""Contrastive loss: formula, and 2-process DDP (gloo, CPU) equal to one process."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from wit_builder.clip.loss import ClipLoss
from wit_builder.clip.model import create_model

BATCH = 8


def test_loss_matches_the_formula():
    torch.manual_seed(0)
    img = F.normalize(torch.randn(5, 16), dim=-1)
    txt = F.normalize(torch.randn(5, 16), dim=-1)
    scale = torch.tensor(10.0)
    logits = scale * img @ txt.T
    manual = sum(-torch.log_softmax(logits, 1)[i, i] - torch.log_softmax(logits, 0)[i, i]
                 for i in range(5)) / 10
    torch.testing.assert_close(ClipLoss()(img, txt, scale), manual)
    perfect = ClipLoss()(img, img, torch.tensor(100.0))
    assert perfect < ClipLoss()(img, txt, torch.tensor(100.0))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(BATCH, 3, 32, 32, generator=generator)
    tokens = torch.randint(1, 49406, (BATCH, 77), generator=generator)
    tokens[:, 10] = 49407  # EOT, pooled position
    tokens[:, 11:] = 0
    return images, tokens


def single_process(local_loss: bool) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = create_model("tiny")
    images, tokens = batch()
    loss = ClipLoss(local_loss)(*model(images, tokens))
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def worker(rank: int, world: int, port: int, local_loss: bool, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = DistributedDataParallel(create_model("tiny"))
    images, tokens = batch()
    part = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    loss = ClipLoss(local_loss)(*model(images[part], tokens[part]))
    loss.backward()  # DDP averages the gradients over ranks
    losses = [torch.zeros(()) for _ in range(world)]
    dist.all_gather(losses, loss.detach())
    if rank == 0:
        grads = {n.removeprefix("module."): p.grad for n, p in model.named_parameters()}
        torch.save({"losses": losses, "grads": grads}, out)
    # Both ranks leave together: a rank tearing gloo down while the other still talks
    # to it aborted once ("terminate called without an active exception").
    dist.barrier()
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("local_loss", [False, True])
def test_two_process_ddp_equals_single_process(local_loss, tmp_path):
    out = str(tmp_path / "rank0.pt")
    mp.spawn(worker, args=(2, free_port(), local_loss, out), nprocs=2, join=True)
    result = torch.load(out)
    loss, grads = single_process(local_loss)
    ranks = torch.stack(result["losses"])
    if local_loss:
        assert ranks.mean().item() == pytest.approx(loss, rel=1e-5)
    else:
        assert torch.allclose(ranks, torch.full_like(ranks, loss), rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(result["grads"][name], grad, rtol=1e-4, atol=1e-6,
                                   msg=name)
