"""The extraction job: WARC/WAT files → deduplicated English `pairs.parquet`.

Spark runs one task per input file (`extract.extract_partition` in ``mapInArrow``), so a
Common Crawl segment of ~80k WARC files spreads over any cluster, and a damaged file costs
only its own damaged records. Pairs are then deduplicated on ``uid`` (sha224 of URL and
text); of duplicates, the one from the smallest (source_file, page_url, attr) is kept, so
the output does not depend on task scheduling.

Outputs: ``pairs.parquet`` (DESIGN.md schema), ``file_counts.parquet`` (source_file,
counter, n: every per-file counter, see `extract.counter_kind`), `stats.json`.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, field_validator, model_validator

from wit_builder.config import StageConfig
from wit_builder.curate import extract, lid
from wit_builder.curate.datasets import write_pairs
from wit_builder.errors import InputError
from wit_builder.inputs import expand_inputs, fingerprint, is_uri
from wit_builder.outputs import StageResult
from wit_builder.spark import run_spark_stage
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

STAGE = "extract"
OUTPUT_VERSION = 1
SPARK_SCHEMA = ("uid string, url string, text string, attr string, page_url string, "
                "lang string, lang_score float, source_file string, reason string, n bigint")
# Which duplicate of a uid survives: the smallest of these (then the remaining columns).
DEDUP_ORDER = ("source_file", "page_url", "attr", "url", "text", "lang", "lang_score")
log = logging.getLogger(__name__)


class ExtractConfig(StageConfig):
    """Parameters of `wit extract`."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = StageConfig.RUNTIME_FIELDS | {"files_per_task"}

    warc: list[str] | None = Field(None, description="WARC/WAT files: paths, globs or URIs")
    manifest: str | None = Field(None, description="file listing one WARC/WAT path a line")
    manifest_prefix: str = Field("", description="prepended to each manifest line")
    lid_model: str | None = Field(None, description="fastText LID model (default lid.176.ftz)")
    lang: str | None = Field("en", description="language to keep; None keeps all")
    min_lang_score: float = Field(0.5, ge=0.0, le=1.0, description="min LID probability")
    attrs: list[Literal["alt", "title"]] = Field(["alt", "title"], min_length=1,
                                                 description="img attributes used as text")
    min_text_chars: int = Field(3, ge=1, description="shortest text kept")
    max_text_chars: int = Field(1000, ge=1, description="longest text kept")
    max_url_chars: int = Field(2048, ge=16, description="longest URL kept")
    files_per_task: int = Field(1, ge=1, description="input files per Spark task")

    @field_validator("warc", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("lang", "lid_model", mode="before")
    @classmethod
    def _none_word(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.lower() in ("", "none") else value

    @model_validator(mode="after")
    def _one_input(self) -> ExtractConfig:
        if (self.warc is None) == (self.manifest is None):
            raise ValueError("give exactly one of warc (paths/globs) or manifest")
        return self

    def params(self, lid_model: str | None) -> extract.ExtractParams:
        """The per-file parameters, with the model as the workers will find it."""
        return extract.ExtractParams(
            lid_model=lid_model, lang=self.lang, min_lang_score=self.min_lang_score,
            attrs=tuple(self.attrs), min_text_chars=self.min_text_chars,
            max_text_chars=self.max_text_chars, max_url_chars=self.max_url_chars)


def read_manifest(manifest: str, prefix: str) -> list[str]:
    """Paths listed in `manifest` (local or URI, ``.gz`` ok); blank and ``#`` lines skipped.

    Relative local entries without a prefix are taken relative to the manifest's folder.
    """
    import fsspec

    try:
        with fsspec.open(manifest, "rt", compression="infer") as fh:
            lines = [line.strip() for line in fh]
    except FileNotFoundError:
        raise InputError(f"manifest not found: {manifest}") from None
    entries = [prefix + line for line in lines if line and not line.startswith("#")]
    if not entries:
        raise InputError(f"manifest {manifest} lists no file")
    here = Path(manifest).parent if not is_uri(manifest) else None
    return [e if is_uri(e) or Path(e).is_absolute() or here is None else str(here / e)
            for e in entries]


def resolve_inputs(cfg: ExtractConfig) -> tuple[list[str], list[Any]]:
    """(input files, their fingerprints); `InputError` for missing local files."""
    if cfg.warc is not None:
        paths = expand_inputs(cfg.warc, "warc")
        return paths, fingerprint(paths)
    paths = read_manifest(cfg.manifest or "", cfg.manifest_prefix)
    local = [p for p in paths if not is_uri(p)]
    missing = [p for p in local if not Path(p).is_file()]
    if missing:
        raise InputError(f"manifest lists {len(missing)} missing file(s), e.g. {missing[0]}")
    # Remote entries (Common Crawl: immutable, and too many to stat) count by name only.
    return paths, [*fingerprint(local), *sorted(p for p in paths if is_uri(p))]


def ship_model(spark: SparkSession, path: str | None) -> str | None:
    """Send a user LID model to the workers; None keeps the bundled default."""
    if path is None:
        return None
    resolved = lid.resolve_model_path(path)
    spark.sparkContext.addFile(resolved)
    return lid.SPARK_FILE_PREFIX + Path(resolved).name


def extract_raw(spark: SparkSession, paths: list[str], params: extract.ExtractParams,
                files_per_task: int = 1) -> DataFrame:
    """Pair rows and per-file counter rows (`extract.SCHEMA`), one task per file group."""
    slices = max(1, -(-len(paths) // files_per_task))
    rdd = spark.sparkContext.parallelize(paths, slices).map(lambda p: (p,))
    files = spark.createDataFrame(rdd, "path string")
    body = functools.partial(extract.extract_partition, params=params)
    return files.mapInArrow(body, SPARK_SCHEMA)


def dedup_pairs(pairs: DataFrame) -> DataFrame:
    """One row per uid, chosen by `DEDUP_ORDER` (deterministic)."""
    from pyspark.sql import functions as F

    best = F.min(F.struct(*DEDUP_ORDER)).alias("best")
    grouped = pairs.groupBy("uid").agg(best)
    return grouped.select("uid", *(F.col(f"best.{c}").alias(c) for c in DEDUP_ORDER)) \
        .select(*extract.PAIR_COLUMNS)


def split_raw(raw: DataFrame) -> tuple[DataFrame, list[tuple[str, str, int]]]:
    """(pair rows, per-file counters as (source_file, counter, n)); runs one action."""
    from pyspark.sql import functions as F

    counters = raw.filter(F.col("reason").isNotNull()).select("source_file", "reason", "n")
    rows = sorted((r[0], r[1], r[2]) for r in counters.collect())
    pairs = raw.filter(F.col("reason").isNull()).select(*extract.PAIR_COLUMNS)
    return pairs, rows


def add_counters(stats: StageStats, counters: list[tuple[str, str, int]]) -> None:
    """Fill `stats` from per-file counters: pairs drops + record/page totals in extra."""
    totals: Counter[str] = Counter()
    record_drops: Counter[str] = Counter()
    for _, name, n in counters:
        kind = extract.counter_kind(name)
        if kind == "pair":
            stats.drop(name, n)
        else:
            (totals if kind == "total" else record_drops)[name] += n
    stats.rows_in += totals["candidates"]
    stats.extra["files"] = len({f for f, _, _ in counters})
    stats.extra["records"] = dict(sorted(totals.items()))
    stats.extra["record_drops"] = dict(sorted(record_drops.items()))


def write_file_counts(path: Path, counters: list[tuple[str, str, int]]) -> None:
    """``file_counts.parquet``: one row per (file, counter)."""
    files, names, ns = zip(*counters, strict=True) if counters else ((), (), ())
    table = pa.table({"source_file": pa.array(files, pa.string()),
                      "counter": pa.array(names, pa.string()), "n": pa.array(ns, pa.int64())})
    pq.write_table(table, path)


def extracted_pairs(spark: SparkSession, cfg: ExtractConfig, paths: list[str],
                    tmp: Path, stats: StageStats) -> tuple[DataFrame, DataFrame]:
    """(deduplicated pairs (lazy), the persisted raw rows to unpersist when done).

    Counts every file's counters into `stats` and writes ``file_counts.parquet`` to `tmp`.
    """
    from pyspark import StorageLevel

    params = cfg.params(ship_model(spark, cfg.lid_model))
    raw = extract_raw(spark, paths, params, cfg.files_per_task)
    raw = raw.persist(StorageLevel.MEMORY_AND_DISK)  # read each file only once
    pairs, counters = split_raw(raw)
    add_counters(stats, counters)
    write_file_counts(tmp / "file_counts.parquet", counters)
    stats.extra["pairs_before_dedup"] = stats.extra["records"].get("pairs", 0)
    return dedup_pairs(pairs), raw


def build(tmp: Path, cfg: ExtractConfig, paths: list[str], spark: SparkSession) -> StageStats:
    """Extract, count and deduplicate into `tmp`."""
    stats = StageStats(STAGE)
    pairs, raw = extracted_pairs(spark, cfg, paths, tmp, stats)
    stats.rows_out = write_pairs(pairs, tmp / "pairs.parquet")
    stats.drop("duplicate", stats.extra["pairs_before_dedup"] - stats.rows_out)
    raw.unpersist()
    return stats


def run(cfg: ExtractConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    paths, inputs = resolve_inputs(cfg)
    if cfg.lid_model:
        inputs.append(fingerprint([lid.resolve_model_path(cfg.lid_model)]))
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs,
                           lambda tmp, session: build(tmp, cfg, paths, session), spark)
