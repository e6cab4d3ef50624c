"""The scale ladder: per-row cost and driver memory of the image stages across rungs
at least 100× apart, on this machine.

    python benchmarks/scale.py [--only download,dedup] [--json out.json]

Each rung runs in a fresh process, sampled every 0.2 s with psutil: the Python driver's
peak RSS, the JVM driver's peak RSS, and the largest Python worker's. The goal: rows/s
per core within 1.5× across the rungs, and driver (Python) peak RSS growing less than
100 MB across 100× more rows.

download
    `wit download` (Spark local, all cores) of pairs whose URLs point at a loopback HTTP
    server: 95% answer 404, 5% a real 48-px photo (scikit-image's camera). Rungs: 10^3,
    10^4, 10^5 pairs.
dedup
    Exact and near-duplicate grouping as `wit shards` runs it (`dedup.duplicate_rows`:
    banding, bucket verification, connected components in Spark, duplicates written by
    the executors) over random 64-bit hashes with 10% planted neighbours. Rungs: 10^4,
    10^5, 10^6 hashes.
shards
    `wit shards` (Spark local, all cores: scan and pHash every image, exact and near
    duplicates, final shards, manifest) over a `wit download` output of distinct real
    32-px images (crops of scikit-image's photos with noise; every tenth a copy of the
    next), downloaded from the loopback server first (not timed). Rungs: 10^3, 10^4,
    10^5 images.
extract
    `wit extract` (Spark local, all cores, LID on) over copies of the demo's WARC files
    (`demo.web`: 143 pages, 1,429 real captions; each copy its own file): every file
    staged in the work dir, counters summed in Spark, pairs deduplicated. Rungs: 1, 10,
    100 copies; rows are candidate pairs.
overlap
    `wit overlap` (Spark local, all cores, the default pHash method against the digits
    test split) over pool shards of distinct real 32-px JPEGs (`distinct_png`'s crops),
    5,000 a shard, written first (not timed). Rungs: 10^3, 10^4, 10^5 images.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import io
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RUNGS = {"download": (1_000, 10_000, 100_000), "dedup": (10_000, 100_000, 1_000_000),
         "shards": (1_000, 10_000, 100_000), "extract": (1, 10, 100),
         "overlap": (1_000, 10_000, 100_000)}
DEDUP_SCRIPT = """
import sys, numpy as np
from wit_builder.spark import get_spark
from wit_builder.images import dedup
from wit_builder.stats import StageStats
n, out = int(sys.argv[1]), sys.argv[2]
spark = get_spark("local[*]", "scale-dedup")
rng = np.random.default_rng(0)
base = rng.integers(-(2**63), 2**63 - 1, size=n, dtype=np.int64)
near = base[: n // 10] ^ (np.int64(1) << rng.integers(0, 63, size=n // 10))
hashes = np.concatenate([base, near])
rdd = spark.sparkContext.range(len(hashes), numSlices=8).map(
    lambda i: (f"{i:012d}", "%064x" % i, int(hashes[i])))
samples = spark.createDataFrame(rdd, "uid string, sha256 string, phash long")
stats = StageStats("shards")
try:  # this checkout: grouped in Spark, written by the executors
    from wit_builder.images.dedup import write_duplicates
    rows = dedup.duplicate_rows(samples, 4, 1000, stats)
    write_duplicates(__import__("pathlib").Path(out), rows, stats)
except ImportError:  # a checkout before it (--repo): grouped on the driver
    from wit_builder.images import shards_job
    from wit_builder.images.configs import ShardsConfig
    shards_job.duplicate_rows(samples, ShardsConfig(images=out, out=out), stats)
print(len(hashes), dict(stats.drops))
"""


class Server(http.server.HTTPServer):
    """One thread answering in turn (each answer is instant), with a deep accept queue:
    thousands of concurrent fetches neither wait on a full backlog nor spawn a thread
    each."""

    request_queue_size = 4096


def serve(photo: bytes) -> Server:
    """A loopback server: /img/* the photo, /distinct/N.png image N (`distinct_png`),
    anything else 404."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, code = (photo, 200) if self.path.startswith("/img/") else (b"no", 404)
            if self.path.startswith("/distinct/"):
                body, code = distinct_png(int(self.path.split("/")[-1].split(".")[0])), 200
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def measure(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run `cmd`; its wall time and the peak RSS (MB) of the driver, the JVM and the
    largest Python worker."""
    started = time.monotonic()
    proc = psutil.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks = {"driver_py_mb": 0.0, "jvm_mb": 0.0, "worker_py_mb": 0.0}
    while proc.poll() is None:
        try:
            peaks["driver_py_mb"] = max(peaks["driver_py_mb"], proc.memory_info().rss / 2**20)
            for child in proc.children(recursive=True):
                rss = child.memory_info().rss / 2**20
                key = "jvm_mb" if "java" in child.name() else "worker_py_mb"
                peaks[key] = max(peaks[key], rss)
        except psutil.Error:
            pass
        time.sleep(0.2)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.read().decode()[-2000:])
    return {"seconds": round(time.monotonic() - started, 2),
            **{k: round(v, 1) for k, v in peaks.items()}}


def download_rung(n: int, root: Path, url: str, env: dict[str, str]) -> dict[str, float]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from wit_builder.curate.pairs import PAIR_SCHEMA, PAIRS_FILE

    urls = [f"{url}/img/{i}.png" if i % 20 == 0 else f"{url}/missing/{i}.jpg"
            for i in range(n)]
    rows = {name: [None] * n for name in PAIR_SCHEMA.names}
    rows.update(uid=[f"{i:024x}" for i in range(n)], url=urls,
                text=[f"caption {i}" for i in range(n)])
    (root / "pairs" / PAIRS_FILE).mkdir(parents=True)
    pq.write_table(pa.table(rows, schema=PAIR_SCHEMA), root / "pairs" / PAIRS_FILE / "p.parquet")
    cmd = [sys.executable, "-m", "wit_builder.cli", "download", "--pairs", str(root / "pairs"),
           "--out", str(root / "out"), "--allow-network", "127.0.0.1/32",
           "--samples-per-shard", "5000", "--image-size", "32", "--min-image-size", "8"]
    return measure(cmd, env)


def dedup_rung(n: int, root: Path, env: dict[str, str]) -> dict[str, float]:
    return measure([sys.executable, "-c", DEDUP_SCRIPT, str(n), str(root / "out")], env)


@functools.cache
def _astronaut() -> Any:
    import numpy as np
    from skimage import data

    return np.asarray(data.astronaut(), dtype=np.int16)


def distinct_png(i: int) -> bytes:
    """A 32-px crop of a real photo with noise, one per `i`; every tenth `i` is a copy of
    the next (exact duplicates for the dedup step)."""
    import numpy as np
    from PIL import Image

    seed = i + 1 if i % 10 == 0 else i
    rng = np.random.default_rng(seed)
    base = _astronaut()
    y, x = rng.integers(0, base.shape[0] - 64, size=2)
    crop = base[y:y + 64:2, x:x + 64:2] + rng.integers(-40, 40, size=(32, 32, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def shards_rung(n: int, root: Path, url: str, env: dict[str, str]) -> dict[str, float]:
    """Download n distinct images (not timed), then time `wit shards` over them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from wit_builder.curate.pairs import PAIR_SCHEMA, PAIRS_FILE

    rows = {name: [None] * n for name in PAIR_SCHEMA.names}
    rows.update(uid=[f"{i:024x}" for i in range(n)], text=[f"caption {i}" for i in range(n)],
                url=[f"{url}/distinct/{i}.png" for i in range(n)])
    (root / "pairs" / PAIRS_FILE).mkdir(parents=True)
    pq.write_table(pa.table(rows, schema=PAIR_SCHEMA), root / "pairs" / PAIRS_FILE / "p.parquet")
    subprocess.run([sys.executable, "-m", "wit_builder.cli", "download", "--pairs",
                    str(root / "pairs"), "--out", str(root / "images"), "--allow-network",
                    "127.0.0.1/32", "--samples-per-shard", "5000", "--image-size", "32",
                    "--min-image-size", "8"], env=env, check=True, capture_output=True)
    return measure([sys.executable, "-m", "wit_builder.cli", "shards", "--images",
                    str(root / "images"), "--out", str(root / "out")], env)


def extract_rung(copies: int, root: Path, env: dict[str, str]) -> dict[str, float]:
    """`copies` copies of the demo WARC set (not timed), then time `wit extract`; the
    candidate pairs it read go into the result as ``rows``."""
    import shutil

    from wit_builder.demo.web import web_images, write_warcs

    source = write_warcs(root / "source", "http://127.0.0.1:9", web_images())
    (root / "warcs").mkdir()
    for c in range(copies):
        for path in source:
            shutil.copy(path, root / "warcs" / f"{c:04d}-{path.name}")
    got = measure([sys.executable, "-m", "wit_builder.cli", "extract", "--warc",
                   str(root / "warcs" / "*.warc.gz"), "--out", str(root / "out")], env)
    stats = json.loads((root / "out" / "stats.json").read_text())
    return {**got, "rows": stats["rows_in"]}


def overlap_rung(n: int, root: Path, env: dict[str, str]) -> dict[str, float]:
    """Pool shards of n distinct JPEGs (not timed), then time `wit overlap` over them."""
    from PIL import Image

    from wit_builder import tarshards

    (root / "pool").mkdir()
    for shard, start in enumerate(range(0, n, 5000)):
        members = []
        for i in range(start, min(n, start + 5000)):
            out = io.BytesIO()
            Image.open(io.BytesIO(distinct_png(i))).convert("RGB").save(out, format="JPEG")
            members += [(f"{i:09d}.jpg", out.getvalue()), (f"{i:09d}.txt", b"a caption")]
        tarshards.write_tar(root / "pool" / tarshards.shard_name(shard), members)
    return measure([sys.executable, "-m", "wit_builder.cli", "overlap", "--shards",
                    str(root / "pool" / "*.tar"), "--out", str(root / "out")], env)


def photo_png() -> bytes:
    from PIL import Image
    from skimage import data

    out = io.BytesIO()
    Image.fromarray(data.camera()).resize((48, 48)).save(out, format="PNG")
    return out.getvalue()


def ladder(stage: str, env: dict[str, str]) -> list[dict[str, float]]:
    """Every rung of `stage`, with rows/s per core."""
    cores = os.cpu_count() or 1
    server = serve(photo_png()) if stage in ("download", "shards") else None
    results = []
    try:
        for n in RUNGS[stage]:
            with tempfile.TemporaryDirectory() as tmp:
                url = f"http://127.0.0.1:{server.server_address[1]}" if server else ""
                if stage == "download":
                    got = download_rung(n, Path(tmp), url, env)
                elif stage == "shards":
                    got = shards_rung(n, Path(tmp), url, env)
                elif stage == "extract":
                    got = extract_rung(n, Path(tmp), env)
                elif stage == "overlap":
                    got = overlap_rung(n, Path(tmp), env)
                else:
                    got = dedup_rung(n, Path(tmp), env)
            rows = got.pop("rows", n + n // 10 if stage == "dedup" else n)
            results.append({"rows": rows, **got,
                            "rows_per_s_per_core": round(rows / got["seconds"] / cores, 1)})
            print(stage, results[-1], flush=True)
    finally:
        if server:
            server.shutdown()
    return results


def verdict(rungs: list[dict[str, float]]) -> dict[str, float]:
    """The goal's figures: per-row cost spread (whole runs, and marginal: the rows added
    from one rung to the next over the seconds added, which leaves out the fixed start of
    Spark and the JVM), and the driver's RSS growth."""
    cores = os.cpu_count() or 1
    rates = [r["rows_per_s_per_core"] for r in rungs]
    marginal = [round((b["rows"] - a["rows"]) / max(1e-9, b["seconds"] - a["seconds"]) / cores,
                      1) for a, b in itertools.pairwise(rungs)]
    return {"rate_spread": round(max(rates) / min(rates), 2),
            "marginal_rows_per_s_per_core": marginal,
            "marginal_spread": round(max(marginal) / min(marginal), 2) if marginal else None,
            "driver_py_growth_mb": round(rungs[-1]["driver_py_mb"] - rungs[0]["driver_py_mb"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="download,dedup,shards,extract,overlap")
    parser.add_argument("--rungs", help="override the rungs of --only's stages, e.g. "
                        "1000,10000")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--repo", type=Path, default=REPO,
                        help="the checkout whose stages run (the baseline: an older one)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(args.repo.absolute())}
    if args.rungs:
        for stage in args.only.split(","):
            RUNGS[stage] = tuple(int(n) for n in args.rungs.split(","))
    out = {}
    for stage in args.only.split(","):
        rungs = ladder(stage, env)
        out[stage] = {"rungs": rungs, **verdict(rungs)}
        print(stage, out[stage]["rate_spread"], out[stage]["driver_py_growth_mb"], flush=True)
    if args.json:  # stages not run this time keep their earlier figures
        args.json.parent.mkdir(parents=True, exist_ok=True)
        earlier = json.loads(args.json.read_text()) if args.json.is_file() else {}
        merged = {**earlier, "cores": os.cpu_count(), **out}
        args.json.write_text(json.dumps(merged, indent=2) + "\n")


if __name__ == "__main__":
    main()
