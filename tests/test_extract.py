"""Extraction from real WARC/WAT files, without Spark: parsing, hygiene, LID, damage."""

from __future__ import annotations

import gzip
import hashlib
import random
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastwarc import ArchiveIterator, WarcRecordType
from selectolax.lexbor import LexborHTMLParser

from tests import warcs
from tests.builders import FIXTURES
from wit_builder.curate import html, records
from wit_builder.curate.extract import ExtractParams, counter_kind, file_batches, new_counts
from wit_builder.curate.hygiene import Drop, clean_text, page_base, pair_uid, resolve_url
from wit_builder.curate.lid import LanguageId

ALL_LANGS = ExtractParams(lang=None, min_lang_score=0.0)


def run_file(path: Path, params: ExtractParams = ALL_LANGS) -> tuple[list[dict], Counter]:
    counts = new_counts()
    rows = [r for b in file_batches(str(path), params, counts) for r in b.to_pylist()]
    return rows, counts


def assert_accounted(counts: Counter) -> None:
    """Every candidate is either a pair or counted under exactly one pair drop reason."""
    pair_drops = sum(n for k, n in counts.items() if counter_kind(k) == "pair")
    assert counts["candidates"] - pair_drops == counts["pairs"]


@pytest.mark.parametrize(("src", "base", "expected"), [
    ("img/a.jpg", "http://ex.com/dir/page.html", "http://ex.com/dir/img/a.jpg"),
    ("../a.jpg", "http://ex.com/dir/sub/page", "http://ex.com/dir/a.jpg"),
    ("/a.jpg", "https://ex.com/dir/page", "https://ex.com/a.jpg"),
    ("//cdn.ex.com/a.jpg", "https://ex.com/", "https://cdn.ex.com/a.jpg"),
    ("  http://ex.com/a\n.jpg#frag ", None, "http://ex.com/a.jpg"),
    ("data:image/png;base64,AAAA", "http://ex.com/", Drop("url_data")),
    ("JavaScript:void(0)", "http://ex.com/", Drop("url_javascript")),
    ("ftp://ex.com/a.jpg", None, Drop("url_not_http")),
    ("a.jpg", None, Drop("url_unresolvable")),
    ("   ", "http://ex.com/", Drop("url_empty")),
    ("/" + "x" * 3000, "http://ex.com/", Drop("url_too_long")),
])
def test_resolve_url(src, base, expected):
    assert resolve_url(src, base, 2048) == expected


def test_base_href_is_resolved_against_page():
    assert page_base("http://ex.com/a/b.html", "/static/") == "http://ex.com/static/"
    assert page_base("http://ex.com/a/b.html", None) == "http://ex.com/a/b.html"
    assert resolve_url("x.png", page_base("http://ex.com/a/b", "//cdn.io/i/"), 99) \
        == "http://cdn.io/i/x.png"


@pytest.mark.parametrize(("text", "expected"), [
    ("  a\u00a0 red\t\ncar ", "a red car"),
    ("bad \x97 byte", "bad byte"),
    ("", Drop("text_empty")),
    (None, Drop("text_empty")),
    ("ab", Drop("text_too_short")),
    ("x" * 11, Drop("text_too_long")),
    ("caf\ufffd", Drop("text_bad_encoding")),
])
def test_clean_text(text, expected):
    assert clean_text(text, 3, 10) == expected


def test_uid_is_sha224_of_url_tab_text():
    expected = hashlib.sha224(b"http://a/b.jpg\ta dog").hexdigest()[:24]
    assert pair_uid("http://a/b.jpg", "a dog") == expected


def test_dechunk():
    assert records.dechunk(b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\n\r\n") == b"Wikipedia"
    with pytest.raises(ValueError):
        records.dechunk(b"zz\r\nabc")


def test_charset_order():
    body = b'<html><head><meta charset="euc-jp"></head>'
    assert html.sniff_charset(body, None) == "euc_jp"
    assert html.sniff_charset(body, "Shift_JIS") == "shift_jis"  # HTTP header wins
    assert html.sniff_charset(b"\xef\xbb\xbf<html>", "latin-1") == "utf-8"  # BOM wins
    assert html.sniff_charset(b"<html>", "iso-8859-1") == "cp1252"  # as browsers do
    assert html.sniff_charset(b"<html>", "no-such-charset") == "utf-8"


def test_euc_jp_pages_decode_every_alt():
    """The 556 alts of the real EUC-JP shop decode to Japanese, none with U+FFFD."""
    rows, counts = run_file(warcs.CLUEWEB, ExtractParams(lang=None, min_lang_score=0.0,
                                                         attrs=("alt",)))
    raw_alts = sum(len(re.findall(rb"<img\b[^>]*\balt\s*=", r.reader.read(), re.I))
                   for r in ArchiveIterator(str(warcs.CLUEWEB), parse_http=False,
                                            record_types=WarcRecordType.response))
    assert raw_alts == 556
    assert counts["candidates"] == 556 and counts["html_pages"] == 29
    texts = [r["text"] for r in rows]
    assert any("ヘッドポーター" in t.replace(" ", "") for t in texts)
    assert not any("\ufffd" in t for t in texts)
    assert {r["lang"] for r in rows} >= {"ja"}
    assert_accounted(counts)


def test_english_filter_on_real_pages():
    rows, counts = run_file(warcs.CC_EXCERPT, ExtractParams())  # en, p ≥ 0.5
    everything, _ = run_file(warcs.CC_EXCERPT)
    assert rows and len(rows) < len(everything)
    assert all(r["lang"] == "en" and r["lang_score"] >= 0.5 for r in rows)
    assert counts["lang_not_en"] > 0
    assert_accounted(counts)


def test_relative_urls_resolve_against_page():
    rows, _ = run_file(warcs.CC_EXCERPT)
    page_urls = {r["page_url"] for r in rows}
    assert all(r["url"].startswith(("http://", "https://")) for r in rows)
    # the first page's logo is written "../../../images/..." in the HTML
    assert any(r["url"].count("/images/") and r["page_url"] in page_urls for r in rows)


def test_language_id_model():
    lid = LanguageId(None)
    assert lid("A brown dog running on the beach at sunset")[0] == "en"
    assert lid("海辺を走る茶色の犬")[0] == "ja"
    assert lid("Ein brauner Hund läuft am Strand")[0] == "de"


def test_language_id_equals_fasttexts_own_predict():
    """The direct call into the binding gives fastText's public `predict` result (label
    and probability) on 1000 real alt-texts."""
    texts = pq.read_table(FIXTURES / "alt_text" / "laion-alt-text-1000.parquet")
    texts = [" ".join(t.split()) for t in texts.column("TEXT").to_pylist() if t]
    lid = LanguageId(None)
    for text in texts:
        labels, probs = lid.model.predict(text, k=1)
        assert lid(text) == (labels[0].removeprefix("__label__"), float(probs[0])), text


def test_clipped_page_keeps_images_before_the_cut():
    rows, counts = run_file(warcs.CLIPPED, ExtractParams(lang=None, min_lang_score=0.0,
                                                         attrs=("alt",)))
    assert counts["records_truncated"] == 1
    assert len(rows) == 6  # the fixture's 6 alts


def test_truncated_gzip_keeps_exactly_the_records_before_the_cut(tmp_path):
    """A Common Crawl-style file cut inside record k's gzip member: exactly the pairs of
    records 0..k-1 (as read from a file of those alone), plus pairs of record k's page
    only, each one a real pair of that page."""
    recs = warcs.raw_records(warcs.CC_EXCERPT)
    k = next(i for i in range(len(recs) * 2 // 3, len(recs))
             if b"WARC-Type: response" in recs[i][:300])
    page_k = re.search(rb"WARC-Target-URI: (\S+)", recs[k]).group(1).decode()
    member = gzip.compress(recs[k])
    head = warcs.per_record_gzip(recs[:k])
    (tmp_path / "cut.warc.gz").write_bytes(head + member[: len(member) // 2])
    (tmp_path / "before.warc.gz").write_bytes(head)
    rows, counts = run_file(tmp_path / "cut.warc.gz")
    before, before_counts = run_file(tmp_path / "before.warc.gz")
    full, _ = run_file(warcs.CC_EXCERPT)
    assert len(before) > 10
    def key(r: dict) -> tuple:
        return r["uid"], r["page_url"], r["attr"]

    assert [key(r) for r in rows if r["page_url"] != page_k] == [key(r) for r in before]
    last = [r["uid"] for r in rows if r["page_url"] == page_k]
    assert set(last) <= {r["uid"] for r in full if r["page_url"] == page_k}
    assert counts["records"] == before_counts["records"] + 1
    assert counts["records_truncated"] == 1
    assert_accounted(counts)


def test_corrupt_gzip_member_loses_only_that_record(tmp_path):
    """A Common Crawl-style file (one member per record) with one damaged member."""
    recs = warcs.raw_records(warcs.CLUEWEB)
    members = [gzip.compress(r) for r in recs]
    damaged = bytearray(members[5])
    damaged[30:60] = bytes(b ^ 0xFF for b in damaged[30:60])
    members[5] = bytes(damaged)
    good, bad = tmp_path / "good.warc.gz", tmp_path / "bad.warc.gz"
    good.write_bytes(warcs.per_record_gzip(recs))
    bad.write_bytes(b"".join(members))
    good_rows, good_counts = run_file(good)
    rows, counts = run_file(bad)
    assert counts["record_corrupt_gzip"] == 1
    assert counts["records"] == good_counts["records"] - 1
    lost_pages = {r["page_url"] for r in good_rows} - {r["page_url"] for r in rows}
    assert len(lost_pages) == 1  # only the damaged record's page
    strip = lambda rows: [{**r, "source_file": None} for r in rows]  # noqa: E731
    assert strip(rows) == strip([r for r in good_rows if r["page_url"] not in lost_pages])
    assert_accounted(counts)


def test_plain_warc_with_a_cut_record_keeps_the_others(tmp_path):
    """An uncompressed WARC whose 6th record is cut short (its Content-Length lies)."""
    recs = warcs.raw_records(warcs.CLUEWEB)
    path = tmp_path / "cut.warc"
    path.write_bytes(b"".join(recs[:5]) + recs[5][:2000] + b"".join(recs[6:]))
    _, good_counts = run_file(warcs.CLUEWEB)
    rows, counts = run_file(path)
    assert counts["html_pages"] >= good_counts["html_pages"] - 2 and len(rows) > 500
    assert_accounted(counts)


def test_plain_warc_with_revisit_and_request_records():
    rows, counts = run_file(warcs.WARCIO)
    assert counts["html_pages"] == 1 and rows == []  # example.com has no image


def test_real_wat_file_without_image_links():
    rows, counts = run_file(warcs.WHIRLWIND_WAT)
    assert counts["wat_pages"] == 1 and counts["candidates"] == 0 and rows == []


def test_wat_gives_the_same_pairs_as_the_warc(tmp_path):
    """WAT links built from a real page give exactly the pairs of its HTML response."""
    record = next(iter(ArchiveIterator(str(warcs.CLIPPED), parse_http=True,
                                       record_types=WarcRecordType.response)))
    page_url = record.headers.get("WARC-Target-URI")
    links = warcs.img_links(html.decode_html(record.reader.read()))
    wat = tmp_path / "page.warc.wat.gz"
    wat.write_bytes(gzip.compress(warcs.wat_response(page_url, None, links)))
    from_wat, counts = run_file(wat)
    from_warc, _ = run_file(warcs.CLIPPED)
    assert counts["wat_pages"] == 1
    key = ("uid", "url", "text", "attr", "page_url")
    assert sorted(tuple(r[k] for k in key) for r in from_wat) == \
        sorted(tuple(r[k] for k in key) for r in from_warc)


def test_wat_relative_urls_and_base(tmp_path):
    links = [{"path": "IMG@/src", "url": "img/cat.jpg", "alt": "a grey cat"},
             {"path": "IMG@/src", "url": "//cdn.ex.org/dog.jpg", "title": "a small dog"},
             {"path": "A@/href", "url": "/about", "text": "about"}]
    wat = tmp_path / "x.warc.wat.gz"
    wat.write_bytes(gzip.compress(warcs.wat_response("https://ex.org/a/page.html",
                                                     "/static/", links)))
    rows, _ = run_file(wat)
    assert sorted((r["url"], r["text"], r["attr"]) for r in rows) == [
        ("https://cdn.ex.org/dog.jpg", "a small dog", "title"),
        ("https://ex.org/static/img/cat.jpg", "a grey cat", "alt")]


def test_bad_wat_json_is_a_counted_record_drop(tmp_path):
    bad = warcs.warc_record("metadata", "http://ex.org/", "application/json", b"{not json")
    path = tmp_path / "bad.wat.gz"
    path.write_bytes(gzip.compress(bad))
    rows, counts = run_file(path)
    assert rows == [] and counts["record_bad_wat_json"] == 1 and counts["records"] == 1


def test_wat_built_from_real_warcs_gives_their_pairs(tmp_path):
    """The benchmark's WAT input (Common Crawl's layout, every link of every real page of
    the CC excerpt and the ClueWeb pages, alts tagged per copy) yields exactly the pairs
    of the WARC it was built from."""
    records = [warcs.with_distinct_alts(r, "c7")
               for r in warcs.raw_records(warcs.CC_EXCERPT) + warcs.raw_records(warcs.CLUEWEB)]
    warc, wat = tmp_path / "pages.warc.gz", tmp_path / "pages.warc.wat.gz"
    warc.write_bytes(warcs.per_record_gzip(records))
    wat.write_bytes(warcs.per_record_gzip(warcs.wat_records(b"".join(records))))
    from_warc, warc_counts = run_file(warc)
    from_wat, wat_counts = run_file(wat)
    key = ("uid", "url", "text", "attr", "page_url")
    assert sorted(tuple(r[k] for k in key) for r in from_wat) == \
        sorted(tuple(r[k] for k in key) for r in from_warc)
    assert wat_counts["wat_pages"] == warc_counts["html_pages"] == 45
    assert len(from_wat) > 300 and all("c7." in r["text"] or "c7." in r["url"]
                                       for r in from_wat)


@pytest.mark.parametrize(("src", "base", "expected"), [
    ("http://[bad/x.jpg", None, Drop("url_invalid")),          # urllib: invalid IPv6
    ("x.jpg", "http://[oops/", Drop("url_invalid")),
    ("http://ex\uff0fample.com/a.jpg", None, Drop("url_invalid")),  # NFKC gives "/"
    ("http:///a.jpg", None, Drop("url_not_http")),             # empty netloc
    ("HTTPS://Ex.com/A.JPG", None, "HTTPS://Ex.com/A.JPG"),
    ("https://ex.com?q=1", None, "https://ex.com?q=1"),
    ("https://ex.com/ä.jpg#x", None, "https://ex.com/ä.jpg"),
])
def test_resolve_url_edge_cases(src, base, expected):
    assert resolve_url(src, base, 2048) == expected


def test_malformed_base_href_is_ignored():
    assert page_base("http://ex.com/a/b.html", "http://[x/") == "http://ex.com/a/b.html"


def slow_resolve(src: str, base: str | None, max_chars: int) -> str | Drop:
    """The rule without the fast path: strip, join unless http(s), drop the fragment,
    check scheme, netloc and length (urllib throughout)."""
    from urllib.parse import urldefrag, urljoin, urlsplit

    src = src.strip().replace("\t", "").replace("\n", "").replace("\r", "")
    if not src:
        return Drop("url_empty")
    scheme = src.split(":", 1)[0].lower() if ":" in src else ""
    if scheme in ("data", "javascript"):
        return Drop(f"url_{scheme}")
    try:
        url = urldefrag(src if scheme in ("http", "https") else urljoin(base or "", src)).url
        parts = urlsplit(url)
    except ValueError:
        return Drop("url_invalid")
    if not parts.scheme:
        return Drop("url_unresolvable")
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return Drop("url_not_http")
    return url if len(url) <= max_chars else Drop("url_too_long")


def test_resolve_url_equals_urllib_on_real_and_odd_srcs():
    """The fast path for plain absolute URLs changes no result: every image src of the
    fixture WARCs and WAT-style odd srcs give what urllib alone gives."""
    srcs = [link["url"] for r in warcs.raw_records(warcs.CC_EXCERPT)
            + warcs.raw_records(warcs.CLUEWEB)
            for link in warcs.page_links(r.decode("utf-8", "replace"))[1]]
    odd = ["http://", "https://", "http:/x.jpg", "http:x.jpg", "http://?q", "http://#f",
           "http://a", "HtTp://A/b", "https://a.b/c d.jpg", "http://a/\x7f.jpg",
           "https://user:pw@host:80/p?q#f", "http://[::1]/a.jpg", "http://ex.com:99999/a",
           "https:\\\\ex.com\\a.jpg", "  https://ex.com/a.jpg  ", "http://ex.com/" + "a" * 60]
    odd += ["a//b.jpg", "/a//b.jpg", "//cdn.ex.com/a//b.jpg", "//cdn.ex.com/a/../b.jpg",
            "./a.jpg", "../a.jpg", ".", "..", "a/./b.jpg", "/.well-known/a.png", "?q=1",
            "a.jpg?x=1&y=2", "a;p=1/b.jpg", "//", "///a.jpg", "//?x", "a.jpg/", "%7Ea.jpg",
            "ä.jpg", "a\\b.jpg", "mailto:x@y", "a:b.jpg", "a[1].jpg"]
    bases = ["http://ex.com/dir/page.html", "https://Ex.com", "http://ex.com?x=1",
             "HTTP://ex.com/a/b/", "http://ex.com/a/../b/p", "http://ex.com//a/p",
             "http://ex.com/a;p/b", "http://ex.com/a/.hidden/p", "http://user@ex.com:8080/x",
             "http://[::1]/a/", "http://ex.com/ä/p", "ftp://ex.com/a/", None]
    assert len(srcs) > 1000
    for src in srcs + odd:
        for base in bases:
            assert resolve_url(src, base, 64) == slow_resolve(src, base, 64), (src, base)


def test_wat_json_that_only_the_standard_library_reads(tmp_path):
    """NaN and lone surrogate escapes are valid for `json` but not for orjson: the record
    is still read, and a text or URL holding a lone surrogate is a counted drop, not a
    crash when the pair is written."""
    links = [{"path": "IMG@/src", "url": "http://ex.org/a.jpg", "alt": "SURROGATE here"},
             {"path": "IMG@/src", "url": "http://ex.org/\\udc80.jpg", "alt": "a fine text"},
             {"path": "IMG@/src", "url": "http://ex.org/b.jpg", "alt": "a good dog"}]
    record = warcs.wat_response("http://ex.org/", None, links)
    # one backslash in the JSON: a \\uXXXX escape of a lone surrogate
    record = record.replace(b"SURROGATE", b"\\ud800").replace(b"\\\\udc80", b"\\udc80")
    record = record.replace(b'"Title": "test page"', b'"Title": NaN  ')
    path = tmp_path / "odd.wat.gz"
    path.write_bytes(gzip.compress(record))
    rows, counts = run_file(path)
    assert [(r["url"], r["text"]) for r in rows] == [("http://ex.org/b.jpg", "a good dog")]
    assert counts["text_bad_encoding"] == 1 and counts["url_invalid"] == 1
    assert counts["wat_pages"] == 1
    assert_accounted(counts)


def test_without_language_id_the_pairs_are_the_same(tmp_path):
    """lid=false (with lang none, score 0) keeps every pair of the all-languages run and
    only leaves lang and lang_score null; any language filter forbids it."""
    from pydantic import ValidationError

    from wit_builder.curate.configs import ExtractConfig

    with_lid, counts = run_file(warcs.CC_EXCERPT)
    without, counts_without = run_file(warcs.CC_EXCERPT,
                                       ExtractParams(lang=None, min_lang_score=0.0, lid=False))
    key = ("uid", "url", "text", "attr", "page_url")
    assert [tuple(r[k] for k in key) for r in without] == \
        [tuple(r[k] for k in key) for r in with_lid]
    assert {(r["lang"], r["lang_score"]) for r in without} == {(None, None)}
    assert counts_without == counts and len(without) > 30
    for bad in ({"lang": "en"}, {"lang": None, "min_lang_score": 0.2}):
        with pytest.raises(ValidationError, match="lid=false needs lang none"):
            ExtractConfig(warc=["x.warc.gz"], out=tmp_path, lid=False, **bad)


def test_resolve_url_equals_urllib_on_generated_srcs():
    """Seeded random srcs and bases made of URL pieces (slashes, dots, queries, params,
    schemes, brackets, non-ASCII): the fast paths agree with urllib on every one."""
    import random

    rng = random.Random(0)
    pieces = ["a", "b.jpg", "/", "/", ".", "..", "?", "=", "&", "//", ";", ":", "#", "%20",
              "ä", "[", "]", "\\", "http:", "https://", "x.y", "~", "@"]
    bases = ["http://ex.com/dir/page.html", "https://ex.com", "http://ex.com/a/b/?q"]
    for _ in range(20_000):
        src = "".join(rng.choices(pieces, k=rng.randint(1, 6)))
        base = rng.choice(bases) if rng.random() < 0.8 else \
            "http://ex.com/" + "".join(rng.choices(pieces, k=3))
        assert resolve_url(src, base, 80) == slow_resolve(src, base, 80), (src, base)


def test_wat_links_of_any_json_shape():
    """Links items that are not objects, or whose url is not a string, are skipped."""
    from wit_builder.curate.html import ImageRef
    from wit_builder.curate.wat import image_links

    good = {"path": "IMG@/src", "url": "a.jpg", "alt": "x", "title": 3}
    links = [good, "IMG@/src", ["IMG@/src"], None, {"path": "IMG@/src", "url": None},
             {"path": "A@/href", "url": "b.html"}, {"path": "IMG@/src", "url": "c.png"}]
    assert image_links(links) == [ImageRef("a.jpg", "x", None), ImageRef("c.png", None, None)]
    assert image_links([good, {"path": "IMG@/src", "url": "c.png"}]) == \
        image_links(links)
    assert image_links({"not": "a list"}) == []


def html_bodies(path: Path) -> list[tuple[bytes, str | None]]:
    """(body, HTTP charset) of every HTML response of a fixture WARC."""
    return [(r.reader.read(), r.http_charset) for r in ArchiveIterator(
        str(path), record_types=WarcRecordType.response, parse_http=True, quirks_mode=True)
        if "html" in (r.http_content_type or "")]


def image_refs_two_walks(text: str) -> tuple[str | None, list[html.ImageRef]]:
    """Reference: the first <base href> and the <img src> list as two separate queries."""
    tree = LexborHTMLParser(text)
    base = tree.css_first("base[href]")
    return (base.attributes.get("href") if base else None), [
        html.ImageRef(n.attributes.get("src") or "", n.attributes.get("alt"),
                      n.attributes.get("title")) for n in tree.css("img[src]")]


BASE_CASES = [
    '<img src="a.png"><base href="/late/"><img src="b.png">',
    '<base><base href="/second/"><base href="/third/"><img src=x alt=y>',
    '<svg><base href="/svg/"></svg><img src=c title=t>', "<IMG SRC=up ALT=Up><BASE HREF=/u/>",
    "<img alt=no-src><img src=''>", "no markup at all",
]


def test_image_refs_equal_two_separate_queries():
    pages = [p for w in (warcs.CC_EXCERPT, warcs.CLIPPED, warcs.CLUEWEB) for p in html_bodies(w)]
    texts = [html.decode_html(*p) for p in pages] + BASE_CASES
    assert sum(len(image_refs_two_walks(t)[1]) for t in texts) > 700
    assert [html.image_refs(t) for t in texts] == [image_refs_two_walks(t) for t in texts]


# Bytes that are not UTF-8 on their own: stray continuation bytes, cut sequences, an
# encoded surrogate, bytes UTF-8 never uses.
BAD_BYTES = [b"\x80", b"\xbf\xbf", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xf0\x9f\x98",
             b"\xfe", b"\xff", b"\xc0\xaf"]


def with_bad_bytes(body: bytes, rng: random.Random) -> bytes:
    """`body` with bad bytes put at random places and inside every alt, src and title."""
    body = re.sub(rb"""((?:alt|src|title)=["']?)""",
                  lambda m: m[1] + rng.choice(BAD_BYTES), body, flags=re.I)
    cuts = sorted(rng.sample(range(len(body)), min(len(body), 200)))
    parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    return b"".join(p + rng.choice(BAD_BYTES) for p in parts[:-1]) + parts[-1]


def test_utf8_bytes_parse_like_the_decoded_page():
    rng = random.Random(13)
    bodies = [b for p in (warcs.CC_EXCERPT, warcs.CLIPPED) for b, c in html_bodies(p)
              if html.sniff_charset(b, c) == "utf-8"]
    damaged = [with_bad_bytes(b, rng) for b in bodies]
    assert len(bodies) >= 8
    for body in bodies + damaged + [s.encode() for s in BASE_CASES]:
        assert html.parse_input(body) is body
        assert html.image_refs(body) == html.image_refs(html.decode_html(body))
    assert any("\ufffd" in (ref.alt or "") for b in damaged for ref in html.image_refs(b)[1])


def test_pages_in_other_charsets_are_decoded_before_parsing():
    pages = [p for w in (warcs.CC_EXCERPT, warcs.CLUEWEB) for p in html_bodies(w)
             if html.sniff_charset(*p) != "utf-8"]
    assert {html.sniff_charset(*p) for p in pages} == {"euc_jp", "gb18030", "cp1251",
                                                        "cp1252"}
    for body, charset in pages:
        text = html.decode_html(body, charset)
        assert html.parse_input(body, charset) == text.encode()
        assert html.image_refs(html.parse_input(body, charset)) == html.image_refs(text)
    assert html.parse_input(b"\xef\xbb\xbf<p>", "latin-1") == b"\xef\xbb\xbf<p>"  # BOM wins
    # unicode-escape decodes to lone surrogates: dropped, as lexbor's text input drops them
    escaped = b'<img src=a alt="\\ud800x \xe9">'
    assert html.image_refs(html.parse_input(escaped, "unicode-escape")) == (
        None, [html.ImageRef("a", "x \xe9", None)]) == html.image_refs(
        html.decode_html(escaped, "unicode-escape"))


@pytest.mark.parametrize("label", ["base64", "rot13", "zlib", "hex", "uu", "idna",
                                   "undefined", "punycode", "no-such-codec"])
def test_charset_labels_python_cannot_decode_with_are_ignored(tmp_path, label):
    page = f'<meta charset="{label}"><img src="/a.png" alt="caf\u00e9 \u00fcber">'.encode()
    path = tmp_path / "page.warc"
    path.write_bytes(warcs.warc_record(
        "response", "http://ex.com/p", "application/http; msgtype=response",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + page))
    rows, counts = run_file(path)
    assert [(r["url"], r["text"]) for r in rows] == [("http://ex.com/a.png", "caf\u00e9 \u00fcber")]
    assert_accounted(counts)
