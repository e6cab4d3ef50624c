"""Connected components of a graph held as a Spark DataFrame of edges, in Spark.

The large-star / small-star algorithm (Kiveris et al., "Connected Components in
MapReduce and Beyond", 2014): each round, every node links its larger neighbours to the
smallest node of its neighbourhood (large-star), then its smaller neighbours to the
smallest of those (small-star). The edge set shrinks to one star per component, centred
on the component's smallest node, in O(log² n) rounds whatever the component's diameter
(a chain of a million images needs no million rounds). Nothing is collected to the
driver but counts; the lineage is cut every `CHECKPOINT_EVERY` rounds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

CHECKPOINT_EVERY = 2  # rounds between lineage cuts (each round is a few joins deep)
MAX_ROUNDS = 200  # far beyond log² of any real graph: reaching it is a bug, not data


def undirected(edges: DataFrame) -> DataFrame:
    """(u, v) both ways, without self-loops or repeats."""
    from pyspark.sql import functions as F

    # both directions from one row (explode), not a union of two projections: Spark 4.x's
    # constraint propagation fails on such a union ("key not found") for some inputs
    both = edges.select(F.explode(F.array(
        F.struct(F.col("u").alias("a"), F.col("v").alias("b")),
        F.struct(F.col("v").alias("a"), F.col("u").alias("b")))).alias("e"))
    return both.select(F.col("e.a").alias("u"), F.col("e.b").alias("v")).filter(
        F.col("u") != F.col("v")).distinct()


def large_star(edges: DataFrame) -> DataFrame:
    """Each node's larger neighbours linked to the smallest node of its neighbourhood
    (itself included)."""
    from pyspark.sql import functions as F

    both = undirected(edges)
    smallest = both.groupBy("u").agg(F.least(F.min("v"), F.col("u")).alias("m"))
    larger = both.filter(F.col("v") > F.col("u")).join(smallest, "u")
    return larger.select(F.col("v").alias("u"), F.col("m").alias("v")).distinct()


def small_star(edges: DataFrame) -> DataFrame:
    """Each node and its smaller neighbours linked to the smallest of them."""
    from pyspark.sql import functions as F

    down = undirected(edges).filter(F.col("v") < F.col("u"))  # u's smaller neighbours
    smallest = down.groupBy("u").agg(F.min("v").alias("m"))
    # each row links the neighbour and u itself to m (one explode: no union, see above)
    linked = down.join(smallest, "u").select(F.explode(F.array(
        F.struct(F.col("v").alias("a"), F.col("m").alias("b")),
        F.struct(F.col("u").alias("a"), F.col("m").alias("b")))).alias("e"))
    out = linked.select(F.col("e.a").alias("u"), F.col("e.b").alias("v"))
    return out.filter(F.col("u") != F.col("v")).distinct()


def components(edges: DataFrame) -> tuple[DataFrame, int]:
    """(node ``uid``, its component's smallest node ``kept_uid``) for every node of
    `edges` (columns ``u``, ``v``) that is not the smallest of its component, and the
    rounds it took."""
    from pyspark.sql import functions as F

    current = undirected(edges).filter(F.col("u") > F.col("v")).localCheckpoint()
    for rounds in range(1, MAX_ROUNDS + 1):
        following = small_star(large_star(current))
        if rounds % CHECKPOINT_EVERY == 0:
            following = following.localCheckpoint()
        if same_edges(current, following):
            return stars(following), rounds
        current = following
    raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")


def same_edges(a: DataFrame, b: DataFrame) -> bool:
    """True if the two edge sets are equal (counts only reach the driver)."""
    return a.count() == b.count() and a.exceptAll(b).isEmpty()


def stars(edges: DataFrame) -> DataFrame:
    """(uid, kept_uid) of converged star edges: every edge joins a node to its centre."""
    from pyspark.sql import functions as F

    return edges.select(F.col("u").alias("uid"), F.col("v").alias("kept_uid"))
