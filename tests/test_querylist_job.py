"""The query-list Spark job on real and hand-checked dumps (local Spark)."""

from __future__ import annotations

import bz2
import gzip
import math
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.builders import HAND_PAGES, WORDNET, digest, read_bz2_text, write_dump
from wit_builder.errors import InputError, OutputExistsError
from wit_builder.inputs import fingerprint
from wit_builder.querylist import querylist_job as job
from wit_builder.querylist.wikitext import Page, parse_page, plain_text

FIXTURE_THRESHOLDS = dict(min_count=20, min_pmi=12.0, min_bigram_count=5)


def run_job(spark, **kw):
    return job.run(job.QueryListConfig(**kw), spark=spark)


def entries(out: Path) -> list[dict]:
    return pq.read_table(out / "entries.parquet").to_pylist()


# --- the real Wikipedia excerpt -----------------------------------------------------------

@pytest.fixture(scope="module")
def fixture_run(spark, wiki_dump, tmp_path_factory):
    out = tmp_path_factory.mktemp("ql") / "fixture"
    # 1 MiB splits: the 1.7 MB dump is read by two tasks, exercising bz2 split handling.
    result = run_job(spark, wiki_dump=[str(wiki_dump)], out=out, wordnet=WORDNET, split_mb=1,
                     **FIXTURE_THRESHOLDS)
    return result


def independent_count(texts: list[str], word: str) -> int:
    """Occurrences of `word` as a whole token, by lookaround regex (not the tokenizer)."""
    pattern = re.compile(rf"(?<![^\W_])(?<![^\W_]['’-]){re.escape(word)}"
                         rf"(?![^\W_])(?!['’-][^\W_])")
    return sum(len(pattern.findall(t)) for t in texts)


def test_unigram_counts_equal_an_independent_count(fixture_run, wiki_dump):
    records = read_bz2_text(wiki_dump).split("</page>")
    pages = [p for p in map(parse_page, records) if isinstance(p, Page)]
    texts = [plain_text(p.text) for p in pages if p.ns == 0 and not p.redirect]
    unigrams = [e for e in entries(fixture_run.out_dir) if e["source"] == "unigram"]
    assert len(unigrams) > 500
    for e in (unigrams[0], unigrams[7], unigrams[100], unigrams[400], unigrams[-1]):
        assert e["count"] == independent_count(texts, e["entry"]), e
    assert all(e["count"] >= FIXTURE_THRESHOLDS["min_count"] for e in unigrams)
    counts = [e["count"] for e in unigrams]
    assert counts == sorted(counts, reverse=True)


def test_fixture_list_contract(fixture_run):
    rows = entries(fixture_run.out_dir)
    assert [r["entry_id"] for r in rows] == list(range(len(rows)))
    texts = [r["entry"] for r in rows]
    assert len(set(texts)) == len(texts)
    sources = [r["source"] for r in rows]
    order = ["wordnet", "unigram", "bigram", "extra"]
    assert sorted(sources, key=order.index) == sources  # MetaCLIP source order
    assert {str(i) for i in range(100)} <= set(texts)
    lines = (fixture_run.out_dir / "entries.txt").read_text().splitlines()
    assert lines == texts
    stats = fixture_run.marker["stats"]
    assert stats["rows_in"] == 206 and stats["articles"] == 106
    assert stats["drops"]["page_redirect"] == 99
    assert stats["entries_by_source"]["wordnet"] == sources.count("wordnet")
    bigram = next(r for r in rows if r["entry"] == "Blade Runner")
    assert bigram["source"] == "bigram" and bigram["score"] >= 12


def test_multistream_dump_gives_the_same_list(spark, fixture_run, wiki_dump, tmp_path):
    """A multistream dump (concatenated bz2 streams of ~20 pages) reads the same."""
    text = read_bz2_text(wiki_dump)
    chunks = re.split(r"(?<=</page>\n)", text)
    streams = [bz2.compress("".join(chunks[i:i + 20]).encode())
               for i in range(0, len(chunks), 20)]
    multi = tmp_path / "multistream.xml.bz2"
    multi.write_bytes(b"".join(streams))
    result = run_job(spark, wiki_dump=[str(multi)], out=tmp_path / "out", wordnet=WORDNET,
                     split_mb=1, **FIXTURE_THRESHOLDS)
    assert entries(result.out_dir) == entries(fixture_run.out_dir)


def test_truncated_bz2_names_the_file(spark, wiki_dump, tmp_path):
    cut = tmp_path / "cut.xml.bz2"
    cut.write_bytes(wiki_dump.read_bytes()[:900_000])
    with pytest.raises(InputError, match=r"cut\.xml\.bz2.*truncated"):
        run_job(spark, wiki_dump=[str(cut)], out=tmp_path / "out", wordnet=None)
    assert not (tmp_path / "out").exists()


def test_corrupt_bz2_data_names_the_file(spark, wiki_dump, tmp_path):
    """Damage inside the file (its head and tail intact) is found by the task that
    decompresses it and reported as a one-line error, not a Spark stack trace."""
    data = bytearray(wiki_dump.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = b"\0" * 64
    bad = tmp_path / "bad.xml.bz2"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"corrupt.*bad\.xml\.bz2"):
        run_job(spark, wiki_dump=[str(bad)], out=tmp_path / "out", wordnet=None)
    assert not (tmp_path / "out").exists()


# --- a hand-checked dump ------------------------------------------------------------------

# Articles "Red fox" and "Blue whale": tokens red fox jumps | red fox runs | blue whale swims
# N = 9; n(red) = n(fox) = 2, n(red fox) = 2 → PMI log2(2*9/(2*2)) = log2 4.5 ≈ 2.17;
# n(fox jumps) = n(fox runs) = 1 → log2(1*9/(2*1)) = log2 4.5; blue whale, whale swims →
# log2(9) ≈ 3.17. "jumps red" crosses a full stop and is not a bigram.


@pytest.fixture
def hand_dump(tmp_path) -> Path:
    return write_dump(tmp_path / "hand.xml.bz2", HAND_PAGES)


def hand_config(dump: Path, out: Path, **kw):
    base = dict(wiki_dump=[str(dump)], out=out, wordnet=None, min_count=1000,
                min_bigram_count=1, min_pmi=2.0)
    return {**base, **kw}


def test_pmi_and_skip_reasons_hand_checked(spark, hand_dump, tmp_path):
    result = run_job(spark, **hand_config(hand_dump, tmp_path / "out"))
    bigrams = [e for e in entries(result.out_dir) if e["source"] == "bigram"]
    assert {e["entry"]: e["count"] for e in bigrams} == {
        "blue whale": 1, "whale swims": 1, "red fox": 2, "fox jumps": 1, "fox runs": 1}
    assert {e["entry"]: e["score"] for e in bigrams} == pytest.approx({
        "blue whale": math.log2(9), "whale swims": math.log2(9), "red fox": math.log2(4.5),
        "fox jumps": math.log2(4.5), "fox runs": math.log2(4.5)})
    bigram_order = [e["entry"] for e in entries(result.out_dir) if e["source"] == "bigram"]
    assert bigram_order == ["blue whale", "whale swims", "red fox", "fox jumps", "fox runs"]
    stats = result.marker["stats"]
    assert stats["tokens"] == 9 and stats["articles"] == 2 and stats["rows_in"] == 7
    assert stats["drops"] == {"page_empty_text": 2, "page_malformed_xml": 1,
                              "page_non_article_namespace": 1, "page_redirect": 1}


def test_min_bigram_count_filters_rare_pairs(spark, hand_dump, tmp_path):
    result = run_job(spark, **hand_config(hand_dump, tmp_path / "out", min_bigram_count=2))
    assert [e["entry"] for e in entries(result.out_dir) if e["source"] == "bigram"] == [
        "red fox"]


HOUR_1 = """en Red_fox 60 0
en Blue_whale 40 0
en.m Red_fox 500 0
en Talk:Red_fox 900 0
en Special%3ASearch 900 0
en Caf%C3%A9 80 0
de Rotfuchs 100 0
en broken_line
en C++ 75 0
"""
HOUR_2 = """en Red_fox 55 0
en Blue_whale 65 0
en Missing_article 300 0
"""


@pytest.fixture
def pageview_files(tmp_path) -> str:
    folder = tmp_path / "pageviews"
    folder.mkdir()
    for name, text in (("pageviews-20240101-000000.gz", HOUR_1),
                       ("pageviews-20240101-010000.gz", HOUR_2)):
        (folder / name).write_bytes(gzip.compress(text.encode()))
    return str(folder / "pageviews-*.gz")


def test_pageview_titles(spark, hand_dump, pageview_files, tmp_path):
    result = run_job(spark, **hand_config(hand_dump, tmp_path / "out", min_pmi=99.0,
                                          pageviews=[pageview_files]))
    titles = [(e["entry"], e["count"]) for e in entries(result.out_dir)
              if e["source"] == "title"]
    # Red fox: 60 + 55; Blue whale: only 65 counted (40 < hourly floor 50) < 70;
    # Missing article: not a page of the dump.
    assert titles == [("Red fox", 115), ("Café", 80), ("C++", 75)]
    assert result.marker["stats"]["pageviews"] == {
        "pageview_below_hourly_floor": 1, "pageview_lines": 12,
        "pageview_malformed_line": 1, "pageview_not_desktop_en": 2,
        "pageview_rows_kept": 6, "pageview_title_has_colon": 2}
    everything = run_job(spark, **hand_config(
        hand_dump, tmp_path / "all", min_pmi=99.0, pageviews=[pageview_files],
        require_title_in_dump=False))
    assert [e["entry"] for e in entries(everything.out_dir) if e["source"] == "title"] == [
        "Missing article", "Red fox", "Café", "C++"]


def test_resume_skip_and_overwrite(spark, hand_dump, tmp_path):
    out = tmp_path / "out"
    assert run_job(spark, **hand_config(hand_dump, out)).status == "ran"
    before = (out / "_SUCCESS").read_text()
    assert run_job(spark, **hand_config(hand_dump, out)).status == "skipped"
    assert (out / "_SUCCESS").read_text() == before
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run_job(spark, **hand_config(hand_dump, out, min_pmi=3.0))
    redo = run_job(spark, **hand_config(hand_dump, out, min_pmi=3.0, overwrite=True))
    assert redo.status == "ran"
    assert {e["entry"] for e in entries(out) if e["source"] == "bigram"} == {
        "blue whale", "whale swims"}


def test_bad_inputs_are_clear_errors(spark, tmp_path):
    plain = write_dump(tmp_path / "plain.xml", HAND_PAGES, compress=False)
    cut = tmp_path / "cut.xml"
    cut.write_bytes(plain.read_bytes()[: len(plain.read_bytes()) // 2])
    with pytest.raises(InputError, match=r"truncated.*cut\.xml"):
        run_job(spark, **hand_config(cut, tmp_path / "o1"))
    with pytest.raises(InputError, match="no file matches"):
        run_job(spark, **hand_config(tmp_path / "nope.xml.bz2", tmp_path / "o2"))
    with pytest.raises(InputError, match="pageviews: no file matches"):
        run_job(spark, **hand_config(plain, tmp_path / "o3", pageviews=["/nope/*.gz"]))
    assert not any(p.name.startswith("o") for p in tmp_path.iterdir())


def test_uri_inputs_are_expanded_by_spark(spark, tmp_path):
    """A scheme:// glob goes to Spark unexpanded and is fingerprinted through fsspec."""
    write_dump(tmp_path / "part-1.xml.bz2", HAND_PAGES[:3])
    write_dump(tmp_path / "part-2.xml.bz2", HAND_PAGES[3:])
    uri = f"file://{tmp_path}/part-*.xml.bz2"
    assert fingerprint([uri])[1][:2] == (f"{tmp_path}/part-2.xml.bz2",
                                         (tmp_path / "part-2.xml.bz2").stat().st_size)
    result = run_job(spark, **hand_config(uri, tmp_path / "out", min_bigram_count=2))
    assert result.marker["stats"]["rows_in"] == 7
    assert len(result.marker["stats"]["files"]) == 2
    with pytest.raises(InputError, match="no file matches"):
        fingerprint([f"file://{tmp_path}/nothing-*.bz2"])


def test_empty_dump_file_is_an_error(spark, tmp_path):
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"truncated.*empty\.xml"):
        run_job(spark, **hand_config(empty, tmp_path / "out"))


# Pinned outputs (see `builders.digest`): the fixture list as of the backtick fix.
PINNED_FIXTURE_LIST = ("db055df3125f7873", 88738)


def test_fixture_list_is_pinned(fixture_run):
    rows = [(r["entry"], r["source"], r["count"],
             None if r["score"] is None else round(r["score"], 6))
            for r in entries(fixture_run.out_dir)]
    assert (digest(rows), len(rows)) == PINNED_FIXTURE_LIST
