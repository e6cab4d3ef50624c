"""URL and alt-text hygiene for extracted pairs, and the pair uid.

Each check returns either the cleaned value or a `Drop` with a short snake_case reason, so
the caller counts every rejected pair by reason and nothing disappears silently.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin, urlsplit

# C0/C1 control characters (mojibake, stray bytes) are turned into spaces in texts.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
# HTML strips ASCII whitespace around URLs and removes tabs/newlines inside them.
_URL_STRIP = str.maketrans("", "", "\t\n\r")


@dataclass(frozen=True)
class Drop:
    """A rejected value and why."""

    reason: str


def pair_uid(url: str, text: str) -> str:
    """First 24 hex digits of sha224(url + TAB + text): the pair's identity everywhere."""
    return hashlib.sha224(f"{url}\t{text}".encode()).hexdigest()[:24]


def page_base(page_url: str | None, base_href: str | None) -> str | None:
    """The URL relative srcs resolve against: `<base href>` (itself resolved) or the page."""
    if base_href and base_href.strip():
        return urljoin(page_url or "", base_href.strip().translate(_URL_STRIP))
    return page_url


def resolve_url(src: str, base: str | None, max_chars: int) -> str | Drop:
    """Absolute http(s) URL of an image src, fragment removed, or why it is unusable.

    Relative (``img/a.jpg``, ``../a.jpg``, ``/a.jpg``) and protocol-relative
    (``//cdn/a.jpg``) srcs are resolved against `base` (see `page_base`).
    """
    src = src.strip().translate(_URL_STRIP)
    if not src:
        return Drop("url_empty")
    scheme = src.split(":", 1)[0].lower() if ":" in src else ""
    if scheme in ("data", "javascript"):
        return Drop(f"url_{scheme}")
    # Absolute srcs (most of them) need no join, which is the slow part of urllib here.
    joined = src if scheme in ("http", "https") else urljoin(base or "", src)
    url = urldefrag(joined).url if "#" in joined else joined
    parts = urlsplit(url)
    if not parts.scheme:
        return Drop("url_unresolvable")
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return Drop("url_not_http")
    if len(url) > max_chars:
        return Drop("url_too_long")
    return url


def clean_text(text: str | None, min_chars: int, max_chars: int) -> str | Drop:
    """Text with control characters and runs of any Unicode space → one space, or why not."""
    text = " ".join(_CONTROLS.sub(" ", text or "").split())
    if not text:
        return Drop("text_empty")
    if "\ufffd" in text:  # bytes the declared charset could not decode
        return Drop("text_bad_encoding")
    if len(text) < min_chars:
        return Drop("text_too_short")
    if len(text) > max_chars:
        return Drop("text_too_long")
    return text
