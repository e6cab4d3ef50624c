"""Scoring pool shards against the eval index: one Spark task per shard, no threshold.

A task reads its tar, embeds the samples' images in batches (`methods.Embedder`) and
searches the broadcast faiss index for the `k` nearest eval images. It saves every
neighbour with its score and rank (``kind`` = neighbour) and the shard's counters
(``kind`` = count: ``scanned``, ``unreadable``) as ``neighbours/SHARD.parquet`` of the
run's directory, written atomically: the shard's completion mark. A rerun (after a kill,
or with another threshold, whose scores the previous output hands over) skips the shards
already scored; only `decide` applies a threshold.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wit_builder import tarshards
from wit_builder.errors import InputError
from wit_builder.images import manifest
from wit_builder.outputs import atomic_write, marker_or_none, piece_done
from wit_builder.overlap.index import deserialize, to_device
from wit_builder.overlap.matches import NEIGHBOURS_DIR, ROW_SCHEMA
from wit_builder.overlap.methods import Embedder, Embedding, codes

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def pool_shards(spec: str) -> list[str]:
    """The pool's local tar files; `InputError` if one is missing or remote."""
    paths = tarshards.expand(spec)
    remote = [p for p in paths if not Path(p).is_file()]
    if remote:
        raise InputError(f"pool shards must be local files here: {remote[0]}")
    return paths


@dataclass(frozen=True)
class Task:
    """What every scoring task needs (picklable)."""

    index: bytes
    meta: list[tuple[str, str, int, str]]  # per index row: set, split, index, eval id
    embedding: Embedding
    k: int
    batch_size: int
    work_dir: str
    device: str = "cpu"
    # folders of `wit shards` outputs among the pool's: with the phash method their
    # manifest's pHash (the same function, computed when the shards were made) is used
    # instead of decoding every image again
    manifests: tuple[str, ...] = ()
    decode_threads: int = 1


def manifest_folders(paths: list[str], embedding: Embedding) -> tuple[str, ...]:
    """The pool folders whose manifest can stand in for decoding (see `Task`)."""
    if embedding.kind != "phash":
        return ()
    folders = sorted({str(Path(p).parent) for p in paths})
    return tuple(f for f in folders
                 if (marker_or_none(Path(f)) or {}).get("stage") == manifest.STAGE)


def neighbour_rows(task: Task, index: Any, vectors: np.ndarray,
                   samples: list[tuple[str, str]], shard: str) -> list[dict[str, Any]]:
    """One row per (sample, one of its k nearest eval images), with score and rank."""
    if len(vectors) == 0 or index.ntotal == 0:
        return []
    scores, ids = index.search(vectors, min(task.k, index.ntotal))
    rows = []
    for (key, uid), row_scores, row_ids in zip(samples, scores, ids, strict=True):
        for rank, (score, i) in enumerate(zip(row_scores, row_ids, strict=True)):
            if i < 0:
                continue
            eval_set, split, eval_index, eval_id = task.meta[i]
            rows.append({"kind": "neighbour", "uid": uid, "shard": shard, "key": key,
                         "eval_set": eval_set, "eval_split": split, "eval_index": eval_index,
                         "eval_id": eval_id, "score": float(score), "rank": rank + 1,
                         "method": task.embedding.name})
    return rows


def score_shard(path: str, shard: str, task: Task, embedder: Embedder, index: Any
                ) -> list[dict[str, Any]]:
    """Neighbour rows and counters of the pool shard at `path`, called `shard`."""
    if str(Path(path).parent) in task.manifests:
        return score_from_manifest(path, shard, task, index)
    rows: list[dict[str, Any]] = []
    batch: list[tuple[str, str, bytes]] = []
    scanned = unreadable = 0
    for key, uid, data in tarshards.images(path):
        scanned += 1
        if data is None:
            unreadable += 1
            continue
        batch.append((key, uid, data))
        if len(batch) == task.batch_size:
            unreadable += flush(batch, task, embedder, index, shard, rows)
    unreadable += flush(batch, task, embedder, index, shard, rows)
    return rows + count_rows(shard, {"scanned": scanned, "unreadable": unreadable})


def score_from_manifest(path: str, shard: str, task: Task, index: Any
                        ) -> list[dict[str, Any]]:
    """`score_shard` for a shard of a `wit shards` output with the phash method: the
    samples and their pHash from its manifest, no image decoded (every sample there
    decoded when the shards were made)."""
    known = manifest.shard_rows(Path(path).parent, Path(path).name, ["uid", "key", "phash"])
    rows: list[dict[str, Any]] = []
    for start in range(0, known.num_rows, task.batch_size):
        part = known.slice(start, task.batch_size)
        vectors = codes(part.column("phash").to_numpy().astype(np.int64))
        rows += neighbour_rows(task, index, vectors, list(zip(
            part.column("key").to_pylist(), part.column("uid").to_pylist(), strict=True)),
            shard)
    return rows + count_rows(shard, {"scanned": known.num_rows, "unreadable": 0,
                                     "hashes_reused": known.num_rows})


def count_rows(shard: str, counts: dict[str, int]) -> list[dict[str, Any]]:
    """A shard's counters as ``count`` rows (`ROW_SCHEMA`: key is the counter's name)."""
    return [{"kind": "count", "shard": shard, "key": name, "n": n}
            for name, n in counts.items()]


def flush(batch: list[tuple[str, str, bytes]], task: Task, embedder: Embedder, index: Any,
          shard: str, rows: list[dict[str, Any]]) -> int:
    """Embed and search a batch (emptied); returns how many images did not decode."""
    if not batch:
        return 0
    vectors, ok = embedder.encoded([b for _, _, b in batch])
    rows += neighbour_rows(task, index, vectors, [(batch[i][0], batch[i][1]) for i in ok],
                           shard)
    bad = len(batch) - len(ok)
    batch.clear()
    return bad


def scores_file(work_dir: str | Path, shard: str) -> Path:
    """Where the scores of the pool shard called `shard` are saved."""
    return Path(work_dir) / NEIGHBOURS_DIR / f"{shard}.parquet"


def shards_frame(spark: SparkSession, paths: list[str]) -> Any:
    """(path, shard) of every pool shard, one partition each (`tarshards.shard_ids`)."""
    rows = list(zip(paths, tarshards.shard_ids(paths), strict=True))
    return spark.createDataFrame(rows, "path string, shard string").repartition(len(rows))


def score_partition(batches: Iterable[pa.RecordBatch], task: Any) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: (path, shard) of pool shards in, the shards scored out; the
    scores go to files (`scores_file`)."""
    task = task.value
    for batch in batches:
        done = []
        for path, shard in zip(batch.column("path").to_pylist(),
                               batch.column("shard").to_pylist(), strict=True):
            saved = scores_file(task.work_dir, shard)
            if not piece_done(saved):  # else scored by an earlier run
                embedder, index = worker_models(task)
                save_rows(saved, score_shard(path, shard, task, embedder, index))
            done.append(shard)
        yield pa.RecordBatch.from_pydict({"shard": done},
                                         schema=pa.schema([("shard", pa.string())]))


# The embedder and index of the run this Python worker last scored for: Spark reuses its
# Python workers, so a model and an index are loaded once per worker, not once per shard
# (40k shards at full scale), as matching keeps its automaton.
_WORKER_MODELS: dict[tuple[str, str], tuple[Embedder, Any]] = {}


def worker_models(task: Task) -> tuple[Embedder, Any]:
    """(embedder, index on the task's device) for `task`, loaded once per worker."""
    key = (task.work_dir, task.embedding.name)
    if key not in _WORKER_MODELS:
        _WORKER_MODELS.clear()  # another run's models: free them first
        _WORKER_MODELS[key] = (
            Embedder(task.embedding, task.device, task.decode_threads),
            to_device(deserialize(task.index, task.embedding.binary), task.device))
    return _WORKER_MODELS[key]


def save_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write a finished shard's rows atomically (the shard's completion mark)."""
    table = pa.Table.from_pylist(rows, schema=ROW_SCHEMA)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def run_scoring(spark: SparkSession, paths: list[str], task: Task) -> int:
    """Score every shard not scored yet in the task's directory, one Spark task each;
    the shards done."""
    body = functools.partial(score_partition, task=spark.sparkContext.broadcast(task))
    return shards_frame(spark, paths).mapInArrow(body, "shard string").count()
