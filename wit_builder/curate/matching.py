"""MetaCLIP's substring-matching rule, implemented with an Aho-Corasick automaton.

The rule (case-sensitive, no Unicode folding): pad the text with one space on each side,
turn tab, newline and carriage return into spaces, and surround each of ``, . ; : ? !``
with spaces; entry *e* matches when ``" e "`` is a substring of the result. So "dog"
matches "a dog, a cat" and "dog!" but not "hot-dog", "dog's" or "(dog)"; and an entry that
holds one of the wrapped marks, such as "St. Louis", can never match (the text becomes
"St . Louis").

One automaton over all padded entries finds every entry of a text in one pass over it
(overlapping matches included: " New York " and " York " both match "New York").
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import ahocorasick
import numpy as np

WRAPPED_PUNCTUATION = ",.;:?!"
# Joins the texts of a batch (`match_many`); entries holding it are left out of the
# automaton, so no match can span two texts.
_SEPARATOR = "\x00"
_WRAPPED = tuple((p, f" {p} ") for p in WRAPPED_PUNCTUATION)


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
