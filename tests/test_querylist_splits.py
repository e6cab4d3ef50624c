"""Byte-range splits of dump files, decompressed in Python (`querylist.splits`): every
page is read exactly once however the file is cut into streams and ranges."""

from __future__ import annotations

import bz2
import collections
import gzip
import re
from pathlib import Path

import pytest

from tests.builders import read_bz2_text
from wit_builder.querylist.splits import plan_splits, split_records
from wit_builder.querylist.wikitext import parse_page


def all_records(path: Path, step: int) -> tuple[list[str], dict[str, int]]:
    """Records of every split of `path`, in split order, and the problems counted."""
    problems: dict[str, int] = {}
    records = []
    for split in plan_splits([(str(path), path.stat().st_size)], step):
        records += split_records(split, problems)
    return records, problems


def pages(records: list[str]) -> collections.Counter:
    """What the scan counts of the records: titles of parsed pages, skip reasons, end
    tags (records that hold no page count nothing)."""
    out = collections.Counter()
    for record in records:
        page = parse_page(record)
        out["end_tag"] += "</mediawiki>" in record
        if page != "no_page":
            out[page if isinstance(page, str) else page.title] += 1
    return out


@pytest.fixture(scope="module")
def dump_text(wiki_dump) -> str:
    return read_bz2_text(wiki_dump)


def reference(text: str) -> collections.Counter:
    return pages(text.split("</page>"))


def write(path: Path, streams: list[bytes]) -> Path:
    path.write_bytes(b"".join(streams))
    return path


@pytest.mark.parametrize("step", [7_000, 50_000, 1 << 20])
def test_multistream_at_page_boundaries(dump_text, tmp_path, step):
    """Streams of 20 whole pages (the multistream layout), ranges far smaller and larger
    than a stream."""
    chunks = re.split(r"(?<=</page>\n)", dump_text)
    streams = [bz2.compress("".join(chunks[i:i + 20]).encode())
               for i in range(0, len(chunks), 20)]
    records, problems = all_records(write(tmp_path / "m.bz2", streams), step)
    assert pages(records) == reference(dump_text) and not problems
    assert sum(1 for r in records if "<page>" in r) == dump_text.count("<page>")


@pytest.mark.parametrize("cut", [9_999, 70_000])
def test_pages_cut_across_streams_are_read_once(dump_text, tmp_path, cut):
    """Streams cut at arbitrary bytes (inside pages, inside multi-byte characters): a
    task reads on to finish its last page, the next drops that page's tail."""
    data = dump_text.encode()
    streams = [bz2.compress(data[i:i + cut]) for i in range(0, len(data), cut)]
    records, problems = all_records(write(tmp_path / "c.bz2", streams), 30_000)
    assert pages(records) == reference(dump_text) and not problems


def test_concatenated_dumps_and_single_streams(wiki_dump, dump_text, tmp_path):
    """Three whole dumps as three streams; one single-stream dump cut into 17 ranges (only
    the range holding byte 0 reads it)."""
    three, _ = all_records(write(tmp_path / "3.bz2", [wiki_dump.read_bytes()] * 3), 400_000)
    assert pages(three) == reference(dump_text * 3)
    one, _ = all_records(wiki_dump, 100_000)
    assert pages(one) == reference(dump_text)
    assert len(plan_splits([(str(wiki_dump), wiki_dump.stat().st_size)], 100_000)) == 17


def test_plain_and_gzip_files_are_read_whole(dump_text, tmp_path):
    plain = tmp_path / "d.xml"
    plain.write_text(dump_text, encoding="utf-8")
    gz = tmp_path / "d.xml.gz"
    gz.write_bytes(gzip.compress(dump_text.encode()))
    for path in (plain, gz):
        records, _ = all_records(path, 300_000)
        assert pages(records) == reference(dump_text)


def test_corrupt_stream_is_counted(wiki_dump, tmp_path):
    data = bytearray(wiki_dump.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = b"\0" * 64
    _, problems = all_records(write(tmp_path / "bad.bz2", [bytes(data)]), 1 << 20)
    assert problems == {"corrupt": 1}


def test_empty_file_has_one_split(tmp_path):
    empty = tmp_path / "e.xml"
    empty.write_bytes(b"")
    assert plan_splits([(str(empty), 0)], 1024)[0].end == 0
    assert all_records(empty, 1024) == ([], {})


def test_openable_files_leave_unknown_schemes_to_spark(wiki_dump, tmp_path):
    """Local paths and fsspec URIs are split in Python (URIs keep their scheme, globs are
    expanded); a scheme fsspec does not know is left to Spark's reader."""
    from wit_builder.inputs import openable_files

    size = wiki_dump.stat().st_size
    files, others = openable_files([str(wiki_dump), f"file://{wiki_dump.parent}/*.bz2",
                                    "nosuchscheme://bucket/dump.xml.bz2"])
    assert files == [(str(wiki_dump), size), (f"file://{wiki_dump}", size)]
    assert others == ["nosuchscheme://bucket/dump.xml.bz2"]


def test_single_stream_files_are_recognized(wiki_dump, dump_text, tmp_path):
    """A single-stream bzip2 file longer than one split is flagged (the job gives it to
    Spark's block-splitting reader); multistream, short, plain and gzip files are not."""
    from wit_builder.querylist.splits import single_stream

    size = wiki_dump.stat().st_size
    assert single_stream(str(wiki_dump), size, 1 << 20)
    assert not single_stream(str(wiki_dump), size, 4 << 20)  # one split: nothing to gain
    chunks = re.split(r"(?<=</page>\n)", dump_text)
    multi = write(tmp_path / "m.bz2", [bz2.compress("".join(chunks[i:i + 20]).encode())
                                       for i in range(0, len(chunks), 20)])
    assert not single_stream(str(multi), multi.stat().st_size, 100_000)
    gz = tmp_path / "d.xml.gz"
    gz.write_bytes(gzip.compress(dump_text.encode()))
    assert not single_stream(str(gz), gz.stat().st_size, 100_000)


def test_scan_task_collects_garbage_less_often_and_restores_the_thresholds(wiki_dump):
    """A scan task raises the collector's first threshold while it runs, and a reused
    Python worker gets the previous thresholds back whether the task runs to its end
    or is closed early (Spark closes a task's iterator when a later stage fails)."""
    import gc

    import pyarrow as pa

    from wit_builder.querylist.scan import scan_splits
    from wit_builder.spark import WORKER_GC_THRESHOLD

    splits = plan_splits([(str(wiki_dump), wiki_dump.stat().st_size)], 1 << 16)
    batch = pa.RecordBatch.from_pylist([vars(s) for s in splits])
    before = gc.get_threshold()
    assert before[0] != WORKER_GC_THRESHOLD
    seen = [gc.get_threshold() for _ in scan_splits(iter([batch]), max_keys=2_000)]
    assert len(seen) > 2  # several flushes: thresholds seen in the middle of the task
    assert seen[0] == (WORKER_GC_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before
    task = scan_splits(iter([batch]), max_keys=2_000)
    next(task)
    assert gc.get_threshold()[0] == WORKER_GC_THRESHOLD
    task.close()
    assert gc.get_threshold() == before
