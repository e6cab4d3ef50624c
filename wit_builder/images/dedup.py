"""Exact and near-duplicate images: sha256 groups, and pHash pairs within Hamming ≤ d.

Near pairs are found exactly at any scale by banding: the 64 bits are cut into d+1
bands, and two hashes within distance d agree on at least one band (pigeonhole: d
differing bits touch at most d bands). Every (band, band value) bucket is verified in
its own Spark task by blocked brute force (XOR and popcount over NumPy arrays) among its
distinct hashes, identical hashes collapsed first: no bucket is skipped, whatever its size
(blank images share their hashes by the thousand), and a pair is emitted only by the
lowest band its hashes agree on, so no global ``distinct`` is needed.

Groups are the connected components of the pair graph, computed in Spark
(`components`); each keeps its smallest uid, so the choice does not depend on task
order. `components` here (scipy) and `faiss_pairs` (faiss' binary brute force) are the
references the tests check against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from wit_builder.images.components import components as spark_components
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def band_masks(max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of each of the max_distance+1 bands covering 64 bits."""
    bands = max_distance + 1
    widths = [64 // bands + (1 if i < 64 % bands else 0) for i in range(bands)]
    shifts = np.cumsum([0, *widths[:-1]]).tolist()
    return list(zip(shifts, widths, strict=True))


def exact_groups(samples: DataFrame) -> DataFrame:
    """(uid, kept_uid) for every sample whose sha256 another sample with a smaller uid has."""
    from pyspark.sql import functions as F

    first = samples.groupBy("sha256").agg(F.min("uid").alias("kept_uid"))
    return (samples.join(first, "sha256").filter(F.col("uid") != F.col("kept_uid"))
            .select("uid", "kept_uid"))


def band_rows(samples: DataFrame, max_distance: int) -> DataFrame:
    """(band, value, uid, phash): one row per sample and band."""
    from pyspark.sql import functions as F

    cols = []
    for i, (shift, width) in enumerate(band_masks(max_distance)):
        value = F.shiftrightunsigned("phash", shift).bitwiseAND(F.lit((1 << width) - 1))
        cols.append(F.struct(F.lit(i).alias("band"), value.alias("value")))
    return (samples.select("uid", "phash", F.explode(F.array(*cols)).alias("b"))
            .select("b.band", "b.value", "uid", "phash"))


PAIR_COLUMNS = "uid_a string, uid_b string, distance int"
BLOCK_CELLS = 1 << 23  # XOR results held at once while verifying a bucket (64 MiB)
# Buckets up to this size are joined (a few candidate rows each); bigger ones cost less as
# NumPy brute force than as candidate rows through a join.
JOIN_UP_TO = 32


def near_pairs(samples: DataFrame, max_distance: int, block: int
               ) -> tuple[DataFrame, DataFrame]:
    """(edges joining every pair within distance d, big buckets (band, value, count)).

    A bucket of at most `JOIN_UP_TO` hashes is expanded by a self-join (all its pairs); a
    bigger one (at scale every bucket; blank images share their hashes by the thousand)
    is verified in its own task by brute force over its distinct hashes, in blocks of
    `block` rows (`bucket_edges`). No bucket is skipped. Every pair is emitted once, by
    the lowest band its hashes agree on; the edges are enough to group (in a big bucket
    the smallest uid of each identical hash stands for its hash); `uid_a < uid_b`.
    """
    from pyspark.sql import functions as F

    rows = band_rows(samples, max_distance)
    sizes = rows.groupBy("band", "value").agg(F.count("*").alias("n"))
    sized = rows.join(sizes, ["band", "value"])
    small = sized.filter(F.col("n") <= JOIN_UP_TO)
    a, b = small.alias("a"), small.alias("b")
    xor = F.col("a.phash").bitwiseXOR(F.col("b.phash"))
    joined = (a.join(b, (F.col("a.band") == F.col("b.band"))
                     & (F.col("a.value") == F.col("b.value"))
                     & (F.col("a.uid") < F.col("b.uid")))
              .filter(lowest_band(xor, F.col("a.band"), max_distance))
              .select(F.col("a.uid").alias("uid_a"), F.col("b.uid").alias("uid_b"),
                      F.bit_count(xor).cast("int").alias("distance"))
              .filter(F.col("distance") <= max_distance))

    def verify(bucket: pd.DataFrame) -> pd.DataFrame:  # typed: Spark reads the hints
        return bucket_edges(bucket, max_distance, block)

    big_rows = sized.filter(F.col("n") > JOIN_UP_TO).drop("n")
    verified = big_rows.groupBy("band", "value").applyInPandas(verify, PAIR_COLUMNS)
    return joined.unionByName(verified), sizes.filter(F.col("n") > block)


def lowest_band(xor: Any, band: Any, max_distance: int) -> Any:
    """Spark condition: no band below `band` agrees on the two hashes whose XOR is
    `xor` (so the pair comes out of its lowest agreeing band only)."""
    from pyspark.sql import functions as F

    condition = F.lit(True)
    for j, (shift, width) in enumerate(band_masks(max_distance)):
        differs = F.shiftrightunsigned(xor, shift).bitwiseAND(F.lit((1 << width) - 1)) != 0
        condition = condition & ((band <= j) | differs)
    return condition


def bucket_edges(bucket: pd.DataFrame, max_distance: int, block: int) -> pd.DataFrame:
    """The edges of one band bucket (see `near_pairs`): a pair is emitted from the lowest
    band its two hashes agree on, so it comes out of exactly one bucket."""
    band = int(bucket["band"].iloc[0])
    bucket = bucket.sort_values("uid", kind="stable")
    uids = bucket["uid"].to_numpy()
    hashes, first, inverse = np.unique(bucket["phash"].to_numpy(np.int64),
                                       return_index=True, return_inverse=True)
    reps = uids[first]  # uids are sorted: the first of each hash is its smallest
    edges = [identical_edges(uids, reps[inverse])] if band == 0 else []
    codes = hashes.view(np.uint64)
    rows = max(1, min(block, BLOCK_CELLS // max(1, len(codes))))
    for start in range(0, len(codes), rows):
        edges.append(block_edges(codes, start, rows, band, max_distance, reps))
    return pd.concat(edges, ignore_index=True) if edges else pd.DataFrame(
        {"uid_a": [], "uid_b": [], "distance": []})


def identical_edges(uids: np.ndarray, reps: np.ndarray) -> pd.DataFrame:
    """Each uid joined to the smallest uid of its hash (distance 0; every band agrees on
    identical hashes, so band 0 emits them)."""
    other = uids != reps
    return pd.DataFrame({"uid_a": reps[other], "uid_b": uids[other],
                         "distance": np.zeros(int(other.sum()), np.int32)})


def block_edges(codes: np.ndarray, start: int, rows: int, band: int, max_distance: int,
                reps: np.ndarray) -> pd.DataFrame:
    """Edges between distinct hashes `codes[start:start+rows]` and the later ones, within
    `max_distance`, that agree on no band lower than `band`."""
    part = codes[start:start + rows]
    xor = part[:, None] ^ codes[None, :]
    near = (np.bitwise_count(xor) <= max_distance) & (
        np.arange(len(codes))[None, :] > np.arange(start, start + len(part))[:, None])
    i, j = np.nonzero(near)
    diff = xor[i, j]
    lowest = np.ones(len(i), dtype=bool)
    for shift, width in band_masks(max_distance)[:band]:
        lowest &= ((diff >> np.uint64(shift)) & np.uint64((1 << width) - 1)) != 0
    a, b = reps[start + i[lowest]], reps[j[lowest]]
    return pd.DataFrame({"uid_a": np.where(a < b, a, b), "uid_b": np.where(a < b, b, a),
                         "distance": np.bitwise_count(diff[lowest]).astype(np.int32)})


@dataclass(frozen=True)
class Groups:
    """Removed uids and the uid each one's group keeps."""

    removed: list[str]
    kept: list[str]


def components(pairs: list[tuple[str, str]]) -> Groups:
    """Each connected component of the pair graph keeps its smallest uid (scipy, on the
    driver: the reference `images.components` is tested against; no stage calls it)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not pairs:
        return Groups([], [])
    uids = sorted({u for pair in pairs for u in pair})
    index = {u: i for i, u in enumerate(uids)}
    rows = np.array([index[a] for a, _ in pairs])
    cols = np.array([index[b] for _, b in pairs])
    graph = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(len(uids), len(uids)))
    _, labels = connected_components(graph, directed=False)
    smallest: dict[int, str] = {}
    for uid, label in zip(uids, labels, strict=True):  # uids are sorted: first is smallest
        smallest.setdefault(int(label), uid)
    removed = [u for u, lab in zip(uids, labels, strict=True) if smallest[int(lab)] != u]
    return Groups(removed, [smallest[int(labels[index[u]])] for u in removed])


def faiss_pairs(hashes: np.ndarray, max_distance: int) -> set[tuple[int, int]]:
    """All index pairs (i < j) within Hamming `max_distance`, by faiss' binary brute
    force (`hashes`: int64). The reference the tests and `benchmarks/images.py` check the
    banding join against; no stage calls it."""
    import faiss

    codes = hashes.astype(">i8").view(np.uint8).reshape(-1, 8)
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    lims, _, ids = index.range_search(codes, max_distance + 1)  # radius is exclusive
    pairs = set()
    for i in range(len(hashes)):
        for j in ids[lims[i]:lims[i + 1]]:
            if i < j:
                pairs.add((i, int(j)))
    return pairs


DUPLICATES_FILE = "duplicates.parquet"


def duplicate_rows(samples: DataFrame, max_distance: int, block: int,
                   stats: StageStats) -> DataFrame:
    """The rows of ``duplicates.parquet``, computed by the executors and persisted: each
    removed uid, the uid its group keeps (the component's smallest, `components`), their
    pHash distance and whether the bytes were identical. The largest group's size goes
    into the stats (transitive chains can group images that are not near each other)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    exact = exact_groups(samples).select(F.col("kept_uid").alias("u"), F.col("uid").alias("v"))
    near, big = near_pairs(samples, max_distance, block)
    edges = exact.unionByName(near.select(F.col("uid_a").alias("u"), F.col("uid_b").alias("v")))
    stats.extra["big_buckets"] = big.count()  # verified in several blocks, none skipped
    groups, rounds = spark_components(edges)
    info = samples.select("uid", "sha256", "phash")
    kept = info.select(F.col("uid").alias("kept_uid"), F.col("sha256").alias("kept_sha256"),
                       F.col("phash").alias("kept_phash"))
    rows = groups.join(info, "uid").join(kept, "kept_uid").select(
        "uid", "kept_uid",
        F.bit_count(F.col("phash").bitwiseXOR(F.col("kept_phash"))).cast("int")
        .alias("distance"),
        F.when(F.col("sha256") == F.col("kept_sha256"), "exact").otherwise("near")
        .alias("kind")).persist(StorageLevel.MEMORY_AND_DISK)
    largest = rows.groupBy("kept_uid").count().agg(F.max("count")).first()[0]
    stats.extra.update(largest_duplicate_group=largest + 1 if largest else 0,
                       component_rounds=rounds)
    return rows


def write_duplicates(directory: Path, rows: DataFrame, stats: StageStats) -> None:
    """``duplicates.parquet`` (a dataset in uid order, written by the executors) and its
    drops (``exact_duplicate``, ``near_duplicate``)."""
    rows.orderBy("uid").write.parquet(str(directory / DUPLICATES_FILE))
    counts = {r["kind"]: r["count"] for r in rows.groupBy("kind").count().collect()}
    for kind in ("exact", "near"):
        stats.drop(f"{kind}_duplicate", counts.get(kind, 0))
