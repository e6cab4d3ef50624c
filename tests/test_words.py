from collections import Counter

from wit_builder.querylist.words import bigrams, count_into, token_stream, tokens


def test_tokens_keep_case_and_internal_joiners():
    text = "Don't stop: state-of-the-art Zürich 1990 rock’n’roll Apple apple"
    assert tokens(text) == ["Don't", "stop", "state-of-the-art", "Zürich", "1990",
                            "rock’n’roll", "Apple", "apple"]


def test_stray_joiners_and_underscores_split_tokens():
    assert tokens("'quoted' -dash- snake_case __X__") == [
        "quoted", "dash", "snake", "case", "X"]


def test_bigrams_do_not_cross_punctuation_or_lines():
    stream = token_stream("New York, New Jersey\nand\tthe (big) city.")
    assert list(bigrams(stream)) == [("New", "York"), ("New", "Jersey"), ("and", "the")]


def test_count_into_counts_unigrams_and_bigrams():
    uni, bi = Counter(), Counter()
    n = count_into("a b a b. a", uni, bi)
    assert n == 5
    assert uni == {"a": 3, "b": 2}
    assert bi == {("a", "b"): 2, ("b", "a"): 1}
