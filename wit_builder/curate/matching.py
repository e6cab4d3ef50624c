"""MetaCLIP's substring-matching rule, implemented with an Aho-Corasick automaton.

The rule (case-sensitive, no Unicode folding): pad the text with one space on each side,
turn tab, newline and carriage return into spaces, and surround each of the seven marks
``,`` ``.`` ``;`` ``:`` ``?`` ``!`` and the backtick with spaces; entry *e* matches when
``" e "`` is a substring of the result. So "dog" matches "a dog, a cat" and "dog!" but
not "hot-dog", "dog's" or "(dog)"; and an entry that holds one of the wrapped marks, such
as "St. Louis", can never match (the text becomes "St . Louis").

One automaton over all padded entries finds every entry of a text in one pass over it
(overlapping matches included: " New York " and " York " both match "New York").

In Spark (`match_df`) the entry list (500k strings, a few MB) is broadcast; each executor
Python worker builds the automaton once (about a second and ~230 MiB for 500k entries)
and keeps it for every later task and job (`worker_automaton`), since Spark reuses Python
workers between tasks. Texts are matched in Arrow batches (``mapInArrow``), no per-row UDF.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import ahocorasick
import numpy as np
import pyarrow as pa

from wit_builder.curate.pairs import ENTRY_IDS
from wit_builder.spark import schema_plus

if TYPE_CHECKING:
    from pyspark.broadcast import Broadcast
    from pyspark.sql import DataFrame

WRAPPED_PUNCTUATION = ",.;:?!`"  # MetaCLIP spaces out these seven marks
# Joins the texts of a batch (`match_many`); entries holding it are left out of the
# automaton, so no match can span two texts.
_SEPARATOR = "\x00"
_WRAPPED = tuple((p, f" {p} ") for p in WRAPPED_PUNCTUATION)
# One automaton per Python process, keyed by the content hash of its entry list.
_AUTOMATON: dict[str, tuple[ahocorasick.Automaton, int]] = {}
log = logging.getLogger(__name__)


def normalize_text(text: str) -> str:
    """The text as the rule sees it: padded, control whitespace and marks spaced.

    Chained `str.replace` rather than `str.translate`: translate with multi-character
    replacements is ~5x slower, and this runs on every text.
    """
    text = text.replace("\t", " ").replace("\n", " ").replace("\r", " ")
    for mark, wrapped in _WRAPPED:
        if mark in text:
            text = text.replace(mark, wrapped)
    return f" {text} "


def build_automaton(entries: Iterable[str]) -> ahocorasick.Automaton:
    """Automaton whose values are entry ids (positions in `entries`); empty entries skipped.

    If an entry occurs twice, the first id is kept (entry lists are de-duplicated, so
    this only matters for hand-made lists); entries holding NUL are skipped.
    """
    automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
    for entry_id, entry in enumerate(entries):
        key = f" {entry} "
        if entry and _SEPARATOR not in entry and not automaton.exists(key):
            automaton.add_word(key, entry_id)
    automaton.make_automaton()
    return automaton


def match_ids(automaton: ahocorasick.Automaton, text: str) -> list[int]:
    """Sorted ids of the entries that match `text` under the rule."""
    if len(automaton) == 0:
        return []
    return sorted({entry_id for _, entry_id in automaton.iter(normalize_text(text))})


def match_many(automaton: ahocorasick.Automaton,
               texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique matching entry ids of many texts at once: (offsets, ids).

    The ids of text i are ``ids[offsets[i]:offsets[i+1]]`` (None counts as no text). Same
    result as `match_ids` per text, but the texts are joined into one string and scanned
    in one call, and hits are grouped with NumPy: the per-text Python work (one automaton
    call, a set, a sort) would otherwise cost as much as the scan itself.
    """
    normalized = [normalize_text(t) if t else " " for t in texts]
    joined = _SEPARATOR.join(normalized)
    text_ends = np.cumsum([len(t) + 1 for t in normalized]) - 1  # separator positions
    hits = np.fromiter(itertools.chain.from_iterable(automaton.iter(joined))
                       if len(automaton) else (), dtype=np.int64).reshape(-1, 2)
    text_index = np.searchsorted(text_ends, hits[:, 0], side="left")
    width = int(hits[:, 1].max(initial=0)) + 1
    keys = np.unique(text_index * width + hits[:, 1])  # sorted by text, then entry id
    rows, ids = np.divmod(keys, width)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(texts)))])
    return offsets.astype(np.int32), ids.astype(np.int32)


def list_key(entries: list[str]) -> str:
    """Content hash of an entry list: workers reuse an automaton across jobs of a session."""
    digest = hashlib.blake2b(digest_size=16)
    for entry in entries:
        digest.update(entry.encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()


def worker_automaton(key: str, entries: Callable[[], list[str]]) -> ahocorasick.Automaton:
    """This process's automaton for `key`, built from `entries()` on first use only."""
    if key not in _AUTOMATON:
        _AUTOMATON.clear()  # a new list replaces the old one (~230 MiB each)
        started = time.perf_counter()
        _AUTOMATON[key] = (build_automaton(entries()), time.time_ns())
        log.info("built automaton in %.1f s", time.perf_counter() - started)
    return _AUTOMATON[key][0]


def cached_automata() -> dict[str, int]:
    """{list key: when its automaton was built (ns)} in this process: shows the reuse
    across tasks and jobs."""
    return {key: built for key, (_, built) in _AUTOMATON.items()}


def match_batch(batch: pa.RecordBatch, automaton: ahocorasick.Automaton) -> pa.RecordBatch:
    """Rows of `batch` with at least one matching entry, plus their ``entry_ids``."""
    offsets, ids = match_many(automaton, batch.column("text").to_pylist())
    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(ids, pa.int32()))
    keep = pa.array(np.diff(offsets) > 0)
    return batch.filter(keep).append_column(ENTRY_IDS, lists.filter(keep))


def match_partition(batches: Iterable[pa.RecordBatch], entries: Broadcast[list[str]],
                    key: str) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: match every batch against the broadcast entry list.

    `key` identifies the list (`list_key`) in the per-worker cache.
    """
    automaton = worker_automaton(key, lambda: entries.value)
    for batch in batches:
        yield match_batch(batch, automaton)


def match_df(df: DataFrame, entries: list[str]) -> DataFrame:
    """`df` (with a ``text`` column) restricted to matching rows, with ``entry_ids``."""
    bc = df.sparkSession.sparkContext.broadcast(entries)
    body = functools.partial(match_partition, entries=bc, key=list_key(entries))
    return df.mapInArrow(body, schema_plus(df, ENTRY_IDS))
