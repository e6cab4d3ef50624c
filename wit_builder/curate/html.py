"""HTML pages → image references (src, alt, title) with the page's `<base href>`.

Bytes are decoded with the page's declared charset, looked up in the order a browser uses:
byte-order mark, the HTTP ``Content-Type`` charset, then a ``<meta charset>`` or
``<meta http-equiv="Content-Type">`` in the first bytes of the document; UTF-8 otherwise.
Undecodable bytes become U+FFFD rather than failing the page. Parsing is done by lexbor
(through selectolax), which recovers from broken markup the way browsers do, so a page cut
off mid-document still yields the images before the cut.
"""

from __future__ import annotations

import codecs
import re
from typing import NamedTuple

from selectolax.lexbor import LexborHTMLParser

# How far into the document to look for a <meta> charset (the HTML spec prescans 1024
# bytes; real pages often put long scripts first, so look further).
META_PRESCAN_BYTES = 4096
_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
         (codecs.BOM_UTF16_BE, "utf-16-be"))
# Labels that browsers decode as another encoding (WHATWG Encoding standard).
_BROWSER_ALIASES = {"iso-8859-1": "cp1252", "latin-1": "cp1252", "ascii": "cp1252",
                    "us-ascii": "cp1252", "x-sjis": "shift_jis", "gb2312": "gb18030",
                    "gbk": "gb18030"}


class ImageRef(NamedTuple):
    """One `<img>` (or WAT ``IMG@/src`` link) as written in the page: src may be relative.

    A named tuple, not a dataclass: pages hold tens of images each and a frozen
    dataclass takes twice as long to build."""

    src: str
    alt: str | None
    title: str | None


def codec_name(label: str | None) -> str | None:
    """Python codec for a charset label, or None if Python has no text codec by that name
    (a page may name a bytes-to-bytes transform such as base64 or zlib, or a codec that
    cannot decode at all, such as idna: those labels are ignored, as browsers ignore
    labels they do not know)."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _BROWSER_ALIASES.get(label, label)
    try:
        name = codecs.lookup(label).name
        b"<html>".decode(name, errors="replace")
    except (LookupError, UnicodeError):
        return None
    return name


def sniff_charset(body: bytes, header_charset: str | None) -> str:
    """The codec to decode `body` with (see module docstring for the order)."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name
    found = codec_name(header_charset)
    if found:
        return found
    match = _META_CHARSET.search(body[:META_PRESCAN_BYTES])
    found = codec_name(match.group(1).decode("ascii")) if match else None
    # A page cannot really be UTF-16 if its <meta> was readable as ASCII.
    if found and not found.startswith("utf-16"):
        return found
    return "utf-8"


def _decode(body: bytes, codec: str) -> str:
    try:
        return body.decode(codec, errors="replace")
    except UnicodeError:  # a codec that fails whatever the handler (punycode on non-ASCII)
        return body.decode("utf-8", errors="replace")


def decode_html(body: bytes, header_charset: str | None = None) -> str:
    """Decode `body` with its declared charset, replacing undecodable bytes."""
    return _decode(body, sniff_charset(body, header_charset))


def parse_input(body: bytes, header_charset: str | None = None) -> bytes:
    """The UTF-8 bytes `image_refs` should parse: `body` itself when its charset is UTF-8,
    else `decode_html(body)` encoded as UTF-8.

    lexbor reads bytes as UTF-8, and selectolax decodes every attribute it returns with
    U+FFFD for bytes that are not UTF-8: the same text as decoding the page first (a test
    checks this on pages with invalid bytes put everywhere), without a copy of every page.
    Other charsets are encoded here rather than by selectolax, whose encoding of text
    input (with errors="ignore") takes 1.6x longer than the parse itself.
    """
    codec = sniff_charset(body, header_charset)
    if codec == "utf-8":
        return body
    text = _decode(body, codec)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (unicode-escape makes them): dropped,
        return text.encode("utf-8", errors="ignore")  # as selectolax drops them from text


_IMG_TAG = re.compile(rb"<img", re.IGNORECASE)
# "<img" in UTF-16 text has NUL bytes in between: such pages are always parsed.
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def may_have_images(body: bytes) -> bool:
    """False only if `body` certainly has no `<img` tag (a cheap byte search)."""
    return body.startswith(_UTF16_BOMS) or _IMG_TAG.search(body) is not None


# One walk of the tree finds both; matches come in document order.
_BASE_OR_IMAGE = "base[href], img[src]"


def image_refs(html: str | bytes) -> tuple[str | None, list[ImageRef]]:
    """The document's first `<base href>` (or None) and its `<img>` elements that have a
    src. `html` is text, or UTF-8 bytes (see `parse_input`)."""
    base, images = None, []
    for node in LexborHTMLParser(html).css(_BASE_OR_IMAGE):
        attrs = node.attributes
        if node.tag == "img":
            images.append(ImageRef(attrs.get("src") or "", attrs.get("alt"), attrs.get("title")))
        elif base is None:
            base = attrs.get("href")
    return base, images
