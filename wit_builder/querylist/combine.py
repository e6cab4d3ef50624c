"""Combining the query-list sources into the final ordered, capped list.

Sources are concatenated in MetaCLIP's order (wordnet, unigram, bigram, title); within a
source the caller orders entries strongest first (count, PMI or views descending). An
entry keeps its first occurrence. The strings "0".."99" (source ``extra``) are always in
the list: slots are reserved for those not already present, and they are appended last.
If the list is longer than `max_entries`, the weakest entries of the last sources go.
"""

from __future__ import annotations

from wit_builder.querylist.entries import Entry
from wit_builder.stats import StageStats

SOURCES = ("wordnet", "unigram", "bigram", "title", "extra")
EXTRAS = tuple(str(i) for i in range(100))
# Characters that the matcher turns into spaces: an entry holding one could never match.
_UNMATCHABLE = ("\t", "\n", "\r")

def _valid(entry: str) -> bool:
    return bool(entry) and entry == entry.strip() and not any(c in entry for c in _UNMATCHABLE)


def combine(sources: list[list[Entry]], max_entries: int, stats: StageStats) -> list[Entry]:
    """Ordered, de-duplicated, capped entries (see module docstring); drops go to `stats`."""
    seen: set[str] = set()
    merged: list[Entry] = []
    for candidates in sources:
        for cand in candidates:
            if not _valid(cand.entry):
                stats.drop(f"{cand.source}_invalid_text")
            elif cand.entry in seen:
                stats.drop(f"{cand.source}_duplicate")
            else:
                seen.add(cand.entry)
                merged.append(cand)
    extras = [Entry(e, "extra") for e in EXTRAS if e not in seen]
    room = max_entries - len(extras)
    stats.drop("over_max_entries", max(0, len(merged) - room))
    return merged[:room] + extras


def source_sizes(entries: list[Entry]) -> dict[str, int]:
    """Entries per source, in `SOURCES` order."""
    return {s: sum(1 for e in entries if e.source == s) for s in SOURCES}
