"""Extraction from real WARC/WAT files, without Spark: parsing, hygiene, LID, damage."""

from __future__ import annotations

import gzip
import hashlib
import re
from collections import Counter
from pathlib import Path

import pytest
from fastwarc import ArchiveIterator, WarcRecordType

from tests import warcs
from wit_builder.curate import html, records
from wit_builder.curate.extract import ExtractParams, counter_kind, extract_file
from wit_builder.curate.hygiene import Drop, clean_text, page_base, pair_uid, resolve_url
from wit_builder.curate.lid import LanguageId

ALL_LANGS = ExtractParams(lang=None, min_lang_score=0.0)


def run_file(path: Path, params: ExtractParams = ALL_LANGS) -> tuple[list[dict], Counter]:
    batches = list(extract_file(str(path), params))
    counts = batches[-1].to_pydict()
    rows = [r for b in batches[:-1] for r in b.to_pylist()]
    return rows, Counter(dict(zip(counts["reason"], counts["n"], strict=True)))


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
