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

import orjson

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


def load_json(payload: bytes) -> Any:
    """The JSON document in `payload`: orjson (several times faster), and the standard
    library for what orjson refuses but JSON allows (NaN, lone surrogate escapes), so
    exactly the documents `json.loads` accepts are accepted."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WatFormatError(f"not JSON: {e}") from None


def image_links(links: Any) -> list[ImageRef]:
    """The ``IMG@/src`` items of a ``Links`` list that have a string ``url``."""
    if not isinstance(links, list):
        return []
    try:  # this runs for every link of every page: no per-link type test when all are
        found = [link for link in links if link.get("path") == IMG_PATH]  # objects
    except AttributeError:  # an item that is not a JSON object
        found = [link for link in links
                 if isinstance(link, dict) and link.get("path") == IMG_PATH]
    return [ImageRef(link["url"], _text(link.get("alt")), _text(link.get("title")))
            for link in found if isinstance(link.get("url"), str)]


def parse_wat(payload: bytes) -> tuple[str | None, str | None, list[ImageRef]]:
    """(page URL, base href, images) of one WAT JSON payload.

    Raises `WatFormatError` if the payload is not JSON with an ``Envelope``.
    """
    doc = load_json(payload)
    envelope = _get(doc, "Envelope")
    if not isinstance(envelope, dict):
        raise WatFormatError("no Envelope")
    page_url = _text(_get(envelope, "WARC-Header-Metadata", "WARC-Target-URI"))
    html = _get(envelope, "Payload-Metadata", "HTTP-Response-Metadata", "HTML-Metadata")
    base = _text(_get(html, "Head", "Base"))
    # Most links are anchors; a page whose JSON never names an image path (written
    # "IMG@/src" or "IMG@\/src") needs no walk over its links.
    images = image_links(_get(html, "Links")) if b"IMG@" in payload else []
    return page_url, base, images
