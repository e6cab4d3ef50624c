"""Stage-5 benchmarks, each a ratio against a baseline measured in the same run, plus the
calibration table of the README.

    python benchmarks/overlap.py [--only knn,embed,decode,calibrate] [--json out.json]

knn
    Input: `--index-size` random unit vectors of 256 dimensions (the detector's size) as
    the eval index, `--queries` pool vectors (some planted within cosine 0.97 of an eval
    vector). Baseline: bare ``faiss.IndexFlatIP.search`` (k=3). Measured: the search
    step of a `wit overlap` scoring task (`scan.neighbour_rows`: search, rows).
    Figures: queries/s; goal ≥ 0.9× bare faiss on CPU.

embed
    Input: scikit-image's real photos as 256-px JPEGs. Baseline: a bare torch loop (Pillow
    decode, the same resize/normalize, the same TorchScript ResNet-18 at 224 px, batches
    of 32). Measured: `methods.Embedder.encoded` for ``detector:DIR``. Figures: images/s
    per core (torch threads = cores).

decode
    Input: the same real photos as 256-px JPEGs. Baseline: `methods.Embedder.encoded`
    with one decode thread (a task before decode threads). Measured: the same with one
    decode thread per core (`--decode-threads`), for ``phash`` (decode + hash is all the
    work) and ``detector:DIR`` (decode + transform, then the model). Figures: images/s
    per core and the ratio; on a GPU the point is that the GPU is not left waiting on one
    decoding core, which a CPU-only box cannot show.

calibrate
    `wit overlap calibrate` for pHash and for a copy detector trained here on the CPU
    (`--steps` steps at 96 px): eval set = digits test split (upscaled to 128 px before
    copying), pool = the digits train split (other scans of the same digits: hard
    non-copies) and the real photos, as 128-px JPEGs.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.run import best_of  # noqa: E402

DIM = 256


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def bench_knn(index_size: int, queries: int) -> dict[str, float]:
    import faiss

    from wit_builder.overlap import scan
    from wit_builder.overlap.methods import Method

    rng = np.random.default_rng(0)
    base = unit(rng.standard_normal((index_size, DIM), dtype=np.float32))
    pool = unit(rng.standard_normal((queries, DIM), dtype=np.float32))
    planted = rng.choice(index_size, queries // 10, replace=False)
    noise = rng.standard_normal((len(planted), DIM), dtype=np.float32) * 0.012
    pool[: len(planted)] = unit(base[planted] + noise)
    index = faiss.IndexFlatIP(DIM)
    index.add(base)
    method = Method("detector:bench", "detector", 0.95, binary=False, near=0.05)
    meta = [("bench", "test", i, f"test/{i}") for i in range(index_size)]
    task = scan.Task(b"", meta, method.embedding, 3, 256, "")
    samples = [(f"k{i}", f"u{i}") for i in range(queries)]
    found: list[int] = []

    def baseline() -> None:
        index.search(pool, 3)

    def ours() -> None:
        found[:] = [len(scan.neighbour_rows(task, index, pool, samples, "00000.tar"))]

    ours()  # warm up both (page in the index) before timing
    bare, mine = best_of(3, baseline), best_of(3, ours)
    return {"index": index_size, "queries": queries, "rows": found[0],
            "faiss_queries_per_s": queries / bare, "ours_queries_per_s": queries / mine,
            "ratio": bare / mine, "threads": faiss.omp_get_max_threads()}


def photo_jpegs(size: int = 256) -> list[bytes]:
    from tests.imageserver import PHOTOS, photo

    out = []
    for name in PHOTOS:
        image = photo(name).convert("RGB")
        image.thumbnail((size, size))
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def export_detector(directory: Path, size: int) -> None:
    from wit_builder.overlap import detector

    directory.mkdir(parents=True, exist_ok=True)
    model = detector.CopyDetector()
    detector.save(detector.export(model, size), directory / "model.pt2")
    info = detector.describe("resnet18", DIM, size, 0.9)
    (directory / "detector.json").write_text(json.dumps(info))


def bench_embed(rounds: int) -> dict[str, float]:
    import torch
    from PIL import Image
    from torchvision.transforms import v2

    from wit_builder.overlap.methods import Embedder, parse_method

    blobs = photo_jpegs() * rounds
    with tempfile.TemporaryDirectory() as tmp:
        export_detector(Path(tmp), 224)
        embedder = Embedder(parse_method(f"detector:{tmp}"), "cpu")
        model = torch.export.load(str(Path(tmp) / "model.pt2")).module()
    transform = v2.Compose([v2.PILToTensor(), v2.Resize((224, 224), antialias=True),
                            v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    def baseline() -> None:
        with torch.no_grad():
            for s in range(0, len(blobs), 32):
                batch = [transform(Image.open(io.BytesIO(b)).convert("RGB"))
                         for b in blobs[s:s + 32]]
                model(torch.stack(batch)).numpy()

    def ours() -> None:
        for s in range(0, len(blobs), 32):
            embedder.encoded(blobs[s:s + 32])

    cores = torch.get_num_threads()
    baseline()  # warm up both (allocator, thread pool) before timing
    ours()
    bare, mine = best_of(3, baseline), best_of(3, ours)
    return {"images": len(blobs), "torch_threads": cores,
            "bare_torch_per_s_core": len(blobs) / bare / cores,
            "ours_per_s_core": len(blobs) / mine / cores, "ratio": bare / mine}


def bench_decode(rounds: int) -> dict[str, dict]:
    import os

    from wit_builder.overlap.methods import Embedder, parse_method

    blobs = photo_jpegs() * rounds * 4
    cores = os.cpu_count() or 1
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        export_detector(Path(tmp), 224)
        for spec in ("phash", f"detector:{tmp}"):
            method = parse_method(spec)
            one, many = Embedder(method, "cpu", 1), Embedder(method, "cpu", cores)

            def run(embedder: Embedder) -> None:
                for s in range(0, len(blobs), 64):
                    embedder.encoded(blobs[s:s + 64])

            run(one)  # warm up both before timing
            run(many)
            single, threaded = best_of(3, lambda e=one: run(e)), best_of(3, lambda e=many: run(e))
            results[spec.split(":")[0]] = {
                "images": len(blobs), "threads": cores,
                "one_thread_per_s_core": len(blobs) / single / cores,
                "threads_per_s_core": len(blobs) / threaded / cores,
                "ratio": single / threaded}
    return results


def calibration_pool(root: Path) -> str:
    """Digits train split and the photos as 128-px JPEG samples in one shard."""
    from tests.builders import write_shard
    from wit_builder.clip.evalsets import load_digits_set
    from wit_builder.overlap.calibrate import encode, web_size

    train = load_digits_set().train
    images = [encode(web_size(train.load(i))) for i in range(len(train))]
    images += photo_jpegs(128)
    members = [(f"p{i:05d}.jpg", blob) for i, blob in enumerate(images)]
    write_shard(root / "00000.tar", members)
    return str(root / "00000.tar")


def bench_calibrate(steps: int) -> dict[str, dict]:
    from wit_builder.overlap import calibrate_job, train_detector_job
    from wit_builder.overlap.configs import CalibrateConfig, TrainDetectorConfig

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        shards = calibration_pool(Path(tmp))
        detector = Path(tmp) / "detector"
        train_detector_job.run(TrainDetectorConfig(shards=shards, out=detector, image_size=96,
                                              batch_size=64, steps=steps, workers=1))
        for method in ("phash", f"detector:{detector}"):
            name = method.split(":")[0]
            cfg = CalibrateConfig(shards=shards, out=Path(tmp) / f"calibration-{name}",
                                  method=method, eval_sample=200, pool_sample=1500)
            out = calibrate_job.run(cfg).out_dir
            data = json.loads((out / "calibration.json").read_text())
            results[name] = {
                key: data[key] for key in ("suggested_threshold", "method_threshold")}
            for key in ("at_suggested", "at_method_threshold"):
                results[name][key] = {k: {m: round(v, 3) for m, v in p.items()}
                                      for k, p in data[key].items()}
            print((out / "calibration.md").read_text(), flush=True)
        results["detector"]["check"] = json.loads(
            (detector / "detector.json").read_text())["check"]
    results["detector_steps"] = steps
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="knn,embed,decode,calibrate")
    parser.add_argument("--index-size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = {"knn": lambda: bench_knn(args.index_size, args.queries),
            "embed": lambda: bench_embed(args.rounds),
            "decode": lambda: bench_decode(args.rounds),
            "calibrate": lambda: bench_calibrate(args.steps)}
    results = {}
    for name in args.only.split(","):
        results[name] = runs[name]()
        print(name, json.dumps(results[name], default=str)[:600], flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
