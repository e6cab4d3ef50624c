"""The query list's output contract: ``entries.parquet`` (and ``entries.txt``).

Every stage that reads a query list (match, balance, curate, `wit show`) goes through
`load_entries`; the schema and file names live only here. See docs/architecture.md.

``entries.parquet`` columns: ``entry_id:int32`` (the row number: stable ids that
``entry_ids`` of matched pairs refer to), ``entry:string``, ``source:string`` (wordnet,
unigram, bigram, title, extra), ``count:int64?`` (corpus count or summed views),
``score:float64?`` (bigram PMI). ``entries.txt`` holds one entry a line, in id order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from wit_builder.errors import InputError

ENTRIES_FILE = "entries.parquet"
ENTRIES_TEXT = "entries.txt"
ENTRY_SCHEMA = pa.schema([
    ("entry_id", pa.int32()),
    ("entry", pa.string()),
    ("source", pa.string()),
    ("count", pa.int64()),
    ("score", pa.float64()),
])


@dataclass(frozen=True)
class Entry:
    """A candidate entry: text, source, and its count/score where the source has one.

    `count` is the corpus count (unigram, bigram) or summed views (title); `score` is the
    bigram's PMI.
    """

    entry: str
    source: str
    count: int | None = None
    score: float | None = None


def to_table(entries: list[Entry]) -> pa.Table:
    """The ``entries.parquet`` table: entry_id is the row number."""
    return pa.table({
        "entry_id": pa.array(range(len(entries)), pa.int32()),
        "entry": [e.entry for e in entries],
        "source": [e.source for e in entries],
        "count": pa.array([e.count for e in entries], pa.int64()),
        "score": pa.array([e.score for e in entries], pa.float64()),
    }, schema=ENTRY_SCHEMA)


def write_entries(directory: Path, entries: list[Entry]) -> None:
    """Write ``entries.parquet`` and ``entries.txt`` into `directory`."""
    pq.write_table(to_table(entries), directory / ENTRIES_FILE)
    (directory / ENTRIES_TEXT).write_text("".join(f"{e.entry}\n" for e in entries),
                                          encoding="utf-8")


def entries_file(path: Path) -> Path:
    """The entry list inside a querylist output dir, or `path` itself (.parquet or .txt).

    A directory without ``entries.parquet`` (another stage's output, say) is an
    `InputError` that says what was expected.
    """
    if path.is_dir():
        if not (path / ENTRIES_FILE).is_file():
            raise InputError(f"{path} holds no {ENTRIES_FILE}: expected a `wit querylist` "
                             f"output (or an {ENTRIES_FILE} / one-entry-a-line .txt file)")
        path = path / ENTRIES_FILE
    if not path.is_file():
        raise InputError(f"entry list not found: {path}")
    return path


def load_entries(path: Path) -> list[str]:
    """Entries in entry_id order, from ``entries.parquet`` or a one-per-line text file."""
    path = entries_file(path)
    if path.suffix != ".parquet":
        return path.read_text(encoding="utf-8").splitlines()
    try:
        table = pq.read_table(path, columns=["entry_id", "entry"]).sort_by("entry_id")
    except (pa.ArrowInvalid, KeyError) as e:
        raise InputError(f"{path} is not an entries table ({e})") from None
    ids = table.column("entry_id").to_numpy()
    if len(ids) and (ids[0] != 0 or (ids[1:] != ids[:-1] + 1).any()):
        raise InputError(f"{path}: entry_id must run 0..n-1")
    return table.column("entry").to_pylist()


def load_entry_table(directory: Path) -> pa.Table:
    """The whole ``entries.parquet`` of a querylist output (every column)."""
    return pq.read_table(entries_file(directory))
