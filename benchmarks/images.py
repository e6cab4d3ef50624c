"""Stage-4 benchmarks, each a ratio against a baseline measured in the same run.

    python benchmarks/images.py [--only phash,download,dedup] [--json out.json]

phash
    Input: scikit-image's real photos, resized so the short side is 256 and JPEG-encoded
    (what `wit download` writes). Baseline: ``imagehash.phash`` on the fully decoded image
    (Pillow, no draft). Measured: `phash.phash64` (JPEG draft decoding), one core,
    images/s. Goal: ≥ 1,000 images/s/core.

download
    Input: `--urls` image URLs served by a real HTTP server on 127.0.0.1 (the test image
    server's photos, repeated under distinct paths). Baseline: a bare
    ``img2dataset.download`` (multiprocessing, webdataset output, same threads, processes,
    shard size and image size) on the same URL list and server. Measured: `wit download`
    (``distributor=multiprocessing``, same settings), end to end. Figures: images/s/core.
    Goal: ≥ 1.0×.

dedup
    Input: `--hashes` random 64-bit hashes plus planted neighbours within 0–6 bits.
    Baseline: faiss' binary flat index, brute force (``range_search``). Measured: the
    Spark banding join (`dedup.near_pairs`, local mode, all cores). Both must return the
    same pairs within 4 bits (checked); figures are seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.run import best_of  # noqa: E402


def photos_256() -> list[bytes]:
    """The image server's photos as 256-px JPEGs."""
    from tests.imageserver import PHOTOS, photo
    from wit_builder.images.decode import Resizer

    resizer = Resizer()
    out = []
    for name in PHOTOS:
        buf = io.BytesIO()
        photo(name).convert("RGB").save(buf, format="PNG")
        out.append(resizer.process(buf.getvalue())[0])
    return out


def bench_phash(rounds: int) -> dict[str, float]:
    import imagehash
    from PIL import Image

    from wit_builder.images.phash import phash64

    images = photos_256() * rounds

    def baseline() -> None:
        for data in images:
            imagehash.phash(Image.open(io.BytesIO(data)))

    def ours() -> None:
        for data in images:
            phash64(data)

    base, mine = best_of(3, baseline), best_of(3, ours)
    return {"images": len(images), "imagehash_full_decode_per_s": len(images) / base,
            "ours_per_s_core": len(images) / mine, "ratio": base / mine}


def url_list(server, n: int) -> list[str]:
    """`n` distinct URLs of real photos (the server ignores the query string)."""
    from tests.imageserver import PHOTOS

    paths = [f"/photo/{p}.{('jpg', 'png', 'webp', 'gif')[i % 4]}" for i, p in enumerate(PHOTOS)]
    return [f"{server.url}{paths[i % len(paths)]}?copy={i}" for i in range(n)]


def bench_download(n_urls: int, processes: int) -> dict[str, float]:
    import img2dataset
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.imageserver import LOOPBACK, ImageServer, write_pairs
    from wit_builder.images import download_job
    from wit_builder.images.configs import DownloadConfig

    server = ImageServer()
    root = Path(tempfile.mkdtemp(prefix="wit-bench-"))
    try:
        urls = url_list(server, n_urls)
        pairs = write_pairs(root / "balance", urls)
        flat = root / "urls.parquet"
        pq.write_table(pa.table({"url": urls, "caption": [f"c{i}" for i in range(n_urls)]}),
                       flat)
        per_shard, threads = max(1, n_urls // (2 * processes)), 16

        def baseline() -> None:
            shutil.rmtree(root / "bare", ignore_errors=True)
            img2dataset.download(
                url_list=str(flat), input_format="parquet", url_col="url",
                caption_col="caption", output_folder=str(root / "bare"),
                output_format="webdataset", processes_count=processes, thread_count=threads,
                image_size=256, resize_mode="keep_ratio", resize_only_if_bigger=True,
                number_sample_per_shard=per_shard, distributor="multiprocessing",
                timeout=10, retries=0, disallowed_header_directives=[],
                enable_wandb=False)
            done = sum(json.loads(p.read_text())["successes"]
                       for p in (root / "bare").glob("*_stats.json"))
            assert done == n_urls, f"img2dataset fetched {done} of {n_urls}"

        def ours() -> None:
            shutil.rmtree(root / "ours", ignore_errors=True)
            cfg = DownloadConfig(pairs=pairs, out=root / "ours", allow_network=LOOPBACK,
                                 distributor="multiprocessing", processes=processes,
                                 threads=threads, samples_per_shard=per_shard, retries=0)
            result = download_job.run(cfg)
            assert result.marker["stats"]["rows_out"] == n_urls

        base, mine = best_of(2, baseline), best_of(2, ours)
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)
    cores = processes
    return {"urls": n_urls, "processes": processes,
            "img2dataset_per_s_core": n_urls / base / cores,
            "ours_per_s_core": n_urls / mine / cores, "ratio": base / mine}


def planted_hashes(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
    planted = []
    for i in range(n // 10):
        flips = rng.choice(64, size=i % 7, replace=False)
        value = (int(base[i]) ^ int(sum(1 << int(f) for f in flips))) & (2**64 - 1)
        planted.append(value - 2**64 if value >= 2**63 else value)
    return np.concatenate([base, np.array(planted, dtype=np.int64)])


def bench_dedup(n: int) -> dict[str, float]:
    from wit_builder.images import dedup
    from wit_builder.spark import get_spark

    hashes = planted_hashes(n)
    spark = get_spark("local[*]", "wit-bench-dedup")
    df = spark.createDataFrame([(f"{i:09d}", int(h)) for i, h in enumerate(hashes)],
                               "uid string, phash long").cache()
    df.count()
    start = time.perf_counter()
    expected = dedup.faiss_pairs(hashes, 4)
    base = time.perf_counter() - start
    start = time.perf_counter()
    pairs, _ = dedup.near_pairs(df, 4, 1000)
    got = {(int(r.uid_a), int(r.uid_b)) for r in pairs.collect()}
    mine = time.perf_counter() - start
    assert got == expected, "banding and faiss disagree"
    return {"hashes": len(hashes), "pairs": len(expected), "faiss_brute_force_s": base,
            "spark_banding_s": mine, "ratio": base / mine}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="phash,download,dedup")
    parser.add_argument("--phash-rounds", type=int, default=30)
    parser.add_argument("--urls", type=int, default=400)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--hashes", type=int, default=200_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = {"phash": lambda: bench_phash(args.phash_rounds),
            "download": lambda: bench_download(args.urls, args.processes),
            "dedup": lambda: bench_dedup(args.hashes)}
    results = {}
    for name in args.only.split(","):
        results[name] = runs[name]()
        print(name, json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                for k, v in results[name].items()}), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
