"""Pool shards against an eval index: one Spark task per shard.

A task reads its tar, embeds the samples' images in batches (`methods.Embedder`),
searches the broadcast faiss index for the `k` nearest eval images, keeps the neighbours
past the threshold, and writes the shard again without the matched samples (the
``filtered/`` copy, member bytes copied as they are). It emits `ROW_SCHEMA` rows: one per
match (``kind`` = match), one per borderline neighbour that just misses the threshold
(``near``, for manual review) and per-shard counters (``count``: ``scanned``,
``unreadable``, ``matched``).

A shard's rows are saved under ``rows/`` of the run's work directory after its filtered
copy is in place, so a rerun of a killed job (same config) skips the finished shards.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wit_builder.images.tars import tar_samples
from wit_builder.overlap.index import deserialize, to_device
from wit_builder.overlap.methods import Embedder, Method

ROW_SCHEMA = pa.schema([
    ("kind", pa.string()), ("uid", pa.string()), ("shard", pa.string()),
    ("key", pa.string()), ("eval_set", pa.string()), ("eval_split", pa.string()),
    ("eval_index", pa.int64()), ("eval_id", pa.string()), ("score", pa.float64()),
    ("rank", pa.int32()), ("method", pa.string()), ("n", pa.int64()),
])
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
ROWS_DIR = "rows"
FILTERED_DIR = "filtered"


@dataclass(frozen=True)
class Task:
    """What every shard task needs (picklable)."""

    index: bytes
    meta: list[tuple[str, str, int, str]]  # per index row: set, split, index, eval id
    method: Method
    k: int
    batch_size: int
    work_dir: str
    device: str = "cpu"


def pool_samples(path: str) -> Iterator[tuple[str, str, bytes | None]]:
    """(key, uid, image bytes or None) per sample of a pool shard."""
    for key, members, tar in tar_samples(path):
        image = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
        uid = key
        if "json" in members:
            uid = json.loads(tar.extractfile(members["json"]).read()).get("uid") or key
        yield key, uid, tar.extractfile(image).read() if image is not None else None


def match_rows(task: Task, index: Any, vectors: np.ndarray, samples: list[tuple[str, str]],
               shard: str) -> list[dict[str, Any]]:
    """Rows for the neighbours of `vectors` that pass the threshold."""
    if len(vectors) == 0 or index.ntotal == 0:
        return []
    scores, ids = index.search(vectors, min(task.k, index.ntotal))
    rows, method = [], task.method
    for (key, uid), row_scores, row_ids in zip(samples, scores, ids, strict=True):
        for rank, (score, i) in enumerate(zip(row_scores, row_ids, strict=True)):
            if i < 0:
                continue
            eval_set, split, eval_index, eval_id = task.meta[i]
            if method.better(float(score), method.threshold_for(eval_set)):
                kind = "match"
            elif method.better(float(score), method.near_limit(eval_set)):
                kind = "near"
            else:
                continue
            rows.append({"kind": kind, "uid": uid, "shard": shard, "key": key,
                         "eval_set": eval_set, "eval_split": split, "eval_index": eval_index,
                         "eval_id": eval_id, "score": float(score), "rank": rank + 1,
                         "method": task.method.name})
    return rows


def scan_shard(path: str, task: Task, embedder: Embedder, index: Any) -> list[dict[str, Any]]:
    """Match rows and counters of one pool shard; writes its filtered copy."""
    shard = Path(path).name
    rows: list[dict[str, Any]] = []
    batch: list[tuple[str, str, bytes]] = []
    scanned = unreadable = 0
    for key, uid, data in pool_samples(path):
        scanned += 1
        if data is None:
            unreadable += 1
            continue
        batch.append((key, uid, data))
        if len(batch) == task.batch_size:
            unreadable += flush(batch, task, embedder, index, shard, rows)
    unreadable += flush(batch, task, embedder, index, shard, rows)
    matched = {r["key"] for r in rows if r["kind"] == "match"}
    write_filtered(path, Path(task.work_dir) / FILTERED_DIR / shard, matched)
    counts = {"scanned": scanned, "unreadable": unreadable, "matched": len(matched)}
    return rows + [{"kind": "count", "shard": shard, "key": name, "n": n}
                   for name, n in counts.items()]


def flush(batch: list[tuple[str, str, bytes]], task: Task, embedder: Embedder, index: Any,
          shard: str, rows: list[dict[str, Any]]) -> int:
    """Embed and search a batch (emptied); returns how many images did not decode."""
    if not batch:
        return 0
    vectors, ok = embedder.encoded([b for _, _, b in batch])
    rows += match_rows(task, index, vectors, [(batch[i][0], batch[i][1]) for i in ok], shard)
    bad = len(batch) - len(ok)
    batch.clear()
    return bad


def write_filtered(src: str, dst: Path, removed: set[str]) -> None:
    """Copy the tar `src` to `dst` without the samples whose key is in `removed`."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    with tarfile.open(src) as source, tarfile.open(tmp, "w") as target:
        for member in source:
            if member.isfile() and member.name.split(".", 1)[0] not in removed:
                target.addfile(member, source.extractfile(member))
    os.replace(tmp, dst)


def detect_partition(batches: Iterable[pa.RecordBatch], task: Any) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: a ``path`` column of pool shards in, `ROW_SCHEMA` rows out."""
    task, embedder, index = task.value, None, None
    for batch in batches:
        for path in batch.column("path").to_pylist():
            saved = Path(task.work_dir) / ROWS_DIR / f"{Path(path).name}.parquet"
            if saved.exists():  # finished by an earlier, interrupted run
                yield from pq.read_table(saved).cast(ROW_SCHEMA).to_batches()
                continue
            if embedder is None:  # loaded once per task, and only with work to do
                embedder = Embedder(task.method, task.device)
                index = to_device(deserialize(task.index, task.method.binary), task.device)
            yield from save_rows(saved, scan_shard(path, task, embedder, index)).to_batches()


def save_rows(path: Path, rows: list[dict[str, Any]]) -> pa.Table:
    """Write a finished shard's rows atomically (the shard's completion marker); the rows
    as a table."""
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return table
