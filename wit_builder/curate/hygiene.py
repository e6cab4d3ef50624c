"""URL and alt-text hygiene for extracted pairs, and the pair uid.

Each check returns either the cleaned value or a `Drop` with a short snake_case reason, so
the caller counts every rejected pair by reason and nothing disappears silently.
"""

from __future__ import annotations

import functools
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
    """The URL relative srcs resolve against: `<base href>` (itself resolved) or the page.

    A `<base href>` urllib cannot join (a malformed IPv6 host...) is ignored, as browsers
    ignore an invalid base.
    """
    if base_href and base_href.strip():
        try:
            return urljoin(page_url or "", base_href.strip().translate(_URL_STRIP))
        except ValueError:
            return page_url
    return page_url


# Characters after which urllib's netloc ends; an absolute URL whose netloc would be empty
# ("http:///a.jpg") is not an image URL.
_NETLOC_END = "/?#"


def _plain_absolute(src: str) -> bool:
    """True if urllib would split `src` into an http(s) scheme and a non-empty netloc
    without validating anything: an ASCII URL with no fragment and no IPv6 brackets.
    Most image srcs are such URLs; they need neither a join nor a split (`resolve_url`)."""
    head = src[:8].lower()
    rest = 7 if head.startswith("http://") else 8 if head == "https://" else 0
    return (rest > 0 and len(src) > rest and src[rest] not in _NETLOC_END
            and src.isascii() and "#" not in src and "[" not in src and "]" not in src)


@functools.lru_cache(maxsize=256)
def _simple_base(base: str | None) -> tuple[str, str, str] | None:
    """(scheme, origin, directory) of a base URL that relative srcs can be joined to by
    concatenation, e.g. ("http", "http://ex.com", "http://ex.com/a/") for
    "http://ex.com/a/p.html?q"; None when urllib must join (dot segments or empty
    segments in the path, which urljoin rewrites; path parameters; non-plain URLs).
    Cached: every image of a page shares its base."""
    if base is None or not _plain_absolute(base):
        return None
    host_start = base.index("//") + 2
    ends = [i for i in (base.find("/", host_start), base.find("?", host_start)) if i >= 0]
    cut = min(ends, default=len(base))
    scheme = base[:host_start - 3].lower()  # urljoin writes the scheme in lower case
    origin, path = scheme + base[host_start - 3:cut], base[cut:].split("?", 1)[0] or "/"
    if not path.startswith("/") or "/." in path or "//" in path or ";" in path:
        return None
    return scheme, origin, origin + path[:path.rfind("/") + 1]


def _simple_join(src: str, base: str | None) -> str | None:
    """urljoin(base, src) for the relative srcs that need no rewriting (plain ASCII path,
    no dot or empty segments, no scheme, query-only or fragment), else None."""
    parts = _simple_base(base)
    if (parts is None or not src.isascii() or src[0] == "?" or src.find("?") == len(src) - 1
            or any(c in src for c in ":#[]\\;") or "/." in "/" + src):
        return None  # (urljoin drops an empty query's "?")
    scheme, origin, directory = parts
    if src.startswith("//"):  # protocol-relative: a host of its own
        tail = src[2:]
        if not tail or tail[0] in _NETLOC_END or "//" in tail:
            return None
        return f"{scheme}:{src}"
    if "//" in src:
        return None
    return origin + src if src[0] == "/" else directory + src


def resolve_url(src: str, base: str | None, max_chars: int) -> str | Drop:
    """Absolute http(s) URL of an image src, fragment removed, or why it is unusable.

    Relative (``img/a.jpg``, ``../a.jpg``, ``/a.jpg``) and protocol-relative
    (``//cdn/a.jpg``) srcs are resolved against `base` (see `page_base`). A URL urllib
    rejects (a malformed IPv6 host, a host that changes under NFKC) is ``url_invalid``.
    """
    src = src.strip()
    if not src.isprintable():  # tab, newline or carriage return inside, maybe
        src = src.translate(_URL_STRIP)
    if not src:
        return Drop("url_empty")
    fast = src if _plain_absolute(src) else _simple_join(src, base)
    if fast is not None:
        return fast if len(fast) <= max_chars else Drop("url_too_long")
    scheme = src.split(":", 1)[0].lower() if ":" in src else ""
    if scheme in ("data", "javascript"):
        return Drop(f"url_{scheme}")
    try:
        return _checked_url(src if scheme in ("http", "https") else urljoin(base or "", src),
                            max_chars)
    except ValueError:
        return Drop("url_invalid")


def _checked_url(joined: str, max_chars: int) -> str | Drop:
    """`joined` without its fragment if it is an absolute http(s) URL of at most
    `max_chars`; raises ValueError where urllib does."""
    url = urldefrag(joined).url if "#" in joined else joined
    parts = urlsplit(url)
    if not parts.scheme:
        return Drop("url_unresolvable")
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return Drop("url_not_http")
    if len(url) > max_chars:
        return Drop("url_too_long")
    if not _encodable(url):
        return Drop("url_invalid")
    return url


def _encodable(text: str) -> bool:
    """False if `text` holds a lone surrogate (a WAT escape such as ``\\ud800``), which
    no UTF-8 output can store."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def clean_text(text: str | None, min_chars: int, max_chars: int) -> str | Drop:
    """Text with control characters and runs of any Unicode space → one space, or why not."""
    text = text or ""
    if not text.isprintable():  # (most texts are: the regex pass is skipped for them)
        text = _CONTROLS.sub(" ", text)
    text = " ".join(text.split())
    if not text:
        return Drop("text_empty")
    if not text.isascii() and ("\ufffd" in text or not _encodable(text)):
        return Drop("text_bad_encoding")  # undecodable bytes, lone surrogates
    if len(text) < min_chars:
        return Drop("text_too_short")
    if len(text) > max_chars:
        return Drop("text_too_long")
    return text
