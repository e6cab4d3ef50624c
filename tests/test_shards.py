"""`wit shards` on images downloaded from the real image server: near duplicates go,
distinct photos stay, and the banding join equals faiss' brute force."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.imageserver import COPIES, LOOPBACK, PHOTOS, ImageServer, write_pairs
from wit_builder.images import dedup, download_job, manifest, shards_job
from wit_builder.images.configs import DownloadConfig, ShardsConfig


@pytest.fixture(scope="module")
def shards(spark, tmp_path_factory):
    """Photos and their copies downloaded, then `wit shards` with 6 samples a shard."""
    root = tmp_path_factory.mktemp("shards")
    server = ImageServer()
    try:
        paths = [f"/photo/{n}.{('jpg', 'png', 'webp', 'gif')[i % 4]}"
                 for i, n in enumerate(PHOTOS)] + list(COPIES)
        pairs = write_pairs(root / "balance", [server.url + p for p in paths])
        downloaded = download_job.run(DownloadConfig(
            pairs=pairs, out=root / "download", allow_network=LOOPBACK,
            samples_per_shard=7), spark)
    finally:
        server.close()
    assert downloaded.marker["stats"]["rows_out"] == len(paths)
    cfg = ShardsConfig(images=root / "download", out=root / "shards", samples_per_shard=6)
    return shards_job.run(cfg, spark), server.url


def test_copies_are_removed_and_distinct_photos_kept(shards):
    result, url = shards
    out = result.out_dir
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    kept_urls = {r["url"].removeprefix(url) for r in manifest}
    assert len(kept_urls) == len(PHOTOS) and not kept_urls & set(COPIES)
    dups = {r["uid"]: r for r in pq.read_table(out / "duplicates.parquet").to_pylist()}
    by_uid = {r["uid"]: r["url"].removeprefix(url) for r in manifest}
    assert len(dups) == len(COPIES)
    for dup in dups.values():
        assert by_uid[dup["kept_uid"]] in COPIES.values()
        assert dup["distance"] <= 4
    assert sorted(d["kind"] for d in dups.values()).count("exact") == 1  # coffee-same
    stats = result.marker["stats"]
    assert stats["drops"] == {"exact_duplicate": 1, "near_duplicate": len(COPIES) - 1}
    assert stats["rows_in"] - sum(stats["drops"].values()) == stats["rows_out"]


def test_shards_sizes_and_manifest_agree(shards):
    result, _ = shards
    out = result.out_dir
    sizes = json.loads((out / "sizes.json").read_text())
    assert list(sizes) == ["00000.tar", "00001.tar", "00002.tar"]
    assert list(sizes.values()) == [6, 6, 4]
    manifest = pq.read_table(out / "manifest.parquet").sort_by("uid").to_pylist()
    in_tars = []
    for name in sizes:
        with tarfile.open(out / name) as tar:
            names = tar.getnames()
        assert len(names) == 3 * sizes[name]
        keys = [n.split(".")[0] for n in names if n.endswith(".jpg")]
        assert [n.rsplit(".", 1)[1] for n in names[:3]] == ["jpg", "txt", "json"]
        in_tars += [(name, k) for k in keys]
    assert in_tars == [(r["shard"], r["key"]) for r in manifest]  # uid order throughout
    assert all(len(r["sha256"]) == 64 and min(r["width"], r["height"]) <= 256
               for r in manifest)
    assert sum(min(r["width"], r["height"]) == 256 for r in manifest) == len(manifest) - 2


def test_spark_banding_finds_the_same_pairs_as_faiss_brute_force(spark):
    """Random hashes plus planted neighbours at distances 0–6: the banding join returns
    exactly faiss' pairs within 4 bits."""
    rng = np.random.default_rng(0)
    base = rng.integers(-(2**63), 2**63 - 1, size=3000, dtype=np.int64)
    planted = []
    for i in range(300):
        flips = rng.choice(64, size=i % 7, replace=False)
        mask = int(sum(1 << int(f) for f in flips))
        value = (int(base[i]) ^ mask) & 0xFFFFFFFFFFFFFFFF
        planted.append(value - (1 << 64) if value >= 1 << 63 else value)
    hashes = np.concatenate([base, np.array(planted, dtype=np.int64)])
    uids = [f"{i:06d}" for i in range(len(hashes))]
    df = spark.createDataFrame([(u, int(h)) for u, h in zip(uids, hashes, strict=True)],
                               "uid string, phash long")
    pairs, _ = dedup.near_pairs(df, max_distance=4, block=1000)
    got = {(int(r.uid_a), int(r.uid_b)) for r in pairs.collect()}
    expected = dedup.faiss_pairs(hashes, 4)
    assert got == expected
    assert len(expected) >= 200  # the planted ones at distance ≤ 4 (5 of every 7)


def test_wit_train_reads_the_final_shards(shards, tmp_path):
    from wit_builder.clip.configs import TrainConfig
    from wit_builder.clip.train import train

    result, _ = shards
    cfg = TrainConfig(shards=f"{result.out_dir}/{{00000..00002}}.tar", out=tmp_path / "run",
                      model="tiny", batch_size=4, steps=4, workers=0, precision="fp32",
                      warmup_steps=1, save_every=4, log_every=1, shuffle_buffer=8)
    last = train(cfg)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert last.name == "step_00000004.pt" and len(records) == 4
    assert all(r["skipped"] == {} for r in records)  # every sample decoded


OPEN_CLIP_TINY = {"embed_dim": 64,
                  "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8,
                                 "head_width": 32},
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64,
                               "heads": 2, "layers": 2}}
RUN_OPEN_CLIP = """
import sys, open_clip
open_clip.add_model_config(sys.argv.pop(1))
from open_clip_train.main import main
main(sys.argv[1:])
"""


def test_open_clip_trainer_reads_the_shards_and_sizes_json(shards, tmp_path):
    """open_clip_train 3.3.0, as its users run it: its own webdataset pin (0.2.86, in a
    --target folder first on its path) and the sample count from our sizes.json."""
    result, _ = shards
    deps = tmp_path / "open_clip_deps"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(deps), "webdataset==0.2.86"], check=True, capture_output=True)
    config = tmp_path / "wit-tiny.json"
    config.write_text(json.dumps(OPEN_CLIP_TINY))
    cmd = [sys.executable, "-c", RUN_OPEN_CLIP, str(config), "--dataset-type", "webdataset",
           "--train-data", f"{result.out_dir}/{{00000..00002}}.tar", "--batch-size", "4",
           "--epochs", "1", "--model", "wit-tiny", "--workers", "0", "--device", "cpu",
           "--logs", str(tmp_path / "logs"), "--name", "run", "--lr", "1e-3", "--warmup", "1",
           "--log-every-n-steps", "1"]
    env = {**os.environ, "PYTHONPATH": str(deps)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (tmp_path / "logs" / "run" / "out.log").read_text()
    assert "[16/16 (100%)]" in log  # the 16 samples sizes.json announces, all read
    assert (tmp_path / "logs" / "run" / "checkpoints" / "epoch_1.pt").is_file()


def test_blank_images_beyond_the_bucket_cap_are_still_grouped(spark):
    """Ten identical hashes (blank images) fill their band buckets past the block size:
    those buckets are counted (verified in several blocks, none skipped), and the ten
    form one group."""
    blank = [(f"b{i}", 0) for i in range(10)]
    others = [("x1", 0x0123456789ABCDEF), ("x2", 0x0123456789ABCDEE)]  # distance 1
    df = spark.createDataFrame(blank + others, "uid string, phash long")
    pairs, capped = dedup.near_pairs(df, max_distance=4, block=5)
    assert capped.count() == 5  # the five bands of the all-zero hash
    groups = dedup.components([(r.uid_a, r.uid_b) for r in pairs.collect()])
    assert dict(zip(groups.removed, groups.kept, strict=True)) == {
        **{f"b{i}": "b0" for i in range(1, 10)}, "x2": "x1"}


def test_samples_are_numbered_in_uid_order_without_a_single_partition(spark):
    """`numbered` gives each sample its position in uid order across many partitions, and
    the manifest's plan has no exchange into a single partition (a window over the whole
    table would put every row, texts included, into one task)."""
    from wit_builder.images.tars import SCAN_SCHEMA
    from wit_builder.spark import spark_schema

    uids = [f"{n:06x}" for n in np.random.default_rng(5).permutation(2000)]
    rows = [{name: None for name in SCAN_SCHEMA.names if name != "reason"} | {"uid": u}
            for u in uids]
    schema = spark_schema(SCAN_SCHEMA.remove(SCAN_SCHEMA.get_field_index("reason")))
    samples = spark.createDataFrame(rows, schema).repartition(8)
    kept = manifest.numbered(samples)
    try:
        got = sorted((r["index"], r["uid"]) for r in kept.collect())
        assert got == list(enumerate(sorted(uids)))
        plan = manifest.manifest(kept, 300)._jdf.queryExecution().executedPlan().toString()
        assert "SinglePartition" not in plan and "Window" not in plan
        shard_of = {r["uid"]: r["shard"] for r in manifest.manifest(kept, 300).collect()}
        assert shard_of[sorted(uids)[299]] == "00000.tar"
        assert shard_of[sorted(uids)[300]] == "00001.tar"
    finally:
        kept.unpersist()


def shaped_graph(rng: np.random.Generator) -> list[tuple[str, str]]:
    """Edges of one graph holding components of many shapes, node names shuffled so
    that name order says nothing about position: a long chain, a star, cliques, many
    small components, one giant random component, isolated pairs."""
    names = iter(rng.permutation(100_000).tolist())

    def nodes(n: int) -> list[str]:
        return [f"{next(names):06d}" for _ in range(n)]

    edges = []
    chain = nodes(400)
    edges += list(itertools.pairwise(chain))
    hub, *spokes = nodes(150)
    edges += [(hub, s) if i % 2 else (s, hub) for i, s in enumerate(spokes)]
    for _ in range(8):
        clique = nodes(7)
        edges += [(a, b) for i, a in enumerate(clique) for b in clique[i + 1:]]
    for _ in range(60):
        small = nodes(int(rng.integers(2, 5)))
        edges += list(itertools.pairwise(small))
    giant = nodes(500)
    edges += list(itertools.pairwise(giant))  # connected, then random chords
    edges += [(giant[a], giant[b]) for a, b in rng.integers(0, 500, (700, 2)) if a != b]
    edges += [(a, a) for a in nodes(3)]  # self-loops only: no component to report
    return edges


def test_spark_components_equal_scipy_on_graphs_of_many_shapes(spark):
    from wit_builder.images.components import components

    edges = shaped_graph(np.random.default_rng(7))
    got, rounds = components(spark.createDataFrame(edges, "u string, v string"))
    expected = dedup.components([(a, b) for a, b in edges if a != b])
    assert {(r.uid, r.kept_uid) for r in got.collect()} == set(
        zip(expected.removed, expected.kept, strict=True))
    assert rounds < 40  # log-squared, not the chain's length


def test_a_bucket_of_20k_hashes_is_verified_exactly(spark):
    """20,000 hashes agree on their first band (one bucket, where a cap would have
    skipped them all) plus planted neighbours 1–4 bits away: exactly faiss' pairs."""
    rng = np.random.default_rng(3)
    shift, width = dedup.band_masks(4)[0]
    keep = np.int64(~(((1 << width) - 1) << shift))
    base = (rng.integers(-(2**63), 2**63 - 1, size=20_000, dtype=np.int64) & keep) | 0x155
    planted = []
    for i in range(400):
        flips = rng.choice(np.arange(width, 64), size=1 + i % 4, replace=False)
        mask = int(sum(1 << int(f) for f in flips))
        planted.append((int(base[i]) & 0xFFFFFFFFFFFFFFFF) ^ mask)
    planted = [p - (1 << 64) if p >= 1 << 63 else p for p in planted]
    hashes = np.concatenate([base, np.array(planted, dtype=np.int64)])
    assert len(np.unique(hashes)) == len(hashes)
    df = spark.createDataFrame([(f"{i:06d}", int(h)) for i, h in enumerate(hashes)],
                               "uid string, phash long")
    pairs, big = dedup.near_pairs(df, max_distance=4, block=1000)
    assert big.filter("band = 0").count() == 1
    got = {(int(r.uid_a), int(r.uid_b)) for r in pairs.collect()}
    assert got == dedup.faiss_pairs(hashes, 4)
    assert len(got) >= 400


def test_shards_and_download_work_under_a_1m_driver_result_limit(tmp_path):
    """With ``spark.driver.maxResultSize=1m`` (a fresh JVM), duplicate grouping of 30,000
    pairs and a download of 12,000 pairs pass: nothing per row reaches the driver, while
    collecting the same duplicate pairs is refused by the limit."""
    import json
    import subprocess
    import sys

    from tests.builders import repo_env

    done = subprocess.run([sys.executable, "-m", "tests.under_result_limit", tmp_path],
                          env=repo_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["shards"]["collect_refused"]
    assert found["shards"]["drops"] == {"exact_duplicate": 15_000, "near_duplicate": 15_000}
    assert found["shards"]["largest"] == 2
    download = found["download"]
    assert download["rows_in"] == 12_000 and download["rows_out"] == 0
    assert download["drops"] == {"blocked_address": 12_000}
    assert download["shards"] == 4
    assert pq.read_table(tmp_path / "duplicates.parquet").num_rows == 30_000


def test_phash_overlap_reuses_the_manifest_and_equals_decoding(shards, spark, tmp_path):
    """`wit overlap --method phash` over a `wit shards` output takes each sample's pHash
    from the manifest (no image decoded); over a plain copy of the same tars it decodes
    them: the same neighbours with the same scores, the same matches."""
    import shutil

    import pyarrow.compute as pc

    from tests.imageserver import photo
    from wit_builder import tarshards
    from wit_builder.overlap import overlap_job
    from wit_builder.overlap.configs import OverlapConfig

    result, _ = shards
    (tmp_path / "eval" / "photo").mkdir(parents=True)
    photo(PHOTOS[0]).convert("RGB").save(tmp_path / "eval" / "photo" / "0.png")
    plain = tmp_path / "plain"
    plain.mkdir()
    for tar in tarshards.expand(tarshards.pattern(result.out_dir)):
        shutil.copy(tar, plain)
    runs = {}
    for name, pool in (("manifest", tarshards.pattern(result.out_dir)),
                       ("decoded", f"{plain}/*.tar")):
        runs[name] = overlap_job.run(OverlapConfig(
            shards=pool, out=tmp_path / name, eval=[f"imagefolder:{tmp_path / 'eval'}"],
            k=3), spark)
    scanned = runs["decoded"].marker["stats"]["rows_in"]
    assert runs["manifest"].marker["stats"]["phash_from_manifest"] == scanned > 0
    assert runs["decoded"].marker["stats"]["phash_from_manifest"] == 0

    def scores(name: str) -> list[tuple]:
        table = pq.read_table(tmp_path / name / "neighbours")
        rows = table.filter(pc.equal(table["kind"], "neighbour")).to_pylist()
        return sorted((r["uid"], r["rank"], r["eval_index"], r["score"]) for r in rows)

    assert scores("manifest") == scores("decoded") and len(scores("decoded")) == scanned
    found = {n: sorted(r["uid"] for r in pq.read_table(tmp_path / n / "overlap.parquet")
                       .to_pylist()) for n in runs}
    assert found["manifest"] == found["decoded"] and found["decoded"]
