"""Exact and near-duplicate images: sha256 groups, and pHash pairs within Hamming ≤ d.

Near pairs are found exactly at any scale by banding: the 64 bits are cut into d+1
bands, and two hashes within distance d agree on at least one band (pigeonhole: d
differing bits touch at most d bands). So a join on (band, band value) finds every
candidate pair, and the true distance (``bit_count(a ^ b)``) keeps the real ones. A
bucket holding more than `bucket_cap` hashes (blank or near-blank images, whose band
values coincide by the thousand) is not expanded into pairs; its members are still
matched to identical hashes (distance 0), and the capped buckets are counted.

Groups are the connected components of the pair graph (scipy); each keeps its smallest
uid, so the choice does not depend on task order. `faiss_pairs` finds the same pairs by
brute force (faiss' binary flat index), as a cross-check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

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


def near_pairs(samples: DataFrame, max_distance: int, bucket_cap: int
               ) -> tuple[DataFrame, DataFrame]:
    """(pairs (uid_a < uid_b, distance ≤ d), capped buckets (band, value, size))."""
    from pyspark.sql import functions as F

    rows = band_rows(samples, max_distance)
    sizes = rows.groupBy("band", "value").count()
    capped = sizes.filter(F.col("count") > bucket_cap)
    usable = rows.join(capped.select("band", "value"), ["band", "value"], "left_anti")
    a, b = usable.alias("a"), usable.alias("b")
    distance = F.bit_count(F.col("a.phash").bitwiseXOR(F.col("b.phash")))
    joined = (a.join(b, (F.col("a.band") == F.col("b.band"))
                     & (F.col("a.value") == F.col("b.value"))
                     & (F.col("a.uid") < F.col("b.uid")))
              .select(F.col("a.uid").alias("uid_a"), F.col("b.uid").alias("uid_b"),
                      distance.alias("distance"))
              .filter(F.col("distance") <= max_distance))
    same = identical_pairs(samples)
    return joined.unionByName(same).distinct(), capped


def identical_pairs(samples: DataFrame) -> DataFrame:
    """Pairs with equal pHash (distance 0) next to the smallest uid of their hash: they
    are found even inside capped buckets."""
    from pyspark.sql import functions as F

    first = samples.groupBy("phash").agg(F.min("uid").alias("uid_a"))
    return (samples.join(first, "phash").filter(F.col("uid") != F.col("uid_a"))
            .select("uid_a", F.col("uid").alias("uid_b"), F.lit(0).alias("distance")))


@dataclass(frozen=True)
class Groups:
    """Removed uids and the uid each one's group keeps."""

    removed: list[str]
    kept: list[str]


def components(pairs: list[tuple[str, str]]) -> Groups:
    """Each connected component of the pair graph keeps its smallest uid."""
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
DUPLICATE_SCHEMA = pa.schema([("uid", pa.string()), ("kept_uid", pa.string()),
                              ("distance", pa.int32()), ("kind", pa.string())])


def duplicate_rows(samples: DataFrame, max_distance: int, bucket_cap: int,
                   stats: StageStats) -> DataFrame:
    """The rows of ``duplicates.parquet``, computed by the executors and persisted: each
    removed uid, the uid its group keeps (the component's smallest, `components`), their
    pHash distance and whether the bytes were identical. The largest group's size goes
    into the stats (transitive chains can group images that are not near each other)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    exact = exact_groups(samples).select(F.col("kept_uid").alias("u"), F.col("uid").alias("v"))
    near, capped = near_pairs(samples, max_distance, bucket_cap)
    edges = exact.unionByName(near.select(F.col("uid_a").alias("u"), F.col("uid_b").alias("v")))
    stats.extra["capped_buckets"] = capped.count()
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
