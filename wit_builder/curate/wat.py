"""Common Crawl WAT metadata records → image references.

A WAT record's JSON holds the links the crawler parsed out of an HTML response under
``Envelope → Payload-Metadata → HTTP-Response-Metadata → HTML-Metadata → Links``; images
are the items whose ``path`` is ``"IMG@/src"``, with ``url`` and, when the page had them,
``alt`` and ``title``. The page's `<base href>` is ``HTML-Metadata → Head → Base`` and its
URL the envelope's ``WARC-Target-URI``. WAT records of requests or non-HTML responses have
no ``HTML-Metadata`` and yield no image.
"""

from __future__ import annotations

import json
from typing import Any

from wit_builder.curate.html import ImageRef

IMG_PATH = "IMG@/src"


class WatFormatError(ValueError):
    """The payload is not WAT JSON (bad JSON or no ``Envelope``)."""


def _get(obj: Any, *keys: str) -> Any:
    """Nested dict lookup that returns None as soon as a level is missing or not a dict."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_wat(payload: bytes) -> tuple[str | None, str | None, list[ImageRef]]:
    """(page URL, base href, images) of one WAT JSON payload.

    Raises `WatFormatError` if the payload is not JSON with an ``Envelope``.
    """
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WatFormatError(f"not JSON: {e}") from None
    envelope = _get(doc, "Envelope")
    if not isinstance(envelope, dict):
        raise WatFormatError("no Envelope")
    page_url = _text(_get(envelope, "WARC-Header-Metadata", "WARC-Target-URI"))
    html = _get(envelope, "Payload-Metadata", "HTTP-Response-Metadata", "HTML-Metadata")
    base = _text(_get(html, "Head", "Base"))
    links = _get(html, "Links")
    images = [
        ImageRef(link["url"], _text(link.get("alt")), _text(link.get("title")))
        for link in (links if isinstance(links, list) else [])
        if isinstance(link, dict) and link.get("path") == IMG_PATH
        and isinstance(link.get("url"), str)
    ]
    return page_url, base, images
