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
f     source file         stat   pages and ``</mediawiki>`` end tags per file
====  ==================  =====  ==========================================

Counters are flushed whenever they hold `max_keys` keys, so a worker's memory stays
bounded however large its split is; Spark's aggregation makes the partial sums exact.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

import pyarrow as pa

from wit_builder.querylist.wikitext import ARTICLE_NAMESPACE, Page, parse_page, plain_text
from wit_builder.tokenize import count_into

SCHEMA = pa.schema([("kind", pa.string()), ("a", pa.string()), ("b", pa.string()),
                    ("n", pa.int64())])
SPARK_SCHEMA = "kind string, a string, b string, n long"
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
        kinds, a_col, b_col, n_col = [], [], [], []

        def emit(kind: str, items: Iterable[tuple[str, str, int]]) -> None:
            for a, b, n in items:
                kinds.append(kind)
                a_col.append(a)
                b_col.append(b)
                n_col.append(n)

        emit("u", ((w, "", n) for w, n in self.unigrams.items()))
        emit("b", ((w1, w2, n) for (w1, w2), n in self.bigrams.items()))
        emit("t", ((t, "", 1) for t in self.titles))
        emit("s", ((k, "", n) for k, n in self.stats.items()))
        emit("f", ((f, k, n) for (f, k), n in self.files.items()))
        self.reset()
        return pa.RecordBatch.from_arrays(
            [pa.array(kinds, pa.string()), pa.array(a_col, pa.string()),
             pa.array(b_col, pa.string()), pa.array(n_col, pa.int64())],
            schema=SCHEMA,
        )


def scan_batches(batches: Iterator[pa.RecordBatch], max_keys: int) -> Iterator[pa.RecordBatch]:
    """`mapInArrow` body: records in, partial counts out (see module docstring)."""
    counts = PartialCounts(max_keys)
    for batch in batches:
        for record, file in zip(batch.column("value").to_pylist(),
                                batch.column("file").to_pylist(), strict=True):
            counts.add_record(record, file)
            if counts.full():
                yield counts.drain()
    yield counts.drain()
