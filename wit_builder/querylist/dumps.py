"""Cheap checks of a dump file before Spark reads it.

A bz2 file starts with ``BZh1``..``BZh9`` and its last stream ends with the 48-bit
end-of-stream magic 0x177245385090, then a 32-bit CRC and 0–7 bits of padding: so the
last 11 bytes hold the magic at one of 8 bit offsets. A file cut anywhere lacks it (a
random match has odds of about 2^-45). Checking head and tail costs two small reads even
for a 20 GB dump, and turns what would fail deep inside a Spark task (with a Java stack
trace) into a one-line error naming the file.
"""

from __future__ import annotations

import re
from pathlib import Path

from wit_builder.errors import InputError

BZ2_HEAD = re.compile(rb"BZh[1-9]")
EOS_MAGIC = 0x177245385090
TAIL_BYTES = 11


def has_bz2_end(tail: bytes) -> bool:
    """True if `tail` (a file's last bytes) holds the bz2 end-of-stream magic followed by
    a CRC and at most 7 padding bits."""
    bits = int.from_bytes(tail, "big")
    width = len(tail) * 8
    for pad in range(8):
        shift = pad + 32  # padding, then the 32-bit combined CRC after the magic
        if width >= 48 + shift and (bits >> shift) & ((1 << 48) - 1) == EOS_MAGIC:
            return True
    return False


def check_bz2(path: str) -> None:
    """`InputError` if a local ``.bz2`` file is not bzip2 or is cut short."""
    file = Path(path)
    if file.suffix != ".bz2" or not file.is_file():
        return
    with file.open("rb") as fh:
        head = fh.read(4)
        if not BZ2_HEAD.fullmatch(head):
            raise InputError(f"wiki dump {path} is not a bz2 file")
        fh.seek(max(0, file.stat().st_size - TAIL_BYTES))
        if not has_bz2_end(fh.read()):
            raise InputError(f"wiki dump {path} is truncated (its bz2 stream has no end "
                             "marker): download it again")
