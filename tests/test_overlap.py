"""`wit overlap` on a pool of real photos with planted copies of digits test images."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from tests.builders import write_shard
from tests.imageserver import PHOTOS, photo
from wit_builder.clip.configs import get_config
from wit_builder.clip.evalsets import load_digits_set
from wit_builder.clip.model import CLIP
from wit_builder.overlap import overlap_job
from wit_builder.overlap.configs import OverlapConfig

# pool sample index → digits test index planted there (upscaled, re-encoded as JPEG)
PLANTED = {1: 7, 4: 120, 9: 333, 13: 449}


def jpeg(image: Image.Image, size: int = 128) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(
        out, format="JPEG", quality=85)
    return out.getvalue()


def sample(uid: str, image: bytes) -> list[tuple[str, bytes]]:
    meta = json.dumps({"uid": uid, "caption": f"pool image {uid}"}).encode()
    return [(f"{uid}.jpg", image), (f"{uid}.txt", b"a caption"), (f"{uid}.json", meta)]


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> tuple[str, dict[str, int]]:
    """3 shards of 6: real photos, four planted digits, one broken image."""
    root = tmp_path_factory.mktemp("pool")
    test = load_digits_set().test
    planted = {}
    members: list[list[tuple[str, bytes]]] = [[], [], []]
    for i in range(18):
        uid = f"u{i:03d}"
        if i in PLANTED:
            image = jpeg(test.load(PLANTED[i]))
            planted[uid] = PLANTED[i]
        elif i == 17:
            image = b"\xff\xd8\xff broken jpeg"
        else:
            image = jpeg(photo(PHOTOS[i % len(PHOTOS)]), 256)
        members[i // 6] += sample(uid, image)
    for s, shard in enumerate(members):
        write_shard(root / f"{s:05d}.tar", shard)
    return f"{root}/{{00000..00002}}.tar", planted


def test_phash_finds_exactly_the_planted_copies(pool, spark, tmp_path):
    shards, planted = pool
    result = overlap_job.run(OverlapConfig(shards=shards, out=tmp_path / "o"), spark)
    matches = pq.read_table(result.out_dir / "overlap.parquet").to_pylist()
    first = {(m["uid"], m["eval_index"]) for m in matches if m["rank"] == 1}
    assert first == set(planted.items())
    assert all(m["eval_set"] == "digits" and m["eval_split"] == "test" and m["score"] <= 4
               and m["method"] == "phash" and m["eval_id"] == f"test/{m['eval_index']}"
               for m in matches)
    stats = result.marker["stats"]
    assert stats["rows_in"] == 18 and stats["drops"] == {"eval_overlap": len(planted)}
    assert stats["unreadable_pool_images"] == 1
    assert stats["eval_sets"]["digits"] == {"eval_images": 450, "unreadable": 0,
                                            "matches": len(planted), "pool_scanned": 18}


def test_filtered_shards_hold_the_pool_minus_the_matches(pool, spark, tmp_path):
    shards, planted = pool
    result = overlap_job.run(OverlapConfig(shards=shards, out=tmp_path / "o"), spark)
    filtered = result.out_dir / "filtered"
    sizes = json.loads((filtered / "sizes.json").read_text())
    kept = set()
    for name, n in sizes.items():
        with tarfile.open(filtered / name) as tar:
            keys = {m.name.split(".")[0] for m in tar.getmembers()}
        assert len(keys) == n
        kept |= keys
    assert kept == {f"u{i:03d}" for i in range(18)} - set(planted)


def test_clip_method_pairs_exact_copies_with_cosine_near_one(pool, spark, tmp_path):
    """The image tower of a (random) tiny checkpoint: a planted copy's nearest eval image
    is itself (semantic method, strict threshold)."""
    shards, planted = pool
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    torch.save({"state_dict": CLIP(get_config("tiny")).state_dict(),
                "config": {"model": "tiny"}}, checkpoint)
    cfg = OverlapConfig(shards=shards, out=tmp_path / "o", method=f"clip:{checkpoint}",
                        threshold=0.999, k=1)
    result = overlap_job.run(cfg, spark)
    matches = pq.read_table(result.out_dir / "overlap.parquet").to_pylist()
    found = {m["uid"]: m for m in matches}
    for uid, index in planted.items():
        assert found[uid]["eval_index"] == index and found[uid]["score"] > 0.999
    assert np.all([m["method"] == f"clip:{checkpoint}" for m in matches])
