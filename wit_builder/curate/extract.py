"""Per-file extraction: WARC/WAT file → (image URL, alt-text) pairs, with every drop counted.

For each page (`records.iter_pages`) every image yields one candidate per configured
attribute that is present (``alt``, ``title``). A candidate becomes a pair when its URL
resolves to an absolute http(s) URL, its whitespace-normalized text passes the length
limits, and the language-ID model says it is in `lang` with probability ≥
`min_lang_score`. Otherwise it is counted under a drop reason (`hygiene`, ``lang_*``).

`extract_partition` is the function Spark runs with ``mapInArrow``: it receives batches of
file paths and emits Arrow batches in `SCHEMA`. Rows with a null ``reason`` are pairs; the
other rows are per-file counters (``reason``, ``n``), so the counts travel with the data
and no row is lost without a trace (see `counter_kind` for the counter names).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from wit_builder.curate import records
from wit_builder.curate.hygiene import Drop, clean_text, page_base, pair_uid, resolve_url
from wit_builder.curate.lid import LanguageId

PAIR_SCHEMA = pa.schema([
    ("uid", pa.string()), ("url", pa.string()), ("text", pa.string()),
    ("attr", pa.string()), ("page_url", pa.string()), ("lang", pa.string()),
    ("lang_score", pa.float32()), ("source_file", pa.string()),
])
SCHEMA = pa.schema([*PAIR_SCHEMA, ("reason", pa.string()), ("n", pa.int64())])
PAIR_COLUMNS = PAIR_SCHEMA.names
# Counter names that are totals rather than drops.
TOTALS = ("records", "records_truncated", "html_pages", "wat_pages", "candidates", "pairs")
BATCH_ROWS = 8192


@dataclass(frozen=True)
class ExtractParams:
    """What makes a candidate a pair (mirrors the `wit extract` config)."""

    lid_model: str | None = None  # None: lid.176.ftz (see `lid.resolve_model_path`)
    lang: str | None = "en"
    min_lang_score: float = 0.5
    attrs: tuple[str, ...] = ("alt", "title")
    min_text_chars: int = 3
    max_text_chars: int = 1000
    max_url_chars: int = 2048


def counter_kind(name: str) -> str:
    """"total", "record" (a dropped WARC record) or "pair" (a dropped candidate pair)."""
    if name in TOTALS:
        return "total"
    return "record" if name.startswith("record_") else "pair"


def page_candidates(page: records.Page, attrs: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """(src, raw text, attribute) for each image attribute present on the page."""
    for image in page.images:
        for attr in attrs:
            text = getattr(image, attr)
            if text is not None:
                yield image.src, text, attr


def check_pair(src: str, text: str, base: str | None, params: ExtractParams,
               lid: LanguageId) -> tuple[str, str, str, float] | Drop:
    """(url, text, lang, lang_score) of a candidate, or the reason it is dropped."""
    url = resolve_url(src, base, params.max_url_chars)
    if isinstance(url, Drop):
        return url
    clean = clean_text(text, params.min_text_chars, params.max_text_chars)
    if isinstance(clean, Drop):
        return clean
    lang, score = lid(clean)
    if params.lang and lang != params.lang:
        return Drop(f"lang_not_{params.lang}")
    if score < params.min_lang_score:
        return Drop("lang_low_score")
    return url, clean, lang, score


def file_pairs(path: str, params: ExtractParams, lid: LanguageId,
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
    data["reason"] = [None] * len(rows)
    data["n"] = [None] * len(rows)
    return pa.RecordBatch.from_pydict(data, schema=SCHEMA)


def _count_batch(path: str, counts: Counter[str]) -> pa.RecordBatch:
    names = sorted(counts)
    data = {name: [None] * len(names) for name in PAIR_COLUMNS}
    data["source_file"] = [path] * len(names)
    data["reason"] = names
    data["n"] = [counts[n] for n in names]
    return pa.RecordBatch.from_pydict(data, schema=SCHEMA)


def extract_file(path: str, params: ExtractParams) -> Iterator[pa.RecordBatch]:
    """Pair batches of one file, then one batch of its counters."""
    lid = LanguageId(params.lid_model)
    counts: Counter[str] = Counter({"records": 0, "candidates": 0, "pairs": 0})
    rows: list[tuple] = []
    for row in file_pairs(path, params, lid, counts):
        rows.append(row)
        if len(rows) == BATCH_ROWS:
            yield _batch(rows)
            rows = []
    if rows:
        yield _batch(rows)
    yield _count_batch(path, counts)


def extract_partition(batches: Iterable[pa.RecordBatch],
                      params: ExtractParams) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: input batches have a ``path`` column, one file per row."""
    for batch in batches:
        for path in batch.column("path").to_pylist():
            yield from extract_file(path, params)
