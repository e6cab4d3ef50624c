"""Popular Wikipedia titles from hourly pageview dumps (Spark SQL, no Python UDF).

Hourly files (``pageviews-YYYYMMDD-HH0000.gz``) hold lines
``domain_code page_title count_views total_response_size``, e.g.
``en Albert_Einstein 812 0``. Following MetaCLIP: keep desktop English rows (domain code
exactly ``en``; ``en.m`` is mobile), drop titles containing ":" (other namespaces), count
only rows with at least `min_hourly` views, sum per title over all files and keep titles
with at least `min_views`. Titles are percent-decoded and "_" becomes a space.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession


def classify_lines(spark: SparkSession, paths: list[str], min_hourly: int) -> DataFrame:
    """One row per input line: ``title``, ``views`` and ``reason`` (null = kept)."""
    from pyspark.sql import functions as F

    parts = F.split(F.col("value"), " ")
    df = spark.read.text(paths).select(
        F.get(parts, 0).alias("project"),  # get(): null past the end, short lines are data
        F.get(parts, 1).alias("raw_title"),
        F.get(parts, 2).alias("raw_views"),
        F.size(parts).alias("fields"),
    )
    # url_decode reads "+" as a space (form encoding); titles such as "C++" must keep it.
    df = df.withColumn("_esc", F.replace("raw_title", F.lit("+"), F.lit("%2B")))
    df = df.withColumn("title", F.replace(
        F.coalesce(F.expr("try_url_decode(_esc)"), F.col("raw_title")), F.lit("_"), F.lit(" ")))
    views = F.col("raw_views").try_cast("long")
    reason = (
        F.when((F.col("fields") < 3) | views.isNull() | (F.length("raw_title") == 0),
               "pageview_malformed_line")
        .when(F.col("project") != "en", "pageview_not_desktop_en")
        .when(F.col("title").contains(":"), "pageview_title_has_colon")
        .when(views < min_hourly, "pageview_below_hourly_floor")
    )
    return df.select("title", views.alias("views"), reason.alias("reason"))


def popular_titles(
    spark: SparkSession, paths: list[str], min_hourly: int, min_views: int
) -> tuple[DataFrame, Counter[str]]:
    """Titles with summed views ≥ `min_views` (DataFrame ``title, views``) and line drops.

    The returned counter holds ``pageview_lines`` (all lines) and one entry per drop
    reason; the title DataFrame is cached, as the caller both counts and collects it.
    """
    from pyspark.sql import functions as F

    lines = classify_lines(spark, paths, min_hourly).cache()
    reasons = Counter({r["reason"] or "pageview_rows_kept": r["count"]
                       for r in lines.groupBy("reason").count().collect()})
    reasons["pageview_lines"] = sum(reasons.values())
    titles = (lines.filter(F.col("reason").isNull())
              .groupBy("title").agg(F.sum("views").alias("views"))
              .filter(F.col("views") >= min_views))
    return titles, reasons
