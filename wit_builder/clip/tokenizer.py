"""OpenAI CLIP's byte-level BPE tokenizer (ids identical to OpenAI's and open_clip's).

Text is cleaned as in CLIP (ftfy repair, HTML entities unescaped twice, whitespace
collapsed, lower-cased), split by CLIP's regex into words, numbers (one digit per piece)
and punctuation runs; each piece's UTF-8 bytes are mapped to printable characters (GPT-2's
reversible byte alphabet), the last one marked with ``</w>``, and merged by the BPE rules
in rank order. A sequence is ``[SOT] tokens [EOT]`` padded with 0 to `context_length`; a
longer one is cut and its last token set to EOT, so the text tower always finds EOT.

The vocabulary (``bpe_simple_vocab_16e6.txt.gz``, 48,894 merges; 49,408 ids) is read from
the open_clip wheel installed from the package registry: nothing is downloaded.
"""

from __future__ import annotations

import functools
import gzip
import html
import itertools
from collections.abc import Iterable
from importlib import resources

import ftfy
import regex
import torch

VOCAB_PACKAGE, VOCAB_FILE = "open_clip", "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2
SOT, EOT = "<start_of_text>", "<end_of_text>"
_PIECES = regex.compile(
    r"<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
    regex.IGNORECASE)


def byte_alphabet() -> dict[int, str]:
    """Byte → character: printable Latin-1 bytes map to themselves, the others to
    U+0100 onwards (in byte order), so BPE never sees whitespace or control bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    for extra, b in enumerate(b for b in range(256) if b not in mapping):
        mapping[b] = chr(256 + extra)
    return mapping


def clean(text: str) -> str:
    """CLIP's text normalization."""
    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


class Tokenizer:
    """Callable: list of texts → LongTensor (n, context_length)."""

    def __init__(self, context_length: int = 77) -> None:
        self.context_length = context_length
        self.bytes_to_chars = byte_alphabet()
        merges = read_merges()
        alphabet = list(self.bytes_to_chars.values())
        vocab = [*alphabet, *(c + "</w>" for c in alphabet), *("".join(m) for m in merges),
                 SOT, EOT]
        self.encoder = {piece: i for i, piece in enumerate(vocab)}
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.sot_id, self.eot_id = self.encoder[SOT], self.encoder[EOT]
        self.vocab_size = len(vocab)
        self._bpe = functools.lru_cache(maxsize=200_000)(self._merge)

    def _merge(self, piece: str) -> tuple[str, ...]:
        """BPE of one piece: merge the lowest-ranked adjacent pair until none is ranked."""
        if piece in (SOT, EOT):
            return (piece,)
        word = [*piece[:-1], piece[-1] + "</w>"]
        while len(word) > 1:
            pairs = set(itertools.pairwise(word))
            best = min(pairs, key=lambda p: self.ranks.get(p, N_MERGES))
            if best not in self.ranks:
                break
            word = _merge_pair(word, best)
        return tuple(word)

    def encode(self, text: str) -> list[int]:
        """BPE ids of `text` (without SOT/EOT)."""
        ids = []
        for piece in _PIECES.findall(clean(text)):
            chars = "".join(self.bytes_to_chars[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[token] for token in self._bpe(chars))
        return ids

    def __call__(self, texts: str | Iterable[str]) -> torch.Tensor:
        """Token ids, shape (n, context_length): SOT, ids, EOT, zero padding."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot_id
            out[row, : len(ids)] = torch.tensor(ids)
        return out


def _merge_pair(word: list[str], pair: tuple[str, str]) -> list[str]:
    """`word` with every occurrence of the adjacent `pair` joined, left to right."""
    merged, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            merged.append(word[i] + word[i + 1])
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return merged


@functools.cache
def read_merges() -> list[tuple[str, str]]:
    """The BPE merge rules, highest priority first."""
    path = resources.files(VOCAB_PACKAGE) / VOCAB_FILE
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")[1: N_MERGES + 1]  # line 0 is a version header
    return [tuple(line.split()) for line in lines]  # type: ignore[misc]
