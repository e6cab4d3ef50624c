"""Per-partition scan of dump records into partial counts (runs inside Spark workers).

`scan_batches` is the `mapInArrow` function: it reads Arrow batches of dump records
(``value`` = text up to a ``</page>``, ``file`` = source path) and emits partial counts as
rows ``(kind, a, b, n)``, which Spark then sums by key:

====  ==================  =====  ==========================================
kind  a                   b      n
====  ==================  =====  ==========================================
u     token               ""     occurrences
b     first token         second occurrences as an adjacent pair
t     article title       ""     1 per ns-0 page (articles and redirects)
s     stat name           ""     pages / tokens / skips by reason
f     source file         stat   pages, ``</mediawiki>`` end tags and corrupt
                                 (unreadable compressed) splits per file
====  ==================  =====  ==========================================

`scan_splits` is the same with byte-range splits as input (see `splits`): the task
decompresses its own range.

Counters are flushed whenever they hold `max_keys` keys, so a worker's memory stays
bounded however large its split is; Spark's aggregation makes the partial sums exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pyarrow as pa

from wit_builder.querylist.splits import Split, split_records
from wit_builder.querylist.wikitext import ARTICLE_NAMESPACE, Page, parse_page, plain_text
from wit_builder.querylist.words import count_into
from wit_builder.spark import fewer_gc_passes

SCHEMA = pa.schema([("kind", pa.string()), ("a", pa.string()), ("b", pa.string()),
                    ("n", pa.int64())])
END_TAG = "</mediawiki>"


class PartialCounts:
    """Unigram/bigram/title/stat counters of one worker, emitted as Arrow batches."""

    def __init__(self, max_keys: int) -> None:
        self.max_keys = max_keys
        self.reset()

    def reset(self) -> None:
        """Start empty counters (after a flush)."""
        self.unigrams: Counter[str] = Counter()
        self.bigrams: Counter[tuple[str, str]] = Counter()
        self.titles: list[str] = []
        self.stats: Counter[str] = Counter()
        self.files: Counter[tuple[str, str]] = Counter()

    def full(self) -> bool:
        """True once the counters hold enough keys to be worth flushing."""
        return len(self.unigrams) + len(self.bigrams) + len(self.titles) >= self.max_keys

    def add_record(self, record: str, file: str) -> None:
        """Account for one dump record (a page, or the header/trailer text)."""
        if END_TAG in record:
            self.files[(file, "end_tags")] += 1
        page = parse_page(record)
        if isinstance(page, str):
            if page != "no_page":
                self.stats[f"skip_{page}"] += 1
                self.files[(file, "pages")] += 1
            return
        self.files[(file, "pages")] += 1
        self.stats["pages"] += 1
        self.add_page(page)

    def add_page(self, page: Page) -> None:
        """Count an article's tokens; record titles; count skips by reason."""
        if page.ns != ARTICLE_NAMESPACE:
            self.stats["skip_non_article_namespace"] += 1
            return
        self.titles.append(page.title)
        if page.redirect:
            self.stats["skip_redirect"] += 1
            return
        n = count_into(plain_text(page.text), self.unigrams, self.bigrams)
        if n == 0:
            self.stats["skip_empty_text"] += 1
            return
        self.stats["articles"] += 1
        self.stats["tokens"] += n

    def drain(self) -> pa.RecordBatch:
        """Emit everything counted so far as one batch and reset the counters."""
        pairs = list(self.bigrams)
        files = list(self.files)
        columns = [
            ("u", list(self.unigrams), None, list(self.unigrams.values())),
            ("b", [p[0] for p in pairs], [p[1] for p in pairs], list(self.bigrams.values())),
            ("t", self.titles, None, [1] * len(self.titles)),
            ("s", list(self.stats), None, list(self.stats.values())),
            ("f", [f[0] for f in files], [f[1] for f in files], list(self.files.values())),
        ]
        self.reset()
        return pa.concat_batches([_batch(*c) for c in columns])


def _batch(kind: str, a: list[str], b: list[str] | None, n: list[int]) -> pa.RecordBatch:
    """Rows of one kind; `b` None means "" for every row."""
    size = len(a)
    b_col = pa.array(b, pa.string()) if b is not None else pa.repeat("", size)
    return pa.RecordBatch.from_arrays(
        [pa.repeat(kind, size).cast(pa.string()), pa.array(a, pa.string()),
         b_col.cast(pa.string()), pa.array(n, pa.int64())], schema=SCHEMA)


def _scan(records: Iterator[tuple[str, str]], counts: PartialCounts) -> Iterator[pa.RecordBatch]:
    """Count (record, source file) pairs into `counts`, yielding a batch whenever full.
    Reading `records` (decompression, splitting) and counting run with fewer collector
    passes (`fewer_gc_passes`)."""
    with fewer_gc_passes():
        for record, file in records:
            counts.add_record(record, file)
            if counts.full():
                yield counts.drain()


def scan_batches(batches: Iterator[pa.RecordBatch], max_keys: int) -> Iterator[pa.RecordBatch]:
    """`mapInArrow` body: records in, partial counts out (see module docstring)."""
    counts = PartialCounts(max_keys)
    for batch in batches:
        yield from _scan(zip(batch.column("value").to_pylist(),
                             batch.column("file").to_pylist(), strict=True), counts)
    yield counts.drain()


SPLITS_SCHEMA = pa.schema([("path", pa.string()), ("start", pa.int64()), ("end", pa.int64())])


def scan_splits(batches: Iterator[pa.RecordBatch], max_keys: int) -> Iterator[pa.RecordBatch]:
    """`mapInArrow` body: splits (`SPLITS_SCHEMA`) in, partial counts out."""
    counts = PartialCounts(max_keys)
    for batch in batches:
        for row in batch.to_pylist():
            split, problems = Split(row["path"], row["start"], row["end"]), {}
            records = split_records(split, problems)
            yield from _scan(((record, split.path) for record in records), counts)
            for name, n in problems.items():
                counts.files[(split.path, name)] += n
    yield counts.drain()
