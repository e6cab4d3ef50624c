"""MetaCLIP matching rule: boundary cases and equality with a naive reference."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.builders import FIXTURES, REPO
from wit_builder.curate.matching import (
    build_automaton,
    match_ids,
    match_many,
    normalize_array,
    normalize_text,
)

ENTRIES = ["dog", "dog's", "hot dog", "St. Louis", "St", "Louis", "Apple", "New York",
           "York", "(dog)", "rock-n-roll", ",", "Zürich", ""]


def ids_to_entries(text: str) -> set[str]:
    return {ENTRIES[i] for i in match_ids(build_automaton(ENTRIES), text)}


@pytest.mark.parametrize(("text", "expected"), [
    ("a dog, a cat", {"dog", ","}),
    ("Dog!", set()),                                   # case-sensitive
    ("my dog's bowl", {"dog's"}),                      # apostrophe is part of the word
    ("a hot-dog stand", set()),                        # hyphen is not a boundary
    ("(dog) photo", {"(dog)"}),                        # brackets are not wrapped
    ("hot\tdog\non a plate", {"hot dog", "dog"}),      # control whitespace → space
    ("St. Louis skyline", {"St", "Louis"}),            # "." is wrapped: St . Louis
    ("apple and Apple", {"Apple"}),
    ("New York?", {"New York", "York"}),               # overlapping matches
    ("rock-n-roll legends", {"rock-n-roll"}),
    ("Zürich, Switzerland", {"Zürich", ","}),
    ("dogs", set()),
    ("Boy`s dog", {"dog"}),                            # "Boy ` s dog"
    ("a `dog` toy", {"dog"}),                          # the backtick is wrapped too
    ("hot dog`s", {"hot dog", "dog"}),
])
def test_rule_boundary_cases(text, expected):
    assert ids_to_entries(text) == expected


def test_normalize_text():
    assert normalize_text("a,b.\tc") == " a , b .  c "
    assert normalize_text("Boy`s") == " Boy ` s "


def rule_text(text: str) -> str:
    """MetaCLIP's rule written out independently of `normalize_text`."""
    for space in "\t\n\r":
        text = text.replace(space, " ")
    for mark in [",", ".", ";", ":", "?", "!", "`"]:
        text = text.replace(mark, " " + mark + " ")
    return " " + text + " "


def naive_match(entries: list[str], text: str) -> list[int]:
    """Reference: the rule applied literally, one `in` test per entry."""
    padded = rule_text(text)
    return [i for i, e in enumerate(entries) if e and f" {e} " in padded]


def test_backtick_texts_equal_the_reference():
    """Real alt-texts with a backtick (as an apostrophe or a quote) match as the rule says:
    "Boy`s" is "Boy ` s", so "Boy" matches and "Boy`s" never can."""
    entries = ["Boy", "Boy`s", "s", "coated", "hooded jacket", "`", "Mom", "Mom`s", "tea",
               "dog", "it", "`dog`"]
    texts = ["Boy`s coated hooded jacket", "Mom`s `special` tea", "it`s a `dog`", "``",
             "Boy`s", "tea`"]
    automaton = build_automaton(entries)
    for text in texts:
        assert match_ids(automaton, text) == naive_match(entries, text), text
    assert {entries[i] for i in match_ids(automaton, texts[0])} == {
        "Boy", "s", "coated", "hooded jacket", "`"}


def test_equals_naive_reference_on_real_alt_texts():
    texts = pq.read_table(FIXTURES / "alt_text" / "laion-alt-text-1000.parquet")
    texts = [t or "" for t in texts.column("TEXT").to_pylist()]
    table = pq.read_table(REPO / "query_lists" / "enwiki-fixture" / "entries.parquet")
    rows = table.to_pylist()
    # Every Wikipedia-derived entry plus every 8th WordNet name (~12k entries) keeps the
    # naive loop quick while covering frequent words, bigrams and multi-word names.
    wordnet = [r["entry"] for r in rows if r["source"] == "wordnet"]
    entries = wordnet[::8] + [r["entry"] for r in rows if r["source"] != "wordnet"]
    automaton = build_automaton(entries)
    matched = 0
    for text in texts:
        got = match_ids(automaton, text)
        assert got == naive_match(entries, text), text
        matched += bool(got)
    assert matched > 600  # two thirds of these real alt-texts hold a listed entry


def test_arrow_normalization_equals_the_reference():
    """The vectorized normalization (Arrow kernels) gives `rule_text` + separator for
    every real alt-text, and for control whitespace, every mark and non-ASCII text."""
    texts = pq.read_table(FIXTURES / "alt_text" / "laion-alt-text-1000.parquet")
    texts = [t or "" for t in texts.column("TEXT").to_pylist()]
    texts += ["a,b.c;d:e?f!g`h", "tab\there\nnew\rline", "Zürich, 東京!", "", "\x00x"]
    got = normalize_array(pa.array(texts)).to_pylist()
    assert got == [rule_text(t) + "\x00" for t in texts]
    assert [normalize_text(t) for t in texts] == [rule_text(t) for t in texts]


def test_match_many_on_arrow_batches_with_nulls():
    """Nulls and empty texts match nothing; hits land on the right text of the batch
    (byte offsets of multi-byte UTF-8 texts), chunked arrays read like plain ones."""
    matcher = build_automaton(ENTRIES)
    texts = ["Zürich, Switzerland", None, "", "東京 dog", "New York?", "\x00dog\x00"]
    offsets, ids = match_many(matcher, pa.chunked_array([texts[:3], texts[3:]]))
    per_text = [{ENTRIES[i] for i in ids[a:b]} for a, b in itertools.pairwise(offsets)]
    assert per_text == [{"Zürich", ","}, set(), set(), {"dog"}, {"New York", "York"},
                        set()]
    assert offsets.dtype == ids.dtype == np.int32
