"""`wit overlap`: which pool images are copies of evaluation images (see `detect`).

The eval sets are embedded once on the driver into one exact faiss index; one Spark task
per pool shard embeds its images, searches the broadcast index and writes the shard
again without its matches.

Outputs: ``overlap.parquet`` (uid, shard, key, eval_set, eval_split, eval_index, eval_id,
score, rank, method: one row per match), ``filtered/`` (the pool shards minus every
matched sample, same names, with ``sizes.json``), ``eval_sets.json`` (per set: eval
images, unreadable, pool samples scanned, matched), `stats.json`. Rows are pool samples:
in = scanned, drops = ``eval_overlap`` (matched), out = kept in ``filtered/``.
"""

from __future__ import annotations

import json
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
from wit_builder.overlap.methods import Embedder, Method, build_index, parse_method, serialize
from wit_builder.spark import run_spark_stage, spark_schema
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGE = "overlap"
OUTPUT_VERSION = 1
CONFIG = OverlapConfig
OVERLAP_FILE = "overlap.parquet"
FILTERED_DIR = "filtered"
MATCH_COLUMNS = ("uid", "shard", "key", "eval_set", "eval_split", "eval_index", "eval_id",
                 "score", "rank", "method")


def pool_shards(spec: str) -> list[str]:
    """The pool's local tar files; `InputError` if one is missing or remote."""
    paths = expand_shards(spec)
    remote = [p for p in paths if not Path(p).is_file()]
    if remote:
        raise InputError(f"pool shards must be local files here: {remote[0]}")
    return paths


def eval_index(cfg: OverlapConfig, method: Method) -> tuple[Any, list[tuple], dict[str, dict]]:
    """(faiss index, meta per row, per-set counts) over every eval image."""
    embedder = Embedder(method)
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
    return build_index(np.concatenate(vectors), method.binary), meta, sets


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


def build(tmp: Path, cfg: OverlapConfig, paths: list[str], spark: SparkSession) -> StageStats:
    """Detect overlaps and write the filtered pool into `tmp`."""
    method = parse_method(cfg.method, cfg.threshold)
    index, meta, sets = eval_index(cfg, method)
    (tmp / FILTERED_DIR).mkdir()
    task = detect.Task(serialize(index, method.binary), meta, method, cfg.k, cfg.batch_size,
                       str(tmp / FILTERED_DIR))
    rows = run_detection(spark, paths, task)
    is_match = pc.equal(rows["kind"], "match")
    matches = rows.filter(is_match).select(list(MATCH_COLUMNS)).sort_by(
        [("uid", "ascending"), ("rank", "ascending")])
    pq.write_table(matches, tmp / OVERLAP_FILE)
    counts = rows.filter(pc.invert(is_match)).to_pylist()
    return write_summary(tmp, method, counts, per_set(matches, sets))


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
    stats = StageStats(STAGE, rows_in=totals["scanned"],
                       rows_out=totals["scanned"] - totals["matched"])
    stats.drop("eval_overlap", totals["matched"])
    stats.extra.update(method=method.name, threshold=method.threshold,
                       unreadable_pool_images=totals["unreadable"], eval_sets=sets)
    if totals["unreadable"]:
        stats.notice(f"{totals['unreadable']} pool image(s) could not be decoded (kept in "
                     "filtered/, not checked)")
    return stats


def run(cfg: OverlapConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    paths = pool_shards(cfg.shards)
    method = parse_method(cfg.method, cfg.threshold)
    inputs: list[Any] = [fingerprint(paths)]
    if method.checkpoint:
        inputs.append(fingerprint([method.checkpoint]))
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                           lambda tmp, session: build(tmp, cfg, paths, session), spark)
