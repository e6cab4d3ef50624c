"""The faiss index over an eval set's vectors, built once on the driver and broadcast.

* ``flat`` (default) — exact search: an eval set of up to a few million vectors fits in
  memory, and exact search cannot miss a copy.
* ``ivf`` — inverted lists (√n lists, 1/8 of them probed, at least 8): for eval sets of
  many millions.
* ``hnsw`` — a graph index (32 links per node, efSearch 128).

The approximate kinds can miss neighbours; `recall` measures how many of the exact top-k
they return, and `wit overlap` writes it into its stats. Binary pHash codes use faiss's
binary indexes (Hamming distance), float vectors inner-product ones (cosine for unit
vectors). On a GPU a flat float index is searched as fp16 (`to_device`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wit_builder import tarshards
from wit_builder.errors import InputError
from wit_builder.outputs import atomic_write, piece_done, write_json
from wit_builder.overlap.evalimages import eval_images, set_name
from wit_builder.overlap.methods import Embedder

BITS = 64
HNSW_LINKS = 32
HNSW_EF_SEARCH = 128


def flat_index(dim: int, binary: bool) -> Any:
    """An empty exact index."""
    import faiss

    return faiss.IndexBinaryFlat(BITS) if binary else faiss.IndexFlatIP(dim)


def ivf_lists(n: int) -> tuple[int, int]:
    """(lists, lists probed) for `n` vectors."""
    lists = max(1, int(math.sqrt(n)))
    return lists, min(lists, max(8, lists // 8))


def empty_index(kind: str, dim: int, binary: bool, n: int) -> Any:
    """An empty index of `kind` for `n` vectors (IVF kinds still need `train`)."""
    import faiss

    if kind == "flat":
        return flat_index(dim, binary)
    if kind == "hnsw":
        index = faiss.IndexBinaryHNSW(BITS, HNSW_LINKS) if binary else faiss.IndexHNSWFlat(
            dim, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = HNSW_EF_SEARCH
        return index
    lists, probe = ivf_lists(n)
    index = faiss.IndexBinaryIVF(flat_index(dim, True), BITS, lists) if binary else \
        faiss.IndexIVFFlat(flat_index(dim, False), dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.nprobe = probe
    return index


def build_index(vectors: np.ndarray, binary: bool, kind: str = "flat") -> Any:
    """An index of `kind` holding `vectors` (row i = eval image i)."""
    index = empty_index(kind, vectors.shape[1] if not binary else BITS, binary, len(vectors))
    if len(vectors):
        if not index.is_trained:
            index.train(vectors)
        index.add(vectors)
    return index


def serialize(index: Any, binary: bool) -> bytes:
    import faiss

    fn = faiss.serialize_index_binary if binary else faiss.serialize_index
    return fn(index).tobytes()


def deserialize(blob: bytes, binary: bool) -> Any:
    import faiss

    fn = faiss.deserialize_index_binary if binary else faiss.deserialize_index
    return fn(np.frombuffer(blob, dtype=np.uint8))


def gpu_available() -> bool:
    """True when this faiss build has GPU support and sees a GPU."""
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


_RESOURCES: list[Any] = []  # one StandardGpuResources per process (it owns scratch memory)


def to_device(index: Any, device: str) -> Any:
    """`index` on GPU 0 when `device` is cuda and faiss can (flat float as fp16), else as is.

    Only flat float indexes move: fp16 storage halves memory and uses the GEMM units;
    the scores differ from CPU's by ~1e-3, which `wit overlap`'s thresholds tolerate.
    """
    import faiss

    if device != "cuda" or not gpu_available() or not isinstance(index, faiss.IndexFlat):
        return index
    if not _RESOURCES:
        _RESOURCES.append(faiss.StandardGpuResources())
    options = faiss.GpuClonerOptions()
    options.useFloat16 = True
    return faiss.index_cpu_to_gpu(_RESOURCES[0], 0, index, options)


def recall(approximate: Any, exact: Any, queries: np.ndarray, k: int) -> float | None:
    """Share of the exact index's top-k ids (of `queries`) that `approximate` returns."""
    if len(queries) == 0 or exact.ntotal == 0:
        return None
    k = min(k, exact.ntotal)
    _, truth = exact.search(queries, k)
    _, found = approximate.search(queries, k)
    hits = sum(len(set(t[t >= 0]) & set(f[f >= 0])) for t, f in zip(truth, found, strict=True))
    total = int((truth >= 0).sum())
    return hits / total if total else None


INDEX_FILE, META_FILE, INFO_FILE = "index.faiss", "meta.parquet", "info.json"
META_COLUMNS = ("eval_set", "eval_split", "eval_index", "eval_id")
RECALL_QUERIES = 512  # pool images whose neighbours measure an approximate index's recall


@dataclass
class EvalVectors:
    """Every readable eval image's vector, its (set, split, index, eval id), and per set
    {eval_images, unreadable}."""

    vectors: np.ndarray
    meta: list[tuple[str, str, int, str]]
    sets: dict[str, dict]


def eval_vectors(specs: list[str], split: str, embedder: Embedder, batch_size: int
                 ) -> EvalVectors:
    """The vectors of the eval sets `specs` (chosen splits); `InputError` if no image of
    them is readable. Images are decoded a batch at a time and only their vectors kept
    (ImageNet's 1.28M train images decoded whole would be ~700 GB; their vectors at 256
    floats are ~1.3 GB)."""
    vectors, meta, sets = [], [], {}
    for spec in specs:
        counts, chunk = {"eval_images": 0, "unreadable": 0}, []
        for im in eval_images(spec, split):
            counts["eval_images"] += 1
            counts["unreadable"] += im.image is None
            chunk += [im] if im.image is not None else []
            if len(chunk) == batch_size:
                embed_chunk(embedder, chunk, vectors, meta)
        embed_chunk(embedder, chunk, vectors, meta)
        sets[set_name(spec)] = counts
    if not meta:
        raise InputError("no readable image in the eval sets")
    return EvalVectors(np.concatenate(vectors), meta, sets)


def embed_chunk(embedder: Embedder, chunk: list, vectors: list[np.ndarray],
                meta: list[tuple[str, str, int, str]]) -> None:
    """Embed a batch of decoded eval images into `vectors` and `meta` (emptied)."""
    if chunk:
        vectors.append(embedder.images([im.image for im in chunk]))
        meta += [(im.eval_set, im.split, im.index, im.eval_id) for im in chunk]
        chunk.clear()


def pool_recall(kind: str, embedder: Embedder, index: Any, vectors: np.ndarray,
                paths: list[str], k: int) -> float | None:
    """Top-k recall of an approximate index against exact search, on pool images (None
    for an exact index)."""
    if kind == "flat":
        return None
    blobs: list[bytes] = []
    for path in paths:
        blobs += [b for _, _, b in tarshards.images(path) if b is not None]
        if len(blobs) >= RECALL_QUERIES:
            break
    queries, _ = embedder.encoded(blobs[:RECALL_QUERIES])
    exact = flat_index(vectors.shape[1], embedder.method.binary)
    exact.add(vectors)
    return recall(index, exact, queries, k)


def save_eval_index(directory: Path, blob: bytes, evals: EvalVectors,
                    recall_k: float | None) -> None:
    """The serialized index, its rows' meta and the per-set counts (completion mark:
    ``info.json``, written last)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / INDEX_FILE, lambda tmp: tmp.write_bytes(blob))
    meta = pa.table({name: [m[i] for m in evals.meta] for i, name in enumerate(META_COLUMNS)})
    atomic_write(directory / META_FILE, lambda tmp: pq.write_table(meta, tmp))
    write_json(directory / INFO_FILE, {"sets": evals.sets, "recall": recall_k,
                                       "rows": len(evals.meta)})


def load_eval_index(directory: Path) -> tuple[bytes, list[tuple], dict, float | None] | None:
    """(index bytes, meta rows, per-set counts, recall) saved by `save_eval_index`, or
    None if there is none (or it is unfinished)."""
    import pyarrow.parquet as pq

    if not piece_done(directory / INFO_FILE):
        return None
    info = json.loads((directory / INFO_FILE).read_text())
    columns = pq.read_table(directory / META_FILE).to_pydict()
    meta = list(zip(*(columns[c] for c in META_COLUMNS), strict=True))
    return (directory / INDEX_FILE).read_bytes(), meta, info["sets"], info["recall"]
