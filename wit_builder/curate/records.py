"""WARC/WAT files → pages with image references, robust to damaged input.

Any WARC file (plain or gzip, one gzip member per record as Common Crawl writes them, or
one big member) is read with fastwarc. Each record is dispatched on its type:

* ``response`` records with an HTML payload are parsed as HTML (`html`);
* ``metadata`` records with a JSON payload are parsed as WAT (`wat`); so WARC and WAT files
  need no flag, and a file may even mix both.

Damage never loses the rest of a file. A record whose payload is shorter than its declared
length (the file ends inside it: a truncated gzip stream) is counted as
``records_truncated`` and what was read of it is still parsed, as a browser would render a
page cut off mid-transfer; the images before the cut are real pairs. If decompression
fails in the middle of a file (a corrupt gzip member), reading restarts at the first
record, skips the records already seen, walks the gzip members one by one with zlib,
counts and skips the corrupt ones and goes on with the rest.

A file that does not start with a WARC record header (``WARC/1.x``, after gunzip when it
is gzip) is not read at all and counted once as ``not_a_warc``.

Counters (per file) use these keys: ``records`` (records read), ``html_pages``,
``wat_pages``, ``records_truncated``, ``not_a_warc``, and ``record_*`` for records dropped
(corrupt gzip, undecodable payload, bad WAT JSON).
"""

from __future__ import annotations

import io
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from fastwarc import ArchiveIterator, WarcRecord, WarcRecordType

from wit_builder.curate import html, wat
from wit_builder.curate.html import ImageRef
from wit_builder.inputs import open_input

RECORD_TYPES = WarcRecordType.response | WarcRecordType.metadata
HTML_TYPES = ("text/html", "application/xhtml+xml")
GZIP_MAGIC = b"\x1f\x8b\x08"
READ_CHUNK = 1 << 20
WARC_MAGIC = b"WARC/"


@dataclass(frozen=True)
class Page:
    """A crawled page's URL, its `<base href>` and the images it references."""

    url: str | None
    base: str | None
    images: list[ImageRef]


class RecordError(ValueError):
    """A record that cannot be used; `reason` is its drop reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _iterator(stream: BinaryIO | io.BytesIO) -> ArchiveIterator:
    # quirks_mode accepts LF-only HTTP headers (ClueWeb and other older crawls); payload
    # decoding is done in `payload` so that truncation can be checked on the raw bytes.
    return ArchiveIterator(stream, record_types=RECORD_TYPES, parse_http=True,
                           quirks_mode=True, auto_decode="none", fsspec_args=False)


def dechunk(body: bytes) -> bytes:
    """Undo HTTP chunked transfer encoding; raises ValueError on malformed framing."""
    out, pos = [], 0
    while True:
        line_end = body.find(b"\n", pos)
        if line_end < 0:
            raise ValueError("chunk size line missing")
        size = int(body[pos:line_end].split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return b"".join(out)
        out.append(body[line_end + 1:line_end + 1 + size])
        pos = line_end + 1 + size
        pos = body.find(b"\n", pos) + 1 or len(body)


def payload(record: WarcRecord, counts: Counter[str]) -> bytes:
    """The record's payload, transfer- and content-decoded; `RecordError` if unusable."""
    body = record.reader.read()
    if len(body) < record.content_length:
        counts["records_truncated"] += 1
    headers = record.http_headers if record.is_http else None
    try:
        if headers and "chunked" in (headers.get("Transfer-Encoding") or "").lower():
            body = dechunk(body)
        # Crawlers usually store bodies decoded even when the header still says gzip
        # (Common Crawl renames it; ClueWeb does not), so only decode real gzip data.
        if body.startswith(GZIP_MAGIC):
            body = zlib.decompress(body, wbits=47)
    except (ValueError, zlib.error):
        raise RecordError("record_undecodable") from None
    return body


def page_of(record: WarcRecord, counts: Counter[str]) -> Page | None:
    """The page a record describes, or None for records that hold no page."""
    if record.record_type == WarcRecordType.response:
        ctype = (record.http_content_type or "").lower() if record.is_http else ""
        if ctype not in HTML_TYPES:
            return None
        body = payload(record, counts)
        if not html.may_have_images(body):  # skip the parse of image-less pages
            return Page(record.headers.get("WARC-Target-URI"), None, [])
        base, images = html.image_refs(html.parse_input(body, record.http_charset))
        return Page(record.headers.get("WARC-Target-URI"), base, images)
    if (record.headers.get("Content-Type") or "").startswith("application/json"):
        try:
            url, base, images = wat.parse_wat(payload(record, counts))
        except wat.WatFormatError:
            raise RecordError("record_bad_wat_json") from None
        return Page(url or record.headers.get("WARC-Target-URI"), base, images)
    return None


def _count_page(record: WarcRecord, counts: Counter[str]) -> Page | None:
    """`page_of` with counting; OSError (unreadable data) propagates before any count."""
    try:
        page = page_of(record, counts)
    except RecordError as e:
        counts[e.reason] += 1
        page = None
    counts["records"] += 1
    if page is not None:
        counts["wat_pages" if record.record_type == WarcRecordType.metadata
               else "html_pages"] += 1
    return page


def is_warc(path: str) -> bool:
    """True if the file (gunzipped first when it is gzip) starts with a WARC header."""
    with open_input(path) as fh:
        head = fh.read(READ_CHUNK // 16)
    if head.startswith(GZIP_MAGIC):
        try:
            head = zlib.decompressobj(wbits=31).decompress(head, len(WARC_MAGIC))
        except zlib.error:
            return False
    return head.startswith(WARC_MAGIC)


def iter_pages(path: str, counts: Counter[str]) -> Iterator[Page]:
    """Pages of one WARC/WAT file (see module docstring); updates `counts`."""
    if not is_warc(path):
        counts["not_a_warc"] += 1
        return
    try:
        with open_input(path) as fh:
            for record in _iterator(fh):
                page = _count_page(record, counts)
                if page is not None:
                    yield page
        return
    except FileNotFoundError:
        raise
    except OSError:
        pass  # unreadable data: below, either walk the gzip members or stop here
    if not _is_gzip(path):  # plain WARC: fastwarc resyncs itself; an error here is final
        counts["record_corrupt"] += 1
        return
    yield from _pages_after_corruption(path, counts["records"], counts)


def _is_gzip(path: str) -> bool:
    with open_input(path) as fh:
        return fh.read(len(GZIP_MAGIC)) == GZIP_MAGIC


def gzip_members(stream: BinaryIO) -> Iterator[bytes | None]:
    """Decompressed gzip members of `stream`; None for each corrupt or truncated member.

    After a corrupt member, reading resumes at the next gzip header found in the stream.
    """
    buf = stream.read(READ_CHUNK)
    while buf:
        decomp, out, fed = zlib.decompressobj(wbits=31), [], 0
        try:
            while not decomp.eof:
                if fed == len(buf):
                    more = stream.read(READ_CHUNK)
                    if not more:
                        yield None  # stream ends inside this member: truncated
                        return
                    buf += more
                out.append(decomp.decompress(buf[fed:]))
                fed = len(buf)
        except zlib.error:
            yield None
            nxt = buf.find(GZIP_MAGIC, 1)
            buf = buf[nxt:] if nxt > 0 else stream.read(READ_CHUNK)
            continue
        yield b"".join(out)
        buf = decomp.unused_data


def _pages_after_corruption(path: str, skip: int, counts: Counter[str]) -> Iterator[Page]:
    """Re-read `path` member by member, skipping the first `skip` (already counted) records."""
    with open_input(path) as fh:
        for member in gzip_members(fh):
            if member is None:
                counts["record_corrupt_gzip"] += 1
                continue
            try:
                for record in _iterator(io.BytesIO(member)):
                    if skip:
                        skip -= 1
                        continue
                    page = _count_page(record, counts)
                    if page is not None:
                        yield page
            except OSError:
                counts["record_corrupt"] += 1
