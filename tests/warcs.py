"""Writers of WARC test files: real records re-packed, and WAT records in the real schema.

WARC/WAT framing is written by hand here (it is a few header lines), so the reader under
test (fastwarc) is not also the writer.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import re
import uuid
from pathlib import Path

from fastwarc import ArchiveIterator, WarcRecordType
from selectolax.lexbor import LexborHTMLParser

from tests.builders import FIXTURES

WARC_DIR = FIXTURES / "warc"
CC_EXCERPT = WARC_DIR / "cc-main-2020-34-excerpt.warc.gz"
CLIPPED = WARC_DIR / "clipped-page.warc.gz"
CLUEWEB = WARC_DIR / "clueweb-euc-jp.warc.gz"
WARCIO = WARC_DIR / "warcio-example.warc"
WHIRLWIND_WAT = WARC_DIR / "whirlwind.warc.wat.gz"


def raw_records(path: Path) -> list[bytes]:
    """The uncompressed bytes of each record of `path`, as stored."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    starts = [r.stream_pos for r in ArchiveIterator(io.BytesIO(data), parse_http=False,
                                                    record_types=WarcRecordType.any_type)]
    return [data[a:b] for a, b in zip(starts, [*starts[1:], len(data)], strict=True)]


def per_record_gzip(records: list[bytes]) -> bytes:
    """Records as one gzip member each (the Common Crawl layout)."""
    return b"".join(gzip.compress(r) for r in records)


def warc_record(warc_type: str, target_uri: str, content_type: str, block: bytes) -> bytes:
    """One WARC/1.0 record."""
    headers = [
        "WARC/1.0", f"WARC-Type: {warc_type}", f"WARC-Target-URI: {target_uri}",
        "WARC-Date: 2024-05-18T01:58:10Z", f"WARC-Record-ID: <urn:uuid:{uuid.uuid4()}>",
        f"Content-Type: {content_type}", f"Content-Length: {len(block)}",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + block + b"\r\n\r\n"


def whirlwind_envelope() -> dict:
    """The Envelope of the real Common Crawl WAT record in the whirlwind fixture."""
    for record in ArchiveIterator(str(WHIRLWIND_WAT), record_types=WarcRecordType.metadata):
        return json.loads(record.reader.read())
    raise AssertionError("no WAT record in the whirlwind fixture")


def wat_response(page_url: str, base: str | None, links: list[dict]) -> bytes:
    """A WAT metadata record for an HTML response, in Common Crawl's schema.

    The container/header parts are those of the real whirlwind record; the payload part is
    the layout CC writes for HTML responses (HTTP-Response-Metadata → HTML-Metadata).
    """
    doc = whirlwind_envelope()
    env = doc["Envelope"]
    env["WARC-Header-Metadata"].update({"WARC-Type": "response", "WARC-Target-URI": page_url,
                                        "Content-Type": "application/http; msgtype=response"})
    head = {"Title": "test page", **({"Base": base} if base else {})}
    env["Payload-Metadata"] = {
        "Actual-Content-Type": "application/http; msgtype=response",
        "HTTP-Response-Metadata": {
            "Response-Message": {"Status": "200", "Version": "HTTP/1.1", "Reason": "OK"},
            "Headers": {"Content-Type": "text/html; charset=UTF-8"},
            "HTML-Metadata": {"Head": head, "Links": links},
        },
    }
    body = json.dumps(doc).encode()
    return warc_record("metadata", page_url, "application/json", body)


def img_links(html: str) -> list[dict]:
    """WAT ``Links`` items for every <img src> of `html` (with alt/title when present),
    plus the page's <a href> links, which must be ignored."""
    tree = LexborHTMLParser(html)
    links = [{"path": "A@/href", "url": a.attributes["href"], "text": "x"}
             for a in tree.css("a[href]")]
    for img in tree.css("img[src]"):
        item = {"path": "IMG@/src", "url": img.attributes["src"]}
        item.update({k: img.attributes[k] for k in ("alt", "title") if k in img.attributes})
        links.append(item)
    return links


LINK_PATHS = {"a": ("A@/href", "href"), "img": ("IMG@/src", "src"),
              "link": ("LINK@/href", "href"), "script": ("SCRIPT@/src", "src")}


def page_links(text: str) -> tuple[str | None, list[dict]]:
    """A page's ``<base href>`` and its WAT ``Links`` in document order, as Common Crawl's
    WAT writer lists them: ``A@/href`` (with the anchor text), ``IMG@/src`` (with alt and
    title when present), ``LINK@/href`` (with rel) and ``SCRIPT@/src``."""
    tree = LexborHTMLParser(text)
    base = tree.css_first("base[href]")
    links = []
    for node in tree.css("a[href], img[src], link[href], script[src]"):
        path, attr = LINK_PATHS[node.tag]
        item = {"path": path, "url": node.attributes[attr]}
        if node.tag == "a":
            item["text"] = node.text(strip=True)
        extra = {"img": ("alt", "title"), "link": ("rel",)}.get(node.tag, ())
        item.update({k: node.attributes[k] for k in extra if node.attributes.get(k)
                     is not None})
        links.append(item)
    return (base.attributes.get("href") if base else None), links


_CONTENT_LENGTH = re.compile(rb"(?im)^Content-Length:[ \t]*(\d+)")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_ALT_START = re.compile(rb"""(\b(?:alt|title)=["'])(?=[^"'])""", re.IGNORECASE)
_IMG_EXT_END = re.compile(rb"""(\.(?:jpe?g|png|gif))(["'])""", re.IGNORECASE)


def with_distinct_alts(record: bytes, tag: str) -> bytes:
    """A raw WARC record whose HTML alt and title attributes start with `tag` and a running
    number, and whose image URLs end with them (Content-Length updated): every text and
    URL is distinct, as in a real crawl, even across copies of the same page."""
    end = _HEADER_END.search(record)
    head, rest = record[:end.end()], record[end.end():]
    length = int(_CONTENT_LENGTH.search(head).group(1))
    block, trailer = rest[:length], rest[length:]
    alts, urls = itertools.count(), itertools.count()
    # Each occurrence gets its own number (pages repeat an image and its alt many times);
    # empty alts stay empty.
    block = _ALT_START.sub(lambda m: m[1] + f"{tag}.{next(alts)} ".encode(), block)
    block = _IMG_EXT_END.sub(lambda m: m[1] + f"?{tag}.{next(urls)}".encode() + m[2], block)
    head = _CONTENT_LENGTH.sub(b"Content-Length: %d" % len(block), head, count=1)
    return head + block + trailer


def wat_records(warc: bytes) -> list[bytes]:
    """A WAT metadata record for every HTML response in the (uncompressed) `warc`, in
    Common Crawl's layout (see `wat_response`)."""
    from wit_builder.curate.html import decode_html

    out = []
    for record in ArchiveIterator(io.BytesIO(warc), record_types=WarcRecordType.response,
                                  parse_http=True, quirks_mode=True, auto_decode="none"):
        ctype = (record.http_content_type or "").lower() if record.is_http else ""
        if ctype not in ("text/html", "application/xhtml+xml"):
            continue
        base, links = page_links(decode_html(record.reader.read(), record.http_charset))
        out.append(wat_response(record.headers.get("WARC-Target-URI"), base, links))
    return out
