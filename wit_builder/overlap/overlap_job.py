"""`wit overlap`: which pool images are copies of evaluation images (see `detect`).

The eval sets are embedded once on the driver into one faiss index (`index`); one Spark
task per pool shard embeds its images, searches the broadcast index and writes the shard
again without its matches. The run is resumable: finished shards are kept in the work
directory and a rerun with the same config skips them.

Outputs: ``overlap.parquet`` (uid, shard, key, eval_set, eval_split, eval_index, eval_id,
score, rank, method: one row per match), ``near.parquet`` (the same columns for
neighbours just short of the threshold, for manual review), ``filtered/`` (the pool
shards minus every matched sample, same names, with ``sizes.json``), ``eval_sets.json``
(per set: eval images, unreadable, pool samples scanned, matched), `stats.json` (with the
approximate index's recall against exact search). Rows are pool samples: in = scanned,
drops = ``eval_overlap`` (matched), out = kept in ``filtered/``.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from wit_builder.clip.data import expand_shards
from wit_builder.errors import InputError
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult
from wit_builder.overlap import detect
from wit_builder.overlap.configs import OverlapConfig
from wit_builder.overlap.evalimages import eval_images
from wit_builder.overlap.index import build_index, flat_index, recall, serialize
from wit_builder.overlap.methods import (
    Embedder,
    Method,
    method_files,
    parse_method,
    resolve_device,
)
from wit_builder.spark import run_spark_stage, spark_schema
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGE = "overlap"
OUTPUT_VERSION = 1
CONFIG = OverlapConfig
OVERLAP_FILE = "overlap.parquet"
NEAR_FILE = "near.parquet"
FILTERED_DIR = detect.FILTERED_DIR
RECALL_QUERIES = 512  # pool images whose neighbours measure an approximate index's recall
MATCH_COLUMNS = ("uid", "shard", "key", "eval_set", "eval_split", "eval_index", "eval_id",
                 "score", "rank", "method")


def pool_shards(spec: str) -> list[str]:
    """The pool's local tar files; `InputError` if one is missing or remote."""
    paths = expand_shards(spec)
    remote = [p for p in paths if not Path(p).is_file()]
    if remote:
        raise InputError(f"pool shards must be local files here: {remote[0]}")
    return paths


def method_of(cfg: OverlapConfig) -> Method:
    """The config's method with its thresholds and input settings."""
    return parse_method(cfg.method, cfg.threshold, input_size=cfg.input_size, mean=cfg.mean,
                        std=cfg.std, thresholds=cfg.thresholds, near=cfg.near)


def eval_vectors(cfg: OverlapConfig, embedder: Embedder
                 ) -> tuple[np.ndarray, list[tuple], dict[str, dict]]:
    """(vectors, meta per row, per-set counts) of every readable eval image."""
    vectors, meta, sets = [], [], {}
    for spec in cfg.eval:
        images = list(eval_images(spec, cfg.split))
        good = [im for im in images if im.image is not None]
        name = images[0].eval_set if images else spec
        sets[name] = {"eval_images": len(images), "unreadable": len(images) - len(good)}
        for start in range(0, len(good), cfg.batch_size):
            chunk = good[start:start + cfg.batch_size]
            vectors.append(embedder.images([im.image for im in chunk]))
            meta += [(im.eval_set, im.split, im.index, im.eval_id) for im in chunk]
    if not meta:
        raise InputError("no readable image in the eval sets")
    unknown = set(cfg.thresholds) - set(sets)
    if unknown:
        raise InputError(f"thresholds given for unknown eval set(s) {sorted(unknown)}; "
                         f"the sets are {sorted(sets)}")
    return np.concatenate(vectors), meta, sets


def index_recall(cfg: OverlapConfig, embedder: Embedder, index: Any,
                 vectors: np.ndarray, paths: list[str]) -> float | None:
    """Top-k recall of an approximate index against exact search, on pool images."""
    if cfg.index == "flat":
        return None
    blobs = []
    for path in paths:
        blobs += [b for _, _, b in detect.pool_samples(path) if b is not None]
        if len(blobs) >= RECALL_QUERIES:
            break
    queries, _ = embedder.encoded(blobs[:RECALL_QUERIES])
    exact = flat_index(vectors.shape[1], embedder.method.binary)
    exact.add(vectors)
    return recall(index, exact, queries, cfg.k)


def run_detection(spark: SparkSession, paths: list[str], task: detect.Task) -> pa.Table:
    """Every shard's rows (`detect.ROW_SCHEMA`), one task per shard."""
    import functools

    files = spark.createDataFrame([(p,) for p in paths], "path string").repartition(len(paths))
    body = functools.partial(detect.detect_partition,
                             task=spark.sparkContext.broadcast(task))
    rows = files.mapInArrow(body, spark_schema(detect.ROW_SCHEMA)).toArrow()
    return rows.cast(detect.ROW_SCHEMA)


def per_set(matches: pa.Table, sets: dict[str, dict]) -> dict[str, dict]:
    """Per eval set: its images, unreadable ones, and the pool samples it matched."""
    matched: dict[str, set[str]] = {}
    for r in matches.select(["eval_set", "uid"]).to_pylist():
        matched.setdefault(r["eval_set"], set()).add(r["uid"])
    return {name: {**counts, "matches": len(matched.get(name, ()))}
            for name, counts in sets.items()}


def build(work: Path, cfg: OverlapConfig, paths: list[str], method: Method,
          spark: SparkSession) -> StageStats:
    """Detect overlaps (shards finished in `work` are kept) and write the outputs."""
    device = resolve_device(cfg.device)
    embedder = Embedder(method, device)
    vectors, meta, sets = eval_vectors(cfg, embedder)
    index = build_index(vectors, method.binary, cfg.index)
    index_recall_k = index_recall(cfg, embedder, index, vectors, paths)
    for sub in (FILTERED_DIR, detect.ROWS_DIR):
        (work / sub).mkdir(exist_ok=True)
    task = detect.Task(serialize(index, method.binary), meta, method, cfg.k, cfg.batch_size,
                       str(work), device)
    rows = run_detection(spark, paths, task)
    shutil.rmtree(work / detect.ROWS_DIR)
    write_neighbours(work, rows)
    counts = rows.filter(pc.equal(rows["kind"], "count")).to_pylist()
    matches = pq.read_table(work / OVERLAP_FILE)
    stats = write_summary(work, method, counts, per_set(matches, sets))
    if index_recall_k is not None:
        stats.extra.update(index=cfg.index, index_recall_at_k=round(index_recall_k, 4))
    return stats


def write_neighbours(work: Path, rows: pa.Table) -> None:
    """``overlap.parquet`` (matches) and ``near.parquet`` (borderline non-matches)."""
    for kind, name in (("match", OVERLAP_FILE), ("near", NEAR_FILE)):
        table = rows.filter(pc.equal(rows["kind"], kind)).select(list(MATCH_COLUMNS))
        pq.write_table(table.sort_by([("uid", "ascending"), ("rank", "ascending")]),
                       work / name)


def write_summary(tmp: Path, method: Method, counts: list[dict],
                  sets: dict[str, dict]) -> StageStats:
    """sizes.json of the filtered pool, eval_sets.json and the stage's stats."""
    totals: Counter[str] = Counter()
    sizes = {}
    for c in counts:
        totals[c["key"]] += c["n"]
    for shard in sorted({c["shard"] for c in counts}):
        n = {c["key"]: c["n"] for c in counts if c["shard"] == shard}
        sizes[shard] = n["scanned"] - n["matched"]
    (tmp / FILTERED_DIR / "sizes.json").write_text(json.dumps(sizes, indent=2) + "\n")
    for info in sets.values():
        info["pool_scanned"] = totals["scanned"]
    (tmp / "eval_sets.json").write_text(json.dumps(sets, indent=2) + "\n")
    if not totals["scanned"]:
        raise InputError("the pool shards hold no samples")
    stats = StageStats(STAGE, rows_in=totals["scanned"],
                       rows_out=totals["scanned"] - totals["matched"])
    stats.drop("eval_overlap", totals["matched"])
    stats.extra.update(method=method.name, threshold=method.threshold,
                       thresholds=method.thresholds,
                       unreadable_pool_images=totals["unreadable"], eval_sets=sets)
    if totals["unreadable"]:
        stats.notice(f"{totals['unreadable']} pool image(s) could not be decoded (kept in "
                     "filtered/, not checked)")
    return stats


def run(cfg: OverlapConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    paths = pool_shards(cfg.shards)
    method = method_of(cfg)
    inputs: list[Any] = [fingerprint(paths)]
    if method.path:
        inputs.append(fingerprint(method_files(method)))
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                           lambda work, session: build(work, cfg, paths, method, session),
                           spark,
                           resumable=True)
