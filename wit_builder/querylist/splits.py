"""Dump files → byte-range splits → records, decompressed in the Python workers.

Why not Spark's text reader: it decompresses bzip2 with Hadoop's Java codec, which costs
about as much as the whole Python scan of the text. Here each task decompresses its own
byte range with the C bzip2 library (Python's `bz2`) and splits the text into records
itself, so decompression runs once, in the task that scans the text.

Splits. A file is cut into `split_mb` byte ranges. Wikipedia's
``pages-articles-multistream`` dumps are concatenated bzip2 streams of 100 pages each, so
a range can start at the first stream that begins inside it: a stream starts with the
bytes ``BZh`` + level + the block magic ``1AY&SY``, byte-aligned (blocks inside a stream
are not byte-aligned, which is why only stream starts can be found this way). A task
reads the streams that start in its range, in order (each stream's end, hence the next
one's start, is known exactly once decompressed). A single-stream bzip2 file, a gzip file
or plain XML is read whole by the task that holds its byte 0; the other ranges of such a
file find no stream start and yield nothing. (The job sends a single-stream bzip2 file
longer than one range to Spark's own reader instead, see `single_stream`.)

Records are the text between ``</page>`` tags, as Spark's ``lineSep`` reader produced
them. A page never spans two streams in Wikipedia's dumps, but a hand-made multistream
file may cut one: a task then reads on past its range until that page's ``</page>``,
and the next task drops the leading fragment (text before its first ``</page>`` without a
``<page>``), so every page is read exactly once.
"""

from __future__ import annotations

import bz2
import codecs
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from wit_builder.inputs import open_input

PAGE_END = "</page>"
PAGE_START = "<page>"
STREAM_START = re.compile(rb"BZh[1-9]1AY&SY")
STREAM_START_LEN = 10
CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Split:
    """Bytes [start, end) of `path`; the streams that start there are this task's."""

    path: str
    start: int
    end: int


def plan_splits(files: list[tuple[str, int]], step: int) -> list[Split]:
    """Splits of (path, size) files, `step` bytes each (an empty file gets one split so
    that it is still seen, and reported, by the job)."""
    return [Split(path, start, min(start + step, size))
            for path, size in files for start in range(0, max(size, 1), step)]


def first_stream(fh: BinaryIO, start: int, end: int) -> int | None:
    """Offset of the first bzip2 stream start in [start, end), or None."""
    fh.seek(start)
    limit = end + STREAM_START_LEN - 1  # a start just before `end` ends past it
    pos, tail = start, b""
    while pos < limit and (chunk := fh.read(min(CHUNK, limit - pos))):
        buf = tail + chunk
        found = STREAM_START.search(buf)
        if found:
            offset = pos - len(tail) + found.start()
            return offset if offset < end else None
        tail, pos = buf[-(STREAM_START_LEN - 1):], pos + len(chunk)
    return None


# How far past a split boundary to look for a stream start when planning: Wikipedia's
# streams of 100 pages are well under 1 MiB compressed.
PROBE_BYTES = 4 << 20


def single_stream(path: str, size: int, step: int) -> bool:
    """True for a bzip2 file longer than one split with no stream start in the probe
    after the first split boundary: one task would decompress all of it, so it is better
    read by Spark's Hadoop codec, which splits bzip2 at its (not byte-aligned) blocks."""
    if size <= step:
        return False
    with open_input(path) as fh:
        if not fh.read(3).startswith(b"BZh"):
            return False
        return first_stream(fh, step, min(size, step + PROBE_BYTES)) is None


def bz2_streams(fh: BinaryIO, first: int) -> Iterator[tuple[int, bytes]]:
    """(start offset of its stream, decompressed bytes) from the stream at `first` on, to
    the end of the file; raises OSError/EOFError on corrupt or cut data."""
    fh.seek(first)
    stream_start, consumed = first, first
    decomp = bz2.BZ2Decompressor()
    data = fh.read(CHUNK)
    while data:
        out = decomp.decompress(data)
        if out:
            yield stream_start, out
        if decomp.eof:
            rest = decomp.unused_data
            consumed += len(data) - len(rest)
            stream_start, decomp = consumed, bz2.BZ2Decompressor()
            data = rest or fh.read(CHUNK)
            continue
        consumed += len(data)
        data = fh.read(CHUNK)
    if not decomp.eof and consumed > stream_start:  # (a new, unfed decompressor is fine)
        raise EOFError("bzip2 stream cut short")


def whole_file(fh: BinaryIO, gzip: bool) -> Iterator[tuple[int, bytes]]:
    """(0, bytes) chunks of a plain or gzip file, decompressed."""
    fh.seek(0)
    decomp = zlib.decompressobj(wbits=47) if gzip else None
    while chunk := fh.read(CHUNK):
        yield 0, decomp.decompress(chunk) if decomp else chunk


def split_bytes(fh: BinaryIO, split: Split) -> Iterator[tuple[int, bytes]]:
    """(stream start, decompressed bytes) of this split's data and what follows it."""
    head = fh.read(3)
    if head.startswith(b"BZh"):
        first = first_stream(fh, split.start, split.end)
        if first is not None:
            yield from bz2_streams(fh, first)
    elif split.start == 0:
        yield from whole_file(fh, head.startswith(GZIP_MAGIC))


def split_records(split: Split, counts: dict[str, int]) -> Iterator[str]:
    """Records (text up to each ``</page>``, tag excluded, then the text after the last
    one) of a split; see the module docstring for ranges and pages cut across streams.

    Unreadable compressed data ends the split and sets ``counts["corrupt"]``.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    buf, leading = "", split.start > 0
    with open_input(split.path) as fh:
        try:
            for stream_start, data in split_bytes(fh, split):
                past = stream_start >= split.end  # this stream is the next split's
                if past and PAGE_START not in buf:
                    break
                parts = (buf + decoder.decode(data)).split(PAGE_END)
                buf = parts.pop()
                if past and parts:  # the page left open is complete: the rest is not ours
                    yield parts[0]
                    buf = ""
                    break
                if leading and parts:
                    leading = False
                    if PAGE_START not in parts[0]:  # the end of the previous split's page
                        parts.pop(0)
                yield from parts
        except (OSError, EOFError, zlib.error):
            counts["corrupt"] = counts.get("corrupt", 0) + 1
    buf += decoder.decode(b"", final=True)
    if buf and not leading:
        yield buf
