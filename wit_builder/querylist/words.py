"""The project's one tokenizer for counting words (query-list unigrams and bigrams).

Rules, chosen so that every counted token can later match alt-text under MetaCLIP's
space-delimited substring rule:

* A token is a run of Unicode letters/digits, optionally joined by single internal
  apostrophes (' or ’) or hyphens: ``dog``, ``1990``, ``don't``, ``state-of-the-art``,
  ``Zürich``. Underscores are not word characters.
* Case is preserved: ``Apple`` and ``apple`` are different tokens (entries are
  case-sensitive).
* Bigrams are pairs of tokens separated only by spaces or tabs. Any other character
  between them (punctuation, a line break, a stray apostrophe or hyphen) is a phrase
  boundary, so ``York, New`` and the last word of one paragraph plus the first of the
  next are not bigrams.

`token_stream` returns tokens with ``""`` at every phrase boundary; that one flat list
serves both unigram and bigram counting without a second pass.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterator

# Group 1 is a token; the second alternative (no group) matches one boundary character and
# so yields "" from findall. Spaces and tabs match neither and are skipped.
_TOKEN_OR_BOUNDARY = re.compile(r"([^\W_]+(?:['’\-][^\W_]+)*)|[^\w \t]|_")


def token_stream(text: str) -> list[str]:
    """Tokens of `text` in order, with "" marking phrase boundaries."""
    return _TOKEN_OR_BOUNDARY.findall(text)


def tokens(text: str) -> list[str]:
    """Just the tokens of `text`, in order."""
    return [t for t in token_stream(text) if t]


def bigrams(stream: list[str]) -> Iterator[tuple[str, str]]:
    """Adjacent token pairs within a phrase of a `token_stream`."""
    return ((a, b) for a, b in itertools.pairwise(stream) if a and b)


def count_into(text: str, unigrams: Counter[str], pairs: Counter[tuple[str, str]]) -> int:
    """Add `text`'s unigram and bigram counts to the counters; return its token count."""
    stream = token_stream(text)
    words = [t for t in stream if t]
    unigrams.update(words)
    pairs.update(bigrams(stream))
    return len(words)
