"""Training-step benchmark: `wit train`'s step against open_clip 3.3.0's own training step.

    python benchmarks/clip_train.py --model tiny --batch-size 64            # CPU
    python benchmarks/clip_train.py --model ViT-B-32 --batch-size 256 \
        --variants open_clip,open_clip_compile,ours,ours_compile,ours_cudagraphs  # GPU

Baseline: ``open_clip_train.train.train_one_epoch`` (open_clip's training loop: autocast,
``ClipLoss``, AdamW with its two parameter groups, cosine schedule, logit-scale clamp) on an
``open_clip.create_model`` model of the same config; ``open_clip_compile`` adds its
``--torchcompile`` (whole model). Measured: our step (`wrap`, `accumulated_backward`,
`optimizer_step`: what `wit train` runs per step) on our model, as ``ours`` (eager),
``ours_compile`` (``compile=true``), ``ours_cudagraphs`` (``compile_mode=reduce-overhead``),
``ours_grouped`` (``group_text=true``, eager) and ``ours_*_groupsN`` (``text_groups=N``:
captions sorted into N equal groups, each run to its longest caption). All consume the
same pre-built batches (random pixels, token ids of the fixture's real LAION alt-texts, so
caption lengths are real) copied from pinned host memory each step; data loading is
excluded from all. Each variant runs `--warmup` steps (compilation included), then
`--rounds` timed rounds of `--steps` steps; the fastest round counts. Ratios are samples/s
over each baseline's.

TFLOP/s and MFU use the FLOPs each variant executes per step, counted by
`torch.utils.flop_counter` on one forward+backward (matmuls, convolutions, attention)
with the variant's text grouping: positions that a grouping skips are not counted, so a
grouped variant's MFU is the useful work it does. MFU = that rate / the device's dense
bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from wit_builder.clip.configs import TrainConfig, get_config  # noqa: E402
from wit_builder.clip.data import Batch  # noqa: E402
from wit_builder.clip.distributed import DistInfo  # noqa: E402
from wit_builder.clip.loss import ClipLoss  # noqa: E402
from wit_builder.clip.model import CLIP  # noqa: E402
from wit_builder.clip.optim import make_optimizer  # noqa: E402
from wit_builder.clip.tokenizer import Tokenizer  # noqa: E402
from wit_builder.clip.train import (  # noqa: E402
    accumulated_backward,
    length_groups,
    optimizer_step,
    wrap,
)

FIXTURES = Path(os.environ.get("WIT_FIXTURES", REPO.parent / "shared" / "fixtures"))
# Dense bf16 tensor-core peaks (vendor datasheets, SXM parts), TFLOP/s.
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}


def captions(n: int) -> list[str]:
    """`n` real alt-texts (cycled), or numbered stand-ins where the fixtures are absent."""
    path = FIXTURES / "alt_text" / "laion-alt-text-1000.parquet"
    if path.exists():
        import pyarrow.parquet as pq

        texts = [t for t in pq.read_table(path).column("TEXT").to_pylist() if t]
    else:
        texts = [f"a photo of item number {i}" for i in range(n)]
    return [texts[i % len(texts)] for i in range(n)]


def make_batches(name: str, batch_size: int, count: int) -> list[Batch]:
    """`count` distinct pinned batches (pixels ~ N(0,1), as after normalization)."""
    cfg = get_config(name)
    size, tok = cfg.vision.image_size, Tokenizer(cfg.text.context_length)
    gen = torch.Generator().manual_seed(0)
    pin = torch.cuda.is_available()
    out = []
    for i in range(count):
        images = torch.randn(batch_size, 3, size, size, generator=gen)
        tokens = tok(captions(batch_size * (i + 1))[-batch_size:])
        out.append(Batch(images.pin_memory() if pin else images,
                         tokens.pin_memory() if pin else tokens))
    return out


def step_flops(name: str, batch: Batch, device: torch.device, settings: dict) -> float:
    """FLOPs one training step (forward + backward) of our model executes on `batch` with
    `settings` (the text grouping ones matter: grouped captions run fewer positions)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = CLIP(get_config(name)).to(device)
    groups = length_groups(batch.tokens, train_config(name, len(batch.tokens), "fp32", settings))
    groups = groups.to(device) if groups is not None else None
    counter = FlopCounterMode(display=False)
    with counter:
        image, text, scale = model(batch.images.to(device), batch.tokens.to(device), groups)
        ClipLoss()(image, text, scale).backward()
    return float(counter.get_total_flops())


def timed(run_steps: Callable[[int], None], steps: int, warmup: int, rounds: int,
          device: torch.device) -> float:
    """Seconds of the fastest of `rounds` runs of `steps` steps, after `warmup` steps."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    run_steps(warmup)
    sync()
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        run_steps(steps)
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def train_config(name: str, batch_size: int, precision: str, settings: dict) -> TrainConfig:
    """The `wit train` settings a benchmark variant runs with."""
    return TrainConfig(shards="unused", out=Path("unused"), model=name, batch_size=batch_size,
                       steps=10**6, lr=5e-4, warmup_steps=100, precision=precision, **settings)


def ours(name: str, batches: list[Batch], args: argparse.Namespace, device: torch.device,
         **settings: object) -> Callable[[int], None]:
    """`wit train`'s step (`wrap`, `accumulated_backward`, `optimizer_step`) on our model."""
    cfg = train_config(name, args.batch_size, args.precision, settings)
    torch.manual_seed(0)
    model = CLIP(get_config(name)).to(device)
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay, fused=device.type == "cuda")
    wrapped = wrap(model, cfg, DistInfo(0, 1, 0, device))
    loss_fn, state = ClipLoss(), {"step": 0}

    def run(n: int) -> None:
        for _ in range(n):
            batch = batches[state["step"] % len(batches)]
            accumulated_backward(wrapped, loss_fn, [batch], cfg, device)
            optimizer_step(wrapped, optimizer, cfg, state["step"])
            state["step"] += 1
    return run


# Our variants: settings of `wit train` (see TrainConfig).
CUDAGRAPHS = {"compile": True, "compile_mode": "reduce-overhead"}
OURS = {"ours": {}, "ours_compile": {"compile": True}, "ours_cudagraphs": CUDAGRAPHS,
        "ours_grouped": {"group_text": True}, "ours_groups4": {"text_groups": 4},
        "ours_compile_groups4": {"compile": True, "text_groups": 4},
        "ours_cudagraphs_groups4": {**CUDAGRAPHS, "text_groups": 4},
        "ours_cudagraphs_groups8": {**CUDAGRAPHS, "text_groups": 8}}


def open_clip_model(name: str, precision: str, device: torch.device) -> torch.nn.Module:
    """open_clip's model of the same config (``tiny`` registered under a private name)."""
    import open_clip

    if name == "tiny":
        cfg = get_config(name)
        v, t = cfg.vision, cfg.text
        open_clip.factory._MODEL_CONFIGS["wit-tiny"] = {
            "embed_dim": cfg.embed_dim,
            "vision_cfg": {"image_size": v.image_size, "patch_size": v.patch_size,
                           "width": v.width, "layers": v.layers, "head_width": v.head_width},
            "text_cfg": {"context_length": t.context_length, "vocab_size": t.vocab_size,
                         "width": t.width, "heads": t.heads, "layers": t.layers}}
        name = "wit-tiny"
    return open_clip.create_model(name, precision=precision, device=device, output_dict=True)


class FixedLoader:
    """Endless-enough iterable of (images, tokens) with the attributes open_clip reads."""

    def __init__(self, batches: list[Batch], steps: int) -> None:
        self.batches, self.num_batches = batches, steps
        self.num_samples = steps * len(batches[0].images)

    def __iter__(self):
        for i in range(self.num_batches):
            batch = self.batches[i % len(self.batches)]
            yield batch.images, batch.tokens


def baseline(name: str, batches: list[Batch], args: argparse.Namespace, device: torch.device,
             compile_model: bool) -> Callable[[int], None]:
    """open_clip's `train_one_epoch`, one "epoch" of `n` steps per call."""
    import open_clip
    from open_clip_train.data import DataInfo
    from open_clip_train.params import parse_args
    from open_clip_train.scheduler import cosine_lr
    from open_clip_train.train import train_one_epoch

    precision = "amp_bf16" if args.precision == "bf16" else "fp32"
    oc_args = parse_args(["--model", name, "--precision", precision, "--lr", "5e-4",
                          "--warmup", "100", "--log-every-n-steps", str(10**9)])
    oc_args.device, oc_args.distributed, oc_args.world_size = str(device), False, 1
    oc_args.rank = oc_args.local_rank = 0
    oc_args.distill = oc_args.wandb = oc_args.tensorboard = False  # as main() derives them
    torch.manual_seed(0)
    model = open_clip_model(name, precision, device)
    decayless = [p for n, p in model.named_parameters()
                 if p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n]
    rest = [p for p in model.parameters() if all(p is not q for q in decayless)]
    optimizer = torch.optim.AdamW([{"params": decayless, "weight_decay": 0.0},
                                   {"params": rest, "weight_decay": 0.2}],
                                  lr=5e-4, betas=(0.9, 0.98), eps=1e-6)
    scheduler = cosine_lr(optimizer, 5e-4, 100, 10**6)
    compiled = torch.compile(model) if compile_model else model
    loss = open_clip.create_loss(oc_args)
    state = {"epoch": 0}

    def run(n: int) -> None:
        data = {"train": DataInfo(FixedLoader(batches, n))}
        train_one_epoch(compiled, data, loss, state["epoch"], optimizer, None, scheduler,
                        None, oc_args)
        state["epoch"] += 1
    return run


def measure(args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":  # what open_clip's main() sets; ours too (see train.py)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    batches = make_batches(args.model, args.batch_size, 4)
    flops = {label: step_flops(args.model, batches[0], device, OURS.get(label, {}))
             for label in args.variants}
    result = {"model": args.model, "batch_size": args.batch_size, "precision": args.precision,
              "device": device_name(device), "torch": torch.__version__,
              "step_gflops": {label: f / 1e9 for label, f in flops.items()}}
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in result["device"]), None)
    for label in args.variants:
        if label.startswith("open_clip"):
            run = baseline(args.model, batches, args, device, label == "open_clip_compile")
        else:
            run = ours(args.model, batches, args, device, **OURS[label])
        seconds = timed(run, args.steps, args.warmup, args.rounds, device)
        result[label] = {"samples_per_s": args.steps * args.batch_size / seconds,
                         "tflops": flops[label] * args.steps / seconds / 1e12}
        if peak and args.precision == "bf16":
            result[label]["mfu"] = result[label]["tflops"] / peak
        print(f"{label:18s} {result[label]['samples_per_s']:10.1f} samples/s", flush=True)
        del run
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for base in ("open_clip", "open_clip_compile"):
        if base in result:
            result[f"ratio_vs_{base}"] = {
                label: result[label]["samples_per_s"] / result[base]["samples_per_s"]
                for label in args.variants if label.startswith("ours")}
    return result


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default=None,
                        help="default: bf16 on GPU, fp32 on CPU")
    parser.add_argument("--variants", type=lambda v: v.split(","),
                        default=["open_clip", "ours", "ours_grouped", "ours_groups4"],
                        help="comma-separated: open_clip, open_clip_compile, "
                             + ", ".join(OURS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.precision is None:
        args.precision = "bf16" if torch.cuda.is_available() else "fp32"
    result = measure(args)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
