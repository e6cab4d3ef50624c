"""Counting the dump in Spark and selecting entries from the counts.

Each dump file is cut into byte ranges, one Spark task each, which decompress their own
range in Python (`splits`: a multistream dump is split at its bzip2 stream starts, so one
large dump is processed by many executors) and split it into records on ``</page>``. Each
task's records are scanned by `scan`; counts are summed by Spark, filtered (unigram
count, bigram count and PMI) and joined; only the selected entries reach the driver.

PMI of a bigram (w1, w2) is ``log2(n12 * N / (n1 * n2))``, with N the number of tokens in
the counted articles. Raw PMI favours rare pairs (two words seen once, together, score
log2 N), so a bigram must also occur `min_bigram_count` times.

The selection thresholds come from the stage config (`cfg`: a `QueryListConfig`).
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import TYPE_CHECKING
from urllib.parse import unquote

from wit_builder.errors import InputError
from wit_builder.inputs import is_uri, openable_files
from wit_builder.querylist import pageviews, scan, splits
from wit_builder.querylist.entries import Entry
from wit_builder.spark import run_spark_action, spark_schema
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from wit_builder.querylist.configs import QueryListConfig


def read_records(spark: SparkSession, paths: list[str], split_mb: int) -> DataFrame:
    """Dump records (text up to each ``</page>``) with their source file, read by Spark:
    for URIs only the cluster's Hadoop filesystems can open."""
    from pyspark.sql import functions as F

    spark.conf.set("spark.sql.files.maxPartitionBytes", str(split_mb * 1024 * 1024))
    df = spark.read.option("lineSep", "</page>").text(paths)
    return df.select("value", F.col("_metadata.file_path").alias("file"))


def split_frame(spark: SparkSession, files: list[tuple[str, int]], step: int) -> DataFrame:
    """One row (path, start, end) per `step`-byte split, one split per Spark task."""
    planned = splits.plan_splits(files, step)
    rows = [(s.path, s.start, s.end) for s in planned]
    rdd = spark.sparkContext.parallelize(rows, max(1, len(rows)))
    return spark.createDataFrame(rdd, spark_schema(scan.SPLITS_SCHEMA))


def count_dump(spark: SparkSession, paths: list[str], cfg: QueryListConfig) -> DataFrame:
    """Summed ``(kind, a, b, n)`` counts over the dump (see `scan`), persisted.

    Files Python can open are split and decompressed in the workers (`splits`); URIs only
    Spark's Hadoop filesystems know, and local single-stream bzip2 files longer than one
    split (one Python task would read them alone), go through Spark's text reader.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    max_keys = cfg.flush_keys
    files, spark_only = openable_files(paths)
    step = cfg.split_mb * 1024 * 1024
    whole = [f for f in files if not is_uri(f[0]) and splits.single_stream(*f, step)]
    files = [f for f in files if f not in whole]
    spark_only += [path for path, _ in whole]
    schema = spark_schema(scan.SCHEMA)
    parts = []
    if files:
        parts.append(split_frame(spark, files, step).mapInArrow(
            lambda batches: scan.scan_splits(batches, max_keys), schema))
    if spark_only:
        parts.append(read_records(spark, spark_only, cfg.split_mb).mapInArrow(
            lambda batches: scan.scan_batches(batches, max_keys), schema))
    if not parts:
        raise InputError(f"wiki dump: no file to read in {', '.join(paths)}")
    partial = functools.reduce(lambda a, b: a.unionByName(b), parts)
    summed = partial.groupBy("kind", "a", "b").agg(F.sum("n").alias("n"))
    return summed.persist(StorageLevel.MEMORY_AND_DISK)


def check_dump_files(counts: DataFrame, paths: list[str], stats: StageStats) -> None:
    """Every file must end with ``</mediawiki>``: anything else is a truncated dump.

    A local input that yields no record at all (an empty file) is reported the same way.
    """
    from pyspark.sql import functions as F

    rows = counts.filter(F.col("kind") == "f").collect()
    per_file: dict[str, Counter[str]] = {}
    for r in rows:
        per_file.setdefault(r["a"], Counter())[r["b"]] += r["n"]
    stats.extra["files"] = {f: dict(c) for f, c in sorted(per_file.items())}
    corrupt = [f for f, c in sorted(per_file.items()) if c["corrupt"]]
    if corrupt:
        raise InputError(f"wiki dump corrupt (unreadable compressed data): "
                         f"{', '.join(corrupt)}: download it again")
    bad = [f for f, c in sorted(per_file.items()) if c["end_tags"] == 0]
    seen = [unquote(f) for f in per_file]  # Spark reports URIs, percent-encoded
    bad += [p for p in paths if not is_uri(p) and not any(f.endswith(p) for f in seen)]
    if bad:
        raise InputError(f"wiki dump truncated (no closing </mediawiki>): {', '.join(bad)}")


def page_stats(counts: DataFrame, stats: StageStats) -> int:
    """Copy page/skip counters into `stats`; return the token total N."""
    from pyspark.sql import functions as F

    values = {r["a"]: r["n"] for r in counts.filter(F.col("kind") == "s").collect()}
    stats.rows_in = values.get("pages", 0) + values.get("skip_malformed_xml", 0)
    for key, n in values.items():
        if key.startswith("skip_"):
            stats.drop(f"page_{key[5:]}", n)
    stats.extra["articles"] = values.get("articles", 0)
    stats.extra["tokens"] = values.get("tokens", 0)
    return values.get("tokens", 0)


def select_unigrams(counts: DataFrame, cfg: QueryListConfig) -> list[Entry]:
    """Tokens with count ≥ min_count, most frequent first."""
    from pyspark.sql import functions as F

    rows = (counts.filter((F.col("kind") == "u") & (F.col("n") >= cfg.min_count))
            .orderBy(F.desc("n"), "a").collect())
    return [Entry(r["a"], "unigram", count=r["n"]) for r in rows]


def select_bigrams(counts: DataFrame, cfg: QueryListConfig, total: int) -> list[Entry]:
    """Pairs with count ≥ min_bigram_count and PMI ≥ min_pmi, highest PMI first."""
    from pyspark.sql import functions as F

    uni = counts.filter(F.col("kind") == "u")
    u1 = uni.select(F.col("a").alias("w1"), F.col("n").alias("n1"))
    u2 = uni.select(F.col("a").alias("w2"), F.col("n").alias("n2"))
    pairs = counts.filter((F.col("kind") == "b") & (F.col("n") >= cfg.min_bigram_count))
    pmi = F.log2(F.col("n").cast("double") * F.lit(float(total))
                 / (F.col("n1").cast("double") * F.col("n2").cast("double")))
    rows = (pairs.join(u1, pairs.a == u1.w1).join(u2, pairs.b == u2.w2)
            .select("a", "b", "n", pmi.alias("pmi"))
            .filter(F.col("pmi") >= cfg.min_pmi)
            .orderBy(F.desc("pmi"), F.desc("n"), "a", "b").collect())
    return [Entry(f"{r['a']} {r['b']}", "bigram", count=r["n"], score=r["pmi"]) for r in rows]


def select_titles(spark: SparkSession, counts: DataFrame, cfg: QueryListConfig,
                  paths: list[str], stats: StageStats) -> list[Entry]:
    """Titles with enough pageviews, most viewed first (empty without pageview files)."""
    from pyspark.sql import functions as F

    if not paths:
        return []
    titles, reasons = pageviews.popular_titles(spark, paths, cfg.min_hourly_views,
                                               cfg.min_views)
    stats.extra["pageviews"] = dict(sorted(reasons.items()))
    if cfg.require_title_in_dump:
        in_dump = counts.filter(F.col("kind") == "t").select(F.col("a").alias("title"))
        titles = titles.join(in_dump, "title", "left_semi")
    rows = run_spark_action(lambda: titles.orderBy(F.desc("views"), "title").collect(),
                            "pageviews")
    return [Entry(r["title"], "title", count=r["views"]) for r in rows]
