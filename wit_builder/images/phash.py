"""64-bit perceptual hashes (imagehash's pHash) and the Hamming distance between them.

pHash reads a 32×32 grey version of the image, so JPEGs are decoded at a reduced scale
first (Pillow's ``draft``: the JPEG decoder scales by 1/2–1/8 for free), which makes
hashing a 256 px image several times faster with the same hash on real photos. Hashes
are stored as signed int64 (Arrow/Spark have no uint64); the bits are the same.
"""

from __future__ import annotations

import io

import imagehash
import numpy as np
from PIL import Image

HASH_SIZE = 8
DRAFT_SIZE = (64, 64)


def phash64(data: bytes) -> tuple[int, int, int] | None:
    """(pHash as int64, width, height) of encoded image bytes; None if they do not decode."""
    try:
        image = Image.open(io.BytesIO(data))
        size = image.size
        if image.format == "JPEG":
            image.draft("L", DRAFT_SIZE)
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return to_int64(imagehash.phash(image, hash_size=HASH_SIZE)), size[0], size[1]


def to_int64(value: imagehash.ImageHash) -> int:
    """The hash's 64 bits (row-major, first bit most significant) as a signed int64."""
    bits = np.packbits(value.hash.flatten().astype(np.uint8))
    return int(np.frombuffer(bits.tobytes(), dtype=">i8")[0])


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two int64 hashes."""
    return ((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()
