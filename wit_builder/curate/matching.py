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

from collections.abc import Iterable

import ahocorasick

WRAPPED_PUNCTUATION = ",.;:?!"
_NORMALIZE = str.maketrans({"\t": " ", "\n": " ", "\r": " ",
                            **{p: f" {p} " for p in WRAPPED_PUNCTUATION}})


def normalize_text(text: str) -> str:
    """The text as the rule sees it: padded, control whitespace and marks spaced."""
    return f" {text.translate(_NORMALIZE)} "


def build_automaton(entries: Iterable[str]) -> ahocorasick.Automaton:
    """Automaton whose values are entry ids (positions in `entries`); empty entries skipped.

    If an entry occurs twice, the first id is kept (entry lists are de-duplicated, so
    this only matters for hand-made lists).
    """
    automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
    for entry_id, entry in enumerate(entries):
        key = f" {entry} "
        if entry and not automaton.exists(key):
            automaton.add_word(key, entry_id)
    automaton.make_automaton()
    return automaton


def match_ids(automaton: ahocorasick.Automaton, text: str) -> list[int]:
    """Sorted ids of the entries that match `text` under the rule."""
    if len(automaton) == 0:
        return []
    return sorted({entry_id for _, entry_id in automaton.iter(normalize_text(text))})
