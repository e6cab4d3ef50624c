"""Why an image was not kept: img2dataset's per-row status and error text → a reason.

Every input row of `wit download` ends as a sample in a shard or as a row of
``failures/`` with one of these reasons, so rows_in − Σ drops = rows_out.
Transient reasons (`TRANSIENT`) are the ones ``--retry-failed`` fetches again.
"""

from __future__ import annotations

import re

# (reason, pattern in the error text), first match wins.
_PATTERNS = (
    ("too_large", re.compile(r"^too_large:")),
    ("opted_out", re.compile(r"disallowed by X-Robots-Tag")),
    ("blocked_address", re.compile(r"blocked_address")),
    ("blocked_scheme", re.compile(r"blocked_scheme|unknown url type", re.I)),
    ("timeout", re.compile(r"timed out|timeout", re.I)),
    ("dns", re.compile(r"Name or service not known|Temporary failure in name resolution|"
                       r"No address associated|nodename nor servname|getaddrinfo", re.I)),
    ("connection_refused", re.compile(r"Connection refused", re.I)),
    ("connection_reset", re.compile(r"Connection reset|Remote end closed|IncompleteRead|"
                                    r"Connection aborted|Broken pipe", re.I)),
    ("too_many_redirects", re.compile(r"redirect error|infinite loop", re.I)),
    ("ssl_error", re.compile(r"SSL|CERTIFICATE", re.I)),
)
# Reasons the resizer (`decode.Resizer`) puts first in its message.
RESIZE_REASONS = ("not_an_image", "decode_error", "too_small", "too_large", "bad_aspect")
TRANSIENT = frozenset({"timeout", "http_5xx", "connection_reset", "http_429"})
_HTTP = re.compile(r"HTTP Error (\d{3})")
# urllib reports these two as the 30x answer that led to them: the reason comes first.
_BEFORE_STATUS = (
    ("blocked_scheme", re.compile(r"redirection to url .* is not allowed", re.I)),
    ("too_many_redirects", re.compile(r"redirect error that would lead to an infinite loop",
                                      re.I)),
)


def classify(status: str | None, error: str | None) -> tuple[str, int | None]:
    """(reason, HTTP status or None) of a row that is not a success."""
    error = error or ""
    if status == "failed_to_resize":
        head = error.split(":", 1)[0].strip()
        return (head if head in RESIZE_REASONS else "decode_error"), None
    for reason, pattern in _BEFORE_STATUS:
        if pattern.search(error):
            return reason, None
    http = _HTTP.search(error)
    if http:
        code = int(http.group(1))
        if code == 429:
            return "http_429", code
        if code < 400:
            return "bad_redirect", code
        return ("http_4xx" if code < 500 else "http_5xx"), code
    for reason, pattern in _PATTERNS:
        if pattern.search(error):
            return reason, None
    return "download_error", None
