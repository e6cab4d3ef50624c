"""MetaCLIP's substring-matching rule, implemented with an Aho-Corasick automaton.

The rule (case-sensitive, no Unicode folding): pad the text with one space on each side,
turn tab, newline and carriage return into spaces, and surround each of the seven marks
``,`` ``.`` ``;`` ``:`` ``?`` ``!`` and the backtick with spaces; entry *e* matches when
``" e "`` is a substring of the result. So "dog" matches "a dog, a cat" and "dog!" but
not "hot-dog", "dog's" or "(dog)"; and an entry that holds one of the wrapped marks, such
as "St. Louis", can never match (the text becomes "St . Louis").

How it runs (`match_many`): a whole Arrow batch of texts is normalized with Arrow compute
kernels (vectorized, no Python per text), each text ends with a NUL separator, and the
batch's UTF-8 data buffer is scanned once by ahocorasick-rs's byte automaton over all
padded entries, reporting *overlapping* matches (" New York " and " York " both match
"New York"; the library's default, non-overlapping mode would lose the inner one). Byte
matching equals character matching here: UTF-8 is self-synchronizing, so a valid UTF-8
pattern only matches at character boundaries. Hits are grouped per text with NumPy.

In Spark (`match_df`) the entry list (500k strings, a few MB) is broadcast; each executor
Python worker builds the automaton once (about two seconds; +100 MiB resident and +230
MiB at the peak of the build, for 500k entries) and keeps it for every later task and job
(`worker_automaton`), since Spark reuses Python workers between tasks. Texts are matched
in Arrow batches (``mapInArrow``), no per-row UDF.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import ahocorasick_rs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from wit_builder.curate.pairs import ENTRY_IDS
from wit_builder.spark import schema_plus

if TYPE_CHECKING:
    from pyspark.broadcast import Broadcast
    from pyspark.sql import DataFrame

WRAPPED_PUNCTUATION = ",.;:?!`"  # MetaCLIP spaces out these seven marks
# Ends every text of a batch (`match_many`); entries holding it are left out of the
# automaton, so no match can span two texts.
_SEPARATOR = "\x00"
_WRAPPED = tuple((p, f" {p} ") for p in WRAPPED_PUNCTUATION)
# The padding around each text, as scalars of the type `normalize_array` works in.
_LEFT, _RIGHT, _EMPTY = (pa.scalar(s, pa.large_string()) for s in (" ", " " + _SEPARATOR, ""))
# One automaton per Python process, keyed by the content hash of its entry list.
_AUTOMATON: dict[str, tuple[Matcher, int]] = {}
log = logging.getLogger(__name__)


def normalize_text(text: str) -> str:
    """The text as the rule sees it: padded, control whitespace and marks spaced."""
    text = text.replace("\t", " ").replace("\n", " ").replace("\r", " ")
    for mark, wrapped in _WRAPPED:
        text = text.replace(mark, wrapped)
    return f" {text} "


def normalize_array(texts: pa.Array) -> pa.LargeStringArray:
    """`normalize_text` of every text (null → empty) followed by the separator, computed
    with Arrow kernels; large_string so a batch's data can exceed 2 GiB."""
    arr = pc.fill_null(texts.cast(pa.large_string()), "")
    for space in "\t\n\r":
        arr = pc.replace_substring(arr, space, " ")
    for mark, wrapped in _WRAPPED:
        arr = pc.replace_substring(arr, mark, wrapped)
    return pc.binary_join_element_wise(_LEFT, arr, _RIGHT, _EMPTY)


@dataclass(frozen=True)
class Matcher:
    """A byte automaton over the padded entries; `entry_ids[k]` is the entry id (position
    in the list) of the automaton's pattern k."""

    automaton: ahocorasick_rs.BytesAhoCorasick
    entry_ids: np.ndarray
    n_entries: int

    def __len__(self) -> int:
        return len(self.entry_ids)


def build_automaton(entries: Iterable[str]) -> Matcher:
    """Matcher for `entries`; empty entries and entries holding NUL are skipped.

    If an entry occurs twice, the first id is kept (entry lists are de-duplicated, so
    this only matters for hand-made lists). The contiguous NFA is chosen explicitly: the
    DFA the library may otherwise pick needs >3 GiB for 500k entries.
    """
    first: dict[str, int] = {}
    n = 0
    for n, entry in enumerate(entries, start=1):
        if entry and _SEPARATOR not in entry:
            first.setdefault(entry, n - 1)
    patterns = (f" {e} ".encode("utf-8", "surrogatepass") for e in first)  # not a list:
    automaton = ahocorasick_rs.BytesAhoCorasick(  # the library keeps its own copy
        patterns, implementation=ahocorasick_rs.Implementation.ContiguousNFA)
    return Matcher(automaton, np.fromiter(first.values(), np.int64, len(first)), n)


def match_ids(matcher: Matcher, text: str) -> list[int]:
    """Sorted ids of the entries that match `text` under the rule."""
    return match_many(matcher, [text])[1].tolist()


def _hits(matcher: Matcher, data: np.ndarray) -> np.ndarray:
    """(pattern, start) of every overlapping match in `data`, as an (n, 2) array."""
    if not len(matcher):
        return np.empty((0, 2), np.int64)
    found = matcher.automaton.find_matches_as_indexes(data, overlapping=True)
    flat = np.fromiter(itertools.chain.from_iterable(found), np.int64, 3 * len(found))
    return flat.reshape(-1, 3)[:, :2]


Texts = Sequence[str | None] | pa.Array | pa.ChunkedArray


def match_many(matcher: Matcher, texts: Texts) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique matching entry ids of many texts at once: (offsets, ids).

    The ids of text i are ``ids[offsets[i]:offsets[i+1]]`` (None counts as no text).
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    elif not isinstance(texts, pa.Array):
        texts = pa.array(texts, pa.string())
    normalized = normalize_array(texts)
    ends = np.frombuffer(normalized.buffers()[1], np.int64, len(normalized) + 1,
                         normalized.offset * 8)
    data = np.frombuffer(normalized.buffers()[2], np.uint8)[ends[0]:ends[-1]]
    hits = _hits(matcher, data)
    text_index = np.searchsorted(ends[1:] - ends[0], hits[:, 1], side="right")
    width = matcher.n_entries + 1
    keys = np.sort(text_index * width + matcher.entry_ids[hits[:, 0]])  # by text, id
    # An entry found twice in one text counts once (sort + mask: np.unique hashes, which
    # is several times slower on these keys).
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys
    rows, ids = np.divmod(keys, width)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(texts)))])
    return offsets.astype(np.int32), ids.astype(np.int32)


def list_key(entries: list[str]) -> str:
    """Content hash of an entry list: workers reuse an automaton across jobs of a session."""
    digest = hashlib.blake2b(digest_size=16)
    for entry in entries:
        digest.update(entry.encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()


def worker_automaton(key: str, entries: Callable[[], list[str]]) -> Matcher:
    """This process's automaton for `key`, built from `entries()` on first use only."""
    if key not in _AUTOMATON:
        _AUTOMATON.clear()  # a new list replaces the old one (~100 MiB each)
        started = time.perf_counter()
        _AUTOMATON[key] = (build_automaton(entries()), time.time_ns())
        log.info("built automaton in %.1f s", time.perf_counter() - started)
    return _AUTOMATON[key][0]


def cached_automata() -> dict[str, int]:
    """{list key: when its automaton was built (ns)} in this process: shows the reuse
    across tasks and jobs."""
    return {key: built for key, (_, built) in _AUTOMATON.items()}


def match_batch(batch: pa.RecordBatch, matcher: Matcher) -> pa.RecordBatch:
    """Rows of `batch` with at least one matching entry, plus their ``entry_ids``."""
    offsets, ids = match_many(matcher, batch.column("text"))
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
