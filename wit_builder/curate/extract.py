"""Per-file extraction: WARC/WAT file → (image URL, alt-text) pairs, with every drop counted.

For each page (`records.iter_pages`) every image yields one candidate per configured
attribute that is present (``alt``, ``title``). A candidate becomes a pair when its URL
resolves to an absolute http(s) URL, its whitespace-normalized text passes the length
limits, and the language-ID model says it is in `lang` with probability ≥
`min_lang_score`. Otherwise it is counted under a drop reason (`hygiene`, ``lang_*``).

`file_batches` is what a task runs on one file: its pairs in Arrow batches, its counters
(see `counter_kind`) in a Counter. `extracted_pairs` is the Spark side: every file staged
once (`staging`: retried, resumable, written by the executors), the counters summed with
a ``groupBy``, then pairs deduplicated on ``uid``; of duplicates, the one with the
smallest (source_file, page_url, attr) is kept, so the output does not depend on task
scheduling.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from wit_builder.curate import lid as lid_models
from wit_builder.curate import records, staging
from wit_builder.curate.hygiene import Drop, clean_text, page_base, pair_uid, resolve_url
from wit_builder.curate.lid import LanguageId
from wit_builder.curate.pairs import PAIR_COLUMNS, PAIR_SCHEMA
from wit_builder.errors import InputError
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# Counter names that are totals rather than drops.
TOTALS = ("records", "records_truncated", "html_pages", "wat_pages", "candidates", "pairs")
# Counters about a whole input file.
FILE_COUNTERS = ("not_a_warc", "file_unreadable")
BATCH_ROWS = 8192
# Which duplicate of a uid survives: the smallest of these (then the remaining columns).
DEDUP_ORDER = ("source_file", "page_url", "attr", "url", "text", "lang", "lang_score")


@dataclass(frozen=True)
class ExtractParams:
    """What makes a candidate a pair (mirrors the `wit extract` config)."""

    lid_model: str | None = None  # None: lid.176.ftz (see `lid.resolve_model_path`)
    lang: str | None = "en"
    min_lang_score: float = 0.5
    lid: bool = True  # False: lang and lang_score stay null (only when nothing is filtered)
    attrs: tuple[str, ...] = ("alt", "title")
    min_text_chars: int = 3
    max_text_chars: int = 1000
    max_url_chars: int = 2048


def counter_kind(name: str) -> str:
    """"total", "file" (an unusable input file), "record" (a dropped WARC record) or
    "pair" (a dropped candidate pair)."""
    if name in TOTALS:
        return "total"
    if name in FILE_COUNTERS:
        return "file"
    return "record" if name.startswith("record_") else "pair"


def page_candidates(page: records.Page, attrs: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """(src, raw text, attribute) for each image attribute present on the page."""
    for image in page.images:
        for attr in attrs:
            text = getattr(image, attr)
            if text is not None:
                yield image.src, text, attr


def check_pair(src: str, text: str, base: str | None, params: ExtractParams,
               lid: LanguageId | None) -> tuple[str, str, str | None, float | None] | Drop:
    """(url, text, lang, lang_score) of a candidate, or the reason it is dropped.

    Without a `lid` (``params.lid`` false) lang and lang_score are None.
    """
    url = resolve_url(src, base, params.max_url_chars)
    if isinstance(url, Drop):
        return url
    clean = clean_text(text, params.min_text_chars, params.max_text_chars)
    if isinstance(clean, Drop):
        return clean
    if lid is None:
        return url, clean, None, None
    lang, score = lid(clean)
    if params.lang and lang != params.lang:
        return Drop(f"lang_not_{params.lang}")
    if score < params.min_lang_score:
        return Drop("lang_low_score")
    return url, clean, lang, score


def file_pairs(path: str, params: ExtractParams, lid: LanguageId | None,
               counts: Counter[str]) -> Iterator[tuple]:
    """Pair rows (in `PAIR_COLUMNS` order) of one file; `counts` gets every counter."""
    for page in records.iter_pages(path, counts):
        base = page_base(page.url, page.base)
        for src, text, attr in page_candidates(page, params.attrs):
            counts["candidates"] += 1
            checked = check_pair(src, text, base, params, lid)
            if isinstance(checked, Drop):
                counts[checked.reason] += 1
                continue
            url, clean, lang, score = checked
            counts["pairs"] += 1
            yield pair_uid(url, clean), url, clean, attr, page.url, lang, score, path


def _batch(rows: list[tuple]) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in PAIR_COLUMNS]
    data = {name: list(col) for name, col in zip(PAIR_COLUMNS, columns, strict=True)}
    return pa.RecordBatch.from_pydict(data, schema=PAIR_SCHEMA)


def new_counts() -> Counter[str]:
    """A file's counters before it is read (the totals every file reports, even 0)."""
    return Counter({"records": 0, "candidates": 0, "pairs": 0})


def file_batches(path: str, params: ExtractParams, counts: Counter[str]
                 ) -> Iterator[pa.RecordBatch]:
    """The pairs of one file in batches of `BATCH_ROWS` (`PAIR_SCHEMA`): what a task
    runs on one file (`staging`); `counts` (from `new_counts`) gets every counter,
    complete once the iterator is exhausted."""
    lid = LanguageId(params.lid_model) if params.lid else None
    rows: list[tuple] = []
    for row in file_pairs(path, params, lid, counts):
        rows.append(row)
        if len(rows) == BATCH_ROWS:
            yield _batch(rows)
            rows = []
    if rows:
        yield _batch(rows)


@dataclass
class ExtractCounts:
    """The per-file counters of an extraction, summed (see `counter_kind`).

    `candidates` is the stage's rows_in; `pairs` the pairs before deduplication.
    """

    files: int = 0
    totals: Counter[str] = field(default_factory=Counter)
    pair_drops: Counter[str] = field(default_factory=Counter)
    record_drops: Counter[str] = field(default_factory=Counter)
    bad_files: dict[str, tuple[int, list[str]]] = field(default_factory=dict)  # files, some
    resumed: int = 0  # files staged by an earlier (killed) run, not read again

    @classmethod
    def from_staged(cls, counters: DataFrame) -> ExtractCounts:
        """Sum the staged per-file counters in Spark: one row per counter name and, for
        the file counters, how many files and the first few (never a row per file)."""
        from pyspark.sql import functions as F

        sums = counters.groupBy("counter").agg(
            F.sum("n").alias("n"), F.count("*").alias("files"),
            F.slice(F.sort_array(F.collect_list("source_file")), 1, 3).alias("some"))
        counts = cls(files=counters.select("source_file").distinct().count())
        kinds = {"total": counts.totals, "pair": counts.pair_drops,
                 "record": counts.record_drops}
        for row in sums.collect():
            if counter_kind(row["counter"]) == "file":
                counts.bad_files[row["counter"]] = (row["files"], row["some"])
            else:
                kinds[counter_kind(row["counter"])][row["counter"]] += row["n"]
        return counts

    @property
    def candidates(self) -> int:
        return self.totals["candidates"]

    @property
    def pairs(self) -> int:
        return self.totals["pairs"]

    def add_to(self, stats: StageStats) -> None:
        """Candidates as rows_in, pair drops as drops, the rest as extra and notices."""
        stats.rows_in += self.candidates
        for name, n in self.pair_drops.items():
            stats.drop(name, n)
        stats.extra["files"] = self.files
        stats.extra["files_resumed"] = self.resumed
        stats.extra["records"] = dict(sorted(self.totals.items()))
        stats.extra["record_drops"] = dict(sorted(self.record_drops.items()))
        stats.extra["bad_files"] = {name: n for name, (n, _) in self.bad_files.items()}
        for name, (n, some) in sorted(self.bad_files.items()):
            stats.notice(f"{n} input file(s) skipped as {name}: " + ", ".join(some)
                         + (" …" if n > len(some) else "") + f" (see {FILE_COUNTS_FILE})")
        if self.totals["records_truncated"]:
            stats.notice(f"{self.totals['records_truncated']} record(s) truncated "
                         "(kept what was readable; see file_counts.parquet)")

    def check_readable(self) -> None:
        """`InputError` naming the files when no input file held a single record."""
        if self.totals["records"] == 0:
            bad = [p for _, some in self.bad_files.values() for p in some]
            named = f": {', '.join(bad[:5])}" if bad else ""
            raise InputError(f"no WARC/WAT record in any of the {self.files} input file(s)"
                             f"{named}")


def ship_model(spark: SparkSession, path: str | None) -> str | None:
    """Send a user LID model to the workers; None keeps the bundled default."""
    if path is None:
        return None
    resolved = lid_models.resolve_model_path(path)
    spark.sparkContext.addFile(resolved)
    return lid_models.SPARK_FILE_PREFIX + Path(resolved).name


def dedup_pairs(pairs: DataFrame) -> DataFrame:
    """One row per uid, chosen by `DEDUP_ORDER` (deterministic)."""
    from pyspark.sql import functions as F

    best = F.min(F.struct(*DEDUP_ORDER)).alias("best")
    grouped = pairs.groupBy("uid").agg(best)
    return grouped.select("uid", *(F.col(f"best.{c}").alias(c) for c in DEDUP_ORDER)) \
        .select(*PAIR_COLUMNS)


FILE_COUNTS_FILE = "file_counts.parquet"


def extracted_pairs(spark: SparkSession, paths: list[str], params: ExtractParams,
                    files_per_task: int, work: Path, retries: staging.Retries
                    ) -> tuple[DataFrame, ExtractCounts]:
    """Extract `paths` into the staging pieces of the work dir `work` (files staged by an
    earlier run are kept, `staging`), write ``file_counts.parquet`` there (a dataset, by
    the executors); (the deduplicated pairs, lazy; the summed counters).

    Raises `InputError` when no file held a record (nothing there is a WARC).
    """
    staged = staging.stage_files(spark, paths, params, work, files_per_task, retries)
    counters = staging.staged_counts(spark, work)
    counts = ExtractCounts.from_staged(counters)
    counts.resumed = staged["skipped"]
    counts.check_readable()
    target = work / FILE_COUNTS_FILE
    counters.orderBy("source_file", "counter").write.mode("overwrite").parquet(str(target))
    return dedup_pairs(staging.staged_pairs(spark, work)), counts
