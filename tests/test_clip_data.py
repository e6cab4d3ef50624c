"""webdataset loading of real images: expansion, splitting, skipping broken samples."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_sample_images

from tests.builders import CAPTIONS, digit_shards, write_shard
from wit_builder.clip.configs import TrainConfig
from wit_builder.clip.data import CLIP_MEAN, make_pipeline
from wit_builder.clip.readers import Reader, ReaderPosition
from wit_builder.clip.stream import BatchStream, DataPosition, data_start
from wit_builder.clip.tokenizer import Tokenizer
from wit_builder.errors import InputError
from wit_builder.tarshards import expand as expand_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, int]:
    """4 shards × 10 real digit images (PNG) with real captions; returns (dir, samples)."""
    root = tmp_path_factory.mktemp("shards")
    digit_shards(root, 4, 10)
    return root, 40


def collect(pipeline) -> tuple[int, Counter]:
    seen, skipped = 0, Counter()
    for batch in pipeline:
        seen += batch.images.shape[0]
        skipped.update(batch.skipped)
    return seen, skipped


def test_expand_shards(shards):
    root, _ = shards
    assert expand_shards(f"{root}/{{00000..00002}}.tar") == [
        f"{root}/00000.tar", f"{root}/00001.tar", f"{root}/00002.tar"]
    assert len(expand_shards(f"{root}/*.tar::{root}/00000.tar")) == 5
    with pytest.raises(InputError, match="missing"):
        expand_shards(f"{root}/{{00000..00009}}.tar")


def test_batches_are_normalized_images_and_clip_tokens(shards):
    root, n = shards
    pipe = make_pipeline(f"{root}/{{00000..00003}}.tar", 8, 32, Tokenizer(), train=True)
    batch = next(iter(pipe))
    assert batch.images.shape == (8, 3, 32, 32) and batch.tokens.shape == (8, 77)
    # digits are black backgrounds: most pixels sit at (0 − mean) / std
    assert torch.isclose(batch.images[:, 0].min(), torch.tensor(-CLIP_MEAN[0] / 0.26862954),
                         atol=1e-3)
    assert (batch.tokens[:, 0] == 49406).all()
    seen, skipped = collect(make_pipeline(str(root / "*.tar"), 8, 32, Tokenizer(),
                                          train=False))
    assert seen == n and not skipped


def test_training_order_is_seeded(shards):
    root, _ = shards

    def first_tokens(seed: int, epoch: int = 0) -> torch.Tensor:
        pipe = make_pipeline(str(root / "*.tar"), 8, 32, Tokenizer(), seed=seed, epoch=epoch)
        return next(iter(pipe)).tokens

    assert torch.equal(first_tokens(1), first_tokens(1))
    assert not torch.equal(first_tokens(1), first_tokens(2))
    assert not torch.equal(first_tokens(1, 0), first_tokens(1, 1))


def test_resampled_shards_are_drawn_with_replacement_forever(shards):
    """`resampled`: an endless stream of whole shards drawn with replacement, seeded."""
    root, n = shards
    tokenizer = Tokenizer()
    shard_of = {tuple(tokenizer([c])[0].tolist()): i // 10 for i, c in enumerate(CAPTIONS[:n])}

    def drawn(seed: int, epoch: int = 0, batches: int = 30) -> list[int]:
        pipe = make_pipeline(str(root / "*.tar"), 4, 32, tokenizer, resampled=True,
                             seed=seed, epoch=epoch, shuffle_buffer=1)  # keeps draw order
        rows = [tuple(r) for b in itertools.islice(pipe, batches) for r in b.tokens.tolist()]
        return [shard_of[r] for r in rows]

    samples = drawn(1)
    assert all(len(set(samples[i:i + 10])) == 1 for i in range(0, 120, 10))
    shards_drawn = samples[::10]  # a shard's 10 samples arrive together (no shuffle)
    assert len(shards_drawn) == 12  # 120 samples from 40: it does not stop at one pass
    assert set(shards_drawn) <= {0, 1, 2, 3}
    # a pass without replacement would be 3 permutations of the 4 shards
    assert any(sorted(shards_drawn[i:i + 4]) != [0, 1, 2, 3] for i in (0, 4, 8))
    assert drawn(1) == drawn(1)
    assert drawn(1) != drawn(2) and drawn(1) != drawn(1, epoch=1)


def test_workers_split_the_shards(shards):
    root, n = shards

    def rows(num_workers: int) -> list[tuple]:
        pipe = make_pipeline(str(root / "*.tar"), 5, 32, Tokenizer(), train=False)
        loader = torch.utils.data.DataLoader(pipe, batch_size=None, num_workers=num_workers)
        return sorted(tuple(r) for b in loader for r in b.tokens.tolist())

    two_workers = rows(2)
    assert len(two_workers) == n and two_workers == rows(0)  # each sample exactly once


def test_broken_samples_and_shards_are_skipped_and_counted(shards, tmp_path):
    root, _ = shards
    photo = Path(load_sample_images().filenames[0]).read_bytes()  # a real JPEG
    write_shard(tmp_path / "bad.tar", [
        ("a.jpg", photo), ("a.txt", b"a temple in china"),
        ("b.jpg", b"not an image"), ("b.txt", b"garbage"),
        ("c.jpg", photo),                                  # no caption
        ("d.txt", b"no image"),
        ("e.jpg", photo[: len(photo) // 3]), ("e.txt", b"truncated jpeg")])
    good = (root / "00000.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(good[: len(good) // 2])
    spec = f"{tmp_path}/bad.tar::{tmp_path}/cut.tar::{root}/00001.tar"
    seen, skipped = collect(make_pipeline(spec, 4, 32, Tokenizer(), train=False))
    # c.jpg has no caption; so may the cut shard's last sample (its .txt cut off)
    assert skipped["undecodable"] == 2 and 1 <= skipped["no_caption"] <= 2
    assert skipped["no_image"] == 1 and any(k.startswith("tar_") for k in skipped)
    assert 1 + 10 < seen < 1 + 10 + 10  # the good samples, and the half shard's first ones


def saved(position: DataPosition, tmp_path: Path) -> DataPosition:
    """`position` through a checkpoint file (weights_only) and back."""
    torch.save(position.state(), tmp_path / "position.pt")
    state = torch.load(tmp_path / "position.pt", weights_only=True)
    return DataPosition.from_state(position.epoch, position.batches, state)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_stream_resumed_from_any_position_gives_the_same_batches(shards, tmp_path, workers):
    """Restarted from the reader positions after any batch (mid-shard, mid-epoch, at the
    epoch's end), the stream yields exactly the batches, crops included, that the
    uninterrupted one does next."""
    root, _ = shards
    cfg = TrainConfig(shards=str(root / "*.tar"), out=tmp_path, model="tiny", batch_size=4,
                      steps=1, workers=workers, shuffle_buffer=6, seed=3)
    start = DataPosition(roles=max(workers, 1))
    stream = BatchStream(cfg, 32, Tokenizer(), start)
    full, positions = [], []
    for _ in range(24):  # 10 batches an epoch: into the third
        full.append(next(stream))
        positions.append(stream.position.snapshot())
    assert [p.epoch for p in positions[8:12]] == [0, 0, 1, 1]
    stream.close()
    for k in (1, 3, 7, 10, 13):
        resumed = BatchStream(cfg, 32, Tokenizer(), saved(positions[k - 1], tmp_path))
        for expected in full[k:k + 8]:
            batch = next(resumed)
            assert torch.equal(batch.tokens, expected.tokens), k
            assert torch.equal(batch.images, expected.images), k
        resumed.close()


def test_other_workers_on_resume_replay_the_epoch_to_the_position(shards, tmp_path):
    """Reader positions saved with two workers do not fit one: the stream replays the
    epoch's first batches with one reader and goes on from there, counting them."""
    root, _ = shards
    settings = dict(shards=str(root / "*.tar"), out=tmp_path, model="tiny", batch_size=4,
                    steps=1, shuffle_buffer=6)
    two, one = TrainConfig(**settings, workers=2), TrainConfig(**settings, workers=0)
    stream = BatchStream(two, 32, Tokenizer(), DataPosition(roles=2))
    for _ in range(3):
        next(stream)
    stream.close()
    position = stream.position
    start, replay = data_start(one, 3, position.epoch, position.batches,
                               saved(position, tmp_path).state())
    assert replay == 3 and start.batches == 0 and not start.readers
    fresh = BatchStream(one, 32, Tokenizer(), DataPosition())
    expected = [next(fresh) for _ in range(5)][3:]
    resumed = BatchStream(one, 32, Tokenizer(), start, replay)
    for batch in expected:
        assert torch.equal(next(resumed).images, batch.images)
    assert resumed.position.batches == 5


def test_a_position_the_shards_no_longer_hold_is_a_one_line_error(shards, tmp_path):
    root, _ = shards
    urls = [str(p) for p in sorted(root.glob("*.tar"))]
    position = ReaderPosition(role=0, shard=1, member=2, ended=False,
                              buffer=[(0, 3), (0, 99)], shuffle=random.Random(0).getstate(),
                              crop=torch.Generator().get_state())
    with pytest.raises(InputError, match=r"shards changed .* sample 99 of .*00000\.tar"):
        Reader.resume(urls, position, 4, 4, lambda exn: True)
    with pytest.raises(InputError, match=r"shards changed .* had read 2 shard\(s\), it now has 1"):
        Reader.resume(urls[:1], position, 4, 4, lambda exn: True)
