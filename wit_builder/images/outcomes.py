"""Why an image was not kept: img2dataset's per-row status and error text → a reason.

Every input row of `wit download` ends as a sample in a shard or as a row of
``failures/`` with one of these reasons, so rows_in − Σ drops = rows_out.
Transient reasons (`TRANSIENT`) are the ones ``--retry-failed`` fetches again.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

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


def classify_arrays(status: pa.Array | pa.ChunkedArray, error: pa.Array | pa.ChunkedArray
                    ) -> tuple[pa.Array, pa.Array]:
    """`classify` over whole columns with Arrow kernels (no Python call per row): the
    reason and HTTP status (int32, null where there is none) of each row."""
    error = pc.fill_null(error, "")
    resized = pc.equal(pc.fill_null(status, ""), "failed_to_resize")
    reason = pa.repeat("download_error", len(error)).cast(pa.string())
    for name, pattern in reversed(_PATTERNS):  # the first match wins: it is applied last
        reason = _where(_matches(error, pattern), name, reason)
    code = pc.cast(pc.struct_field(pc.extract_regex(error, _HTTP.pattern.replace(
        "(\\d", "(?P<code>\\d")), [0]), pa.int32())
    http_reason = pc.if_else(pc.equal(code, 429), "http_429", pc.if_else(
        pc.less(code, 400), "bad_redirect", pc.if_else(pc.less(code, 500), "http_4xx",
                                                       "http_5xx")))
    reason = pc.if_else(pc.is_valid(code), http_reason, reason)
    before = pa.repeat(False, len(error))
    for name, pattern in reversed(_BEFORE_STATUS):
        found = _matches(error, pattern)
        reason, before = _where(found, name, reason), pc.or_(before, found)
    head = pc.utf8_trim_whitespace(pc.struct_field(pc.extract_regex(
        error, r"^(?P<head>[^:]*)"), [0]))
    resize_reason = pc.if_else(pc.is_in(head, pa.array(RESIZE_REASONS)), head, "decode_error")
    reason = pc.if_else(resized, resize_reason, reason)
    no_status = pc.or_(pc.or_(resized, before), pc.invert(pc.is_valid(code)))
    status_code = pc.if_else(no_status, pa.scalar(None, pa.int32()), code)
    return reason, status_code


def _matches(error: pa.Array, pattern: re.Pattern[str]) -> pa.Array:
    return pc.match_substring_regex(error, pattern.pattern,
                                    ignore_case=bool(pattern.flags & re.I))


def _where(mask: pa.Array, name: str, otherwise: pa.Array) -> pa.Array:
    return pc.if_else(mask, name, otherwise)
