"""Resume benchmark: time from a resumed `wit train` stream's start to its first batch.

    python benchmarks/train_resume.py --json bench_out/train_resume.json

Shards of real photos (scikit-learn's two sample JPEGs, cut into 256-px crops and saved
as JPEG, so decoding costs what a web image's does). An uninterrupted stream is run to
batch k of the epoch and its position taken, as a checkpoint holds it. Then, from that
position, measured in the same run:

* ``readers`` (this code): every reader restarts from its saved position, skipping the
  shards it had read past unopened and reading without decoding the few it needs.
* ``replay`` (the baseline: what `wit train` did before reader positions, and still does
  when `workers` changed on resume): the epoch is streamed from its start and its first
  k batches decoded and discarded.

Both must give the same next batch (checked). The ratio is replay seconds / readers
seconds; the readers' time should stay flat in k while the replay's grows with it.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from wit_builder import tarshards  # noqa: E402
from wit_builder.clip.configs import TrainConfig  # noqa: E402
from wit_builder.clip.stream import BatchStream, DataPosition  # noqa: E402
from wit_builder.clip.tokenizer import Tokenizer  # noqa: E402


def write_shards(root: Path, shards: int, per_shard: int) -> str:
    """`shards` tars of `per_shard` 256-px JPEG crops of the sample photos, captioned."""
    photos = [np.asarray(p) for p in load_sample_images().images]
    rng = np.random.default_rng(0)
    for s in range(shards):
        members = []
        for i in range(per_shard):
            photo = photos[(s + i) % len(photos)]
            y, x = rng.integers(0, photo.shape[0] - 256), rng.integers(0, photo.shape[1] - 256)
            buf = io.BytesIO()
            Image.fromarray(photo[y:y + 256, x:x + 256]).save(buf, "JPEG", quality=90)
            key = f"{s:05d}{i:04d}"
            members += [(f"{key}.jpg", buf.getvalue()),
                        (f"{key}.txt", f"a photo, crop {i} of shard {s}".encode())]
        tarshards.write_tar(root / tarshards.shard_name(s), members)
    return tarshards.pattern(root)


def first_batch_seconds(stream: BatchStream) -> tuple[float, torch.Tensor]:
    started = time.perf_counter()
    batch = next(stream)
    seconds = time.perf_counter() - started
    stream.close()
    return seconds, batch.images


def measure(cfg: TrainConfig, k: int) -> dict:
    """Seconds to the first batch after batch `k`, both ways (see module docstring)."""
    roles = max(cfg.workers, 1)
    stream = BatchStream(cfg, 224, Tokenizer(), DataPosition(roles=roles))
    for _ in range(k):
        next(stream)
    position = stream.position.snapshot()
    stream.close()
    readers, ours = first_batch_seconds(BatchStream(cfg, 224, Tokenizer(), position))
    replay, theirs = first_batch_seconds(
        BatchStream(cfg, 224, Tokenizer(), DataPosition(0, 0, roles), replay=k))
    assert torch.equal(ours, theirs), "the two resumes disagree"
    return {"k": k, "readers_s": round(readers, 3), "replay_s": round(replay, 3),
            "ratio": round(replay / readers, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=24)
    parser.add_argument("--per-shard", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--at", default="0.1,0.5,0.9", help="resume points, epoch fractions")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with TemporaryDirectory() as tmp:
        pattern = write_shards(Path(tmp), args.shards, args.per_shard)
        cfg = TrainConfig(shards=pattern, out=Path(tmp) / "run", model="tiny",
                          batch_size=args.batch_size, steps=1, workers=args.workers,
                          shuffle_buffer=256)
        batches = args.shards * args.per_shard // args.batch_size
        rows = [measure(cfg, round(float(f) * batches)) for f in args.at.split(",")]
    result = {"benchmark": "train_resume", "baseline": "replay (decode and discard)",
              "shards": args.shards, "samples_per_shard": args.per_shard,
              "batch_size": args.batch_size, "workers": args.workers,
              "batches_per_epoch": batches, "rows": rows}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
