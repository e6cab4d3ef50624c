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

import math
from typing import Any

import numpy as np

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
