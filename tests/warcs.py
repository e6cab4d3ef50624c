"""Writers of WARC test files: real records re-packed, and WAT records in the real schema.

WARC/WAT framing is written by hand here (it is a few header lines), so the reader under
test (fastwarc) is not also the writer.
"""

from __future__ import annotations

import gzip
import io
import json
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
