"""WordNet 3.0 synset names, read straight from the database files.

nltk refuses WordNet directories outside its data path, and the format is simple, so the
`data.{noun,verb,adj,adv}` files (Debian package ``wordnet-base``) are parsed here. Each
synset line is ``offset lex_filenum ss_type w_cnt word lex_id ...``; the synset's name is
its first word with "_" read as a space and the adjective position marker
(``(a)``, ``(p)``, ``(ip)``) removed. Case is kept (``Einstein`` ≠ ``einstein``).

``style="metaclip"`` names synsets as MetaCLIP's list does (nltk's ``synset.name()`` cut
at its first "."): the first lemma lower-cased and cut at its first ".", so
``St._Petersburg`` becomes ``st`` and ``.22-caliber`` becomes "" (dropped as invalid).
That gives MetaCLIP's 86,654 WordNet entries (with "0".."99"); the default keeps case
and dots (87,379 distinct names), because entries match case-sensitively and a cut name
matches text its synset never meant.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from wit_builder.errors import InputError
from wit_builder.stats import StageStats

POS_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
_ADJ_MARKER = re.compile(r"\((?:a|p|ip)\)$")
NameStyle = Literal["case", "metaclip"]


def synset_name(line: str, style: NameStyle = "case") -> str | None:
    """Name of the synset on a data-file line, or None for license/comment/bad lines."""
    if line.startswith(" "):
        return None
    fields = line.split(" ", 5)
    if len(fields) < 5 or not fields[0].isdigit():
        return None
    lemma = _ADJ_MARKER.sub("", fields[4])
    if style == "metaclip":
        lemma = lemma.lower().split(".", 1)[0]
    return lemma.replace("_", " ")


def find_data_dir(root: Path) -> Path:
    """The directory holding the data files: `root` itself or its ``dict/`` subfolder."""
    for candidate in (root, root / "dict"):
        if all((candidate / name).is_file() for name in POS_FILES):
            return candidate
    missing = [n for n in POS_FILES if not (root / n).is_file()]
    raise InputError(
        f"WordNet: {root} lacks {', '.join(missing)} (install Debian's wordnet-base, "
        "point --wordnet at a WordNet 3.0 dict directory, or pass --wordnet none)"
    )


def synset_names(root: Path, stats: StageStats | None = None,
                 style: NameStyle = "case") -> list[str]:
    """Distinct synset names in file order (noun, verb, adj, adv); first occurrence wins."""
    data_dir = find_data_dir(root)
    seen: dict[str, None] = {}
    synsets = 0
    for name in POS_FILES:
        with open(data_dir / name, encoding="utf-8") as f:
            for line in f:
                word = synset_name(line, style)
                if word is None:
                    continue
                synsets += 1
                seen.setdefault(word)
    if stats is not None:
        stats.extra["wordnet_synsets"] = synsets
        stats.drop("wordnet_duplicate_name", synsets - len(seen))
    return list(seen)
