"""The query-list job: Wikipedia dump (+ pageviews, WordNet) → `entries.parquet`.

The dump is counted by Spark and each source's entries selected from the counts
(`counts`); WordNet names (`wordnet`) and the combination of the sources (`combine`) run
on the driver. The output is written by `entries`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wit_builder.inputs import expand_inputs, fingerprint
from wit_builder.outputs import StageResult
from wit_builder.querylist import combine, counts, dumps, wordnet
from wit_builder.querylist.configs import QueryListConfig
from wit_builder.querylist.entries import Entry, write_entries
from wit_builder.spark import run_spark_action, run_spark_stage
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGE = "querylist"
# Bump when a code change alters what this stage writes for the same inputs and config.
OUTPUT_VERSION = 1
CONFIG = QueryListConfig
log = logging.getLogger(__name__)


def write_outputs(tmp: Path, entries: list[Entry], stats: StageStats) -> None:
    """The entry list files (`entries`); stats and marker are written by `run_stage`."""
    write_entries(tmp, entries)
    stats.rows_out = len(entries)
    stats.extra["entries_by_source"] = combine.source_sizes(entries)
    log.info("query list: %s entries %s", len(entries),
             json.dumps(stats.extra["entries_by_source"]))


def build(tmp: Path, cfg: QueryListConfig, dump_paths: list[str], pageview_paths: list[str],
          spark: SparkSession) -> StageStats:
    """Compute every source and write the list into `tmp`."""
    stats = StageStats(STAGE)
    names = wordnet.synset_names(cfg.wordnet, stats, cfg.wordnet_names) if cfg.wordnet else []
    counted = counts.count_dump(spark, dump_paths, cfg)
    run_spark_action(lambda: counts.check_dump_files(counted, dump_paths, stats), "wiki dump")
    total = counts.page_stats(counted, stats)
    sources = [
        [Entry(n, "wordnet") for n in names],
        counts.select_unigrams(counted, cfg),
        counts.select_bigrams(counted, cfg, total),
        counts.select_titles(spark, counted, cfg, pageview_paths, stats),
    ]
    stats.extra["candidates_by_source"] = {
        s: len(c) for s, c in zip(combine.SOURCES, sources, strict=False)}
    write_outputs(tmp, combine.combine(sources, cfg.max_entries, stats), stats)
    counted.unpersist()
    return stats


def run(cfg: QueryListConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    dump_paths = expand_inputs(cfg.wiki_dump, "wiki dump")
    for path in dump_paths:
        dumps.check_bz2(path)
    pageview_paths = expand_inputs(cfg.pageviews, "pageviews") if cfg.pageviews else []
    inputs: list[Any] = [fingerprint(dump_paths), fingerprint(pageview_paths)]
    if cfg.wordnet:
        data_dir = wordnet.find_data_dir(cfg.wordnet)
        inputs.append(fingerprint([str(data_dir / n) for n in wordnet.POS_FILES]))
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs, lambda tmp, session: build(
        tmp, cfg, dump_paths, pageview_paths, session), spark)
