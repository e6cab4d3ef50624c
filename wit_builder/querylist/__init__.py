"""Stage 1: derive the query list (WordNet, Wikipedia unigrams/bigrams, popular titles)."""
