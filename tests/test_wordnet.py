import pytest

from tests.builders import WORDNET
from wit_builder.errors import InputError
from wit_builder.querylist.combine import combine
from wit_builder.querylist.entries import Entry
from wit_builder.querylist.wordnet import synset_name, synset_names
from wit_builder.stats import StageStats

PAPER_WORDNET_ENTRIES = 86_654  # MetaCLIP Table 1


def test_wordnet_source_size_matches_paper():
    stats = StageStats("t")
    names = synset_names(WORDNET, stats)
    assert abs(len(names) - PAPER_WORDNET_ENTRIES) / PAPER_WORDNET_ENTRIES < 0.01
    assert stats.extra["wordnet_synsets"] == 117_659  # WordNet 3.0
    assert len(set(names)) == len(names)
    assert {"entity", "physical entity", "Einstein", "able"} <= set(names)


def test_metaclip_names_give_exactly_the_papers_count():
    """MetaCLIP's naming (lower-cased, cut at the first '.') plus "0".."99" is exactly the
    86,654 WordNet entries of MetaCLIP's Table 1; the default keeps case and dots."""
    metaclip = synset_names(WORDNET, style="metaclip")
    entries = combine([[Entry(n, "wordnet") for n in metaclip]], 10**6, StageStats("t"))
    assert len(entries) == PAPER_WORDNET_ENTRIES
    assert "st" in metaclip and "einstein" in metaclip and "Einstein" not in metaclip
    default = synset_names(WORDNET)
    assert len(default) == 87_379 and "St. Petersburg" in default
    line = "01234567 03 n 01 St._Petersburg 0 000 | gloss"
    assert synset_name(line, "metaclip") == "st" and synset_name(line) == "St. Petersburg"


def test_synset_name_parsing():
    line = "00002312 00 a 02 abaxial 0 dorsal 4 002 ;c 06037666 n 0000 | gloss"
    assert synset_name(line) == "abaxial"
    assert synset_name("01234567 00 s 01 galore(ip) 0 000 | gloss") == "galore"
    assert synset_name("01234567 03 n 01 New_York 0 000 | gloss") == "New York"
    assert synset_name("  1 This software and database is being provided") is None


def test_missing_wordnet_names_the_directory(tmp_path):
    with pytest.raises(InputError, match=str(tmp_path)):
        synset_names(tmp_path)
