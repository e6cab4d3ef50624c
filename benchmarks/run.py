"""Benchmark runner: every figure is printed as a ratio against a named baseline that is
measured in the same run, on the same input and machine.

    PYTHONPATH=.bench-peers python benchmarks/run.py [--only querylist] [--json out.json]

The peers (cc2dataset, wikiextractor, pyahocorasick) come from `.bench-peers/`, a folder
`make bench` fills from `benchmarks/peers.txt`; they are never installed in the project's
environment.

querylist
    Input: the fixture Wikipedia excerpt repeated `--copies` times in the layout of real
    ``pages-articles-multistream`` dumps (bzip2 streams of 100 pages). Figures are MB/s
    per core of *compressed* input. Baselines: ``bzcat FILE > /dev/null`` (one core,
    wall time) and the peer wikiextractor 3.1.0 ``--no-templates`` (MB per CPU second of
    its processes). Measured: (a) the per-task scan (`scan_splits`, what the Spark tasks
    run: bz2, records, XML, wikitext, tokens, counts) over every split in one process,
    MB per CPU second; (b) the whole `wit querylist` Spark job in local mode (start-up,
    scan, aggregation, selection, writing) on a larger copy (`--job-copies`), divided by
    its cores, and its ratio to (a); the job on one copy gives its fixed cost and steady
    rate.

match
    Input: the 1000 real alt-texts of the fixture repeated `--match-repeats` times, and a
    500k-entry list (the 88.7k-entry fixture list plus the most frequent real bigrams of
    the Wikipedia excerpt). Baseline: a bare pyahocorasick loop over the padded texts on
    one core (``automaton.iter``, nothing else); second baseline: the same loop over the
    texts already normalized by the rule (marks spaced out, which also yields more hits),
    with the normalization left untimed; third baseline: ahocorasick-rs's raw scan of each
    normalized text (overlapping matches). Measured: the match stage inside Spark
    (`match_df` over a cached DataFrame, all cores, written to the noop sink; automata
    already built by a warm-up run, as in a long job), as texts/s/core. Times are the
    median of 5 rounds (the best is reported too; the box is shared), with the bare loop's
    CPU time. `automaton_peak_rss_mib` is a fresh Python loading the 500k list and building
    the automaton, `before_automaton_rss_mib` the same process without the build.

extract
    Input: copies of the fixture WARC pages (the CC-MAIN excerpt and the EUC-JP pages)
    with every alt/title and image URL tagged by copy, record and occurrence, so all texts
    are distinct (a real crawl repeats few texts; the fixture repeats most, which a LID
    cache would hide), about `--extract-mb` MB of WARC; and the WAT of the same pages in
    Common Crawl's layout (`tests/warcs.py`). Peers: cc2dataset 1.5.0's
    ``process_wat(path, "image")`` on the WAT; a bare fastwarc + selectolax loop (non-empty
    alt, urljoin) on the WARC, which yields the same pairs. Measured: `file_batches` (what
    one Spark task runs: parse, resolve, clean, uid, Arrow) with alt texts only as the
    peers, (a) with language ID keeping English (LID runs on every text) and (b) with
    ``lid=false``, as the peers do no LID; plus the LID floor (one fastText prediction per
    text, nothing else). Ratios are of median times of 5 rounds on the same file (= ratio
    of pairs/s, the pairs being the same: `distinct_pairs_in_both`; ours turn control
    characters into spaces). The peers do no LID, so two more figures bound what (a) can
    reach: `*_plus_lid` compares with the peer followed by the LID floor (what a user who
    needs English pairs would run), and `*_floor_vs_*` is the peer against the least any
    extractor with LID must do (the LID floor plus parsing every WAT JSON with orjson, or
    parsing every HTML page with lexbor and querying its images). `warc_utf8_*` repeat
    the WARC comparison on the fixture's UTF-8 pages only (the mix above is 85% pages in
    other charsets, which ours decode and the bare loop reads as UTF-8 anyway).
    `extract_peak_rss_mib` is a fresh Python extracting the WARC (one task's worker).
"""

from __future__ import annotations

import argparse
import bz2
import functools
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the page builders of `tests.warcs` make the extraction input
FIXTURES = Path(os.environ.get("WIT_FIXTURES", REPO.parent / "shared" / "fixtures"))
WIKI = (FIXTURES / "wikipedia"
        / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")


def interleaved(n: int, fns: dict[str, Callable[[], object]]) -> dict[str, dict[str, float]]:
    """Median and best wall time, and median CPU time of this process, of each function
    over `n` rounds; within a round the functions run in turn, so that a slow spell of the
    shared box hits all of them alike. On a shared box the median is the figure to
    compare, the best the least disturbed."""
    times: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in fns}
    for _ in range(n):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name]["wall"].append(time.perf_counter() - wall)
            times[name]["cpu"].append(time.process_time() - cpu)
    return {name: {"median": sorted(t["wall"])[n // 2], "best": min(t["wall"]),
                   "cpu_median": sorted(t["cpu"])[n // 2]} for name, t in times.items()}


def peak_rss_mib(code: str) -> float:
    """Peak resident memory (MiB) of a fresh Python running `code` in this checkout: what
    one Spark task's Python worker holds for the same work."""
    # VmHWM (this process image's high-water mark), not getrusage's ru_maxrss: Linux
    # carries ru_maxrss over exec, so a child of a big benchmark process would report the
    # parent's peak.
    script = (f"{code}\nimport re\nstatus = open('/proc/self/status').read()\n"
              "print(re.search(r'VmHWM:\\s+(\\d+)', status).group(1))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return round(int(out.stdout.split()[-1]) / 1024, 1)


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """Fastest wall time of `repeats` calls (least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_multistream(copies: int, target: Path) -> Path:
    """`copies` of the fixture dump in the layout of real ``pages-articles-multistream``
    dumps: bzip2 streams of 100 pages each (the header in the first)."""
    with bz2.open(WIKI, "rt", encoding="utf-8") as f:
        chunks = re.split(r"(?<=</page>\n)", f.read())
    streams = [bz2.compress("".join(chunks[i:i + 100]).encode())
               for i in range(0, len(chunks), 100)]
    target.write_bytes(b"".join(streams) * copies)
    return target


def default_split_mb() -> int:
    """`wit querylist`'s default split size: what one task of a real run reads."""
    from wit_builder.querylist.configs import QueryListConfig

    return QueryListConfig.model_fields["split_mb"].default


def scan_one_core(path: Path) -> None:
    """Run the Spark tasks' body over every split of the file in this process (one core):
    decompress the range, split records, parse, tokenize, count."""
    from wit_builder.querylist.scan import scan_splits
    from wit_builder.querylist.splits import plan_splits

    for split in plan_splits([(str(path), path.stat().st_size)], default_split_mb() << 20):
        batch = pa.RecordBatch.from_pylist([vars(split)])
        for _ in scan_splits(iter([batch]), max_keys=500_000):
            pass


def spark_job(path: Path, cores: int) -> None:
    """`wit querylist` in a fresh process (JVM start-up included), with splits of about
    a quarter of the input per core, as 64 MiB splits give on a full dump."""
    out = Path(tempfile.mkdtemp(prefix="wit-bench-")) / "ql"
    split_mb = max(1, round(path.stat().st_size / 2**20 / (2 * cores)))
    cmd = [sys.executable, "-m", "wit_builder.cli", "querylist", "--wiki-dump", str(path),
           "--out", str(out), "--wordnet", "none", "--master", f"local[{cores}]",
           "--min-count", "20", "--min-pmi", "12", "--split-mb", str(split_mb)]
    subprocess.run(cmd, check=True, capture_output=True)
    shutil.rmtree(out.parent)


def wikiextractor_cpu(path: Path) -> float:
    """Peer: wikiextractor ``--no-templates`` on the same dump; its CPU seconds (it runs a
    reader, an extractor and a writer process even with ``--processes 1``)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "wikiextractor.WikiExtractor", str(path),
                        "--no-templates", "--processes", "1", "-q", "-o", out],
                       check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_querylist(copies: int, job_copies: int) -> dict[str, float]:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        path = make_multistream(copies, Path(tmp) / "dump.xml.bz2")
        mb = path.stat().st_size / 1e6
        t_bzcat = best_of(3, lambda: subprocess.run(
            f"bzcat {path} > /dev/null", shell=True, check=True))
        scan_times = interleaved(1, {"scan": lambda: scan_one_core(path)})["scan"]
        t_wikiextractor = wikiextractor_cpu(path)
        # The job on a larger dump: JVM start-up, planning and JIT are a fixed cost
        # (17-24 s here) that a real dump (hours) amortizes, and that would dominate a
        # few-second run.
        big = make_multistream(job_copies, Path(tmp) / "big.xml.bz2")
        big_mb = big.stat().st_size / 1e6
        t_job = best_of(1, lambda: spark_job(big, cores))
        # The same job on one copy: the difference of the two runs is the steady rate.
        small = make_multistream(1, Path(tmp) / "one.xml.bz2")
        t_small = best_of(1, lambda: spark_job(small, cores))
        small_mb = small.stat().st_size / 1e6
    base, scan = mb / t_bzcat, mb / scan_times["cpu_median"]
    peer = mb / t_wikiextractor
    job = big_mb / t_job / cores
    steady = (big_mb - small_mb) / (t_job - t_small) / cores
    return {"input_mb": round(mb, 2), "job_input_mb": round(big_mb, 2), "cores": cores,
            "bzcat_mb_s_core": round(base, 3),
            "wikiextractor_mb_s_core": round(peer, 3),
            "scan_mb_s_core": round(scan, 3), "scan_vs_bzcat": round(scan / base, 3),
            "scan_vs_wikiextractor": round(scan / peer, 3),
            "job_mb_s_core": round(job, 3), "job_vs_bzcat": round(job / base, 3),
            "job_vs_scan": round(job / scan, 3),
            "job_fixed_cost_s": round(t_small - small_mb / steady / cores, 1),
            "job_steady_mb_s_core": round(steady, 3),
            "job_steady_vs_scan": round(steady / scan, 3)}


ALT_TEXTS = FIXTURES / "alt_text" / "laion-alt-text-1000.parquet"
QUERY_LIST = REPO / "query_lists" / "enwiki-fixture" / "entries.parquet"


def five_hundred_k_entries() -> list[str]:
    """The fixture list topped up to 500k with the excerpt's most frequent bigrams."""
    import collections

    import pyarrow.parquet as pq

    from wit_builder.querylist.words import tokens

    entries = pq.read_table(QUERY_LIST).column("entry").to_pylist()
    with bz2.open(WIKI, "rt", encoding="utf-8") as f:
        words = tokens(f.read())
    pairs = collections.Counter(itertools.pairwise(words))
    seen = set(entries)
    for (a, b), _ in pairs.most_common():
        if len(entries) == 500_000:
            break
        if f"{a} {b}" not in seen:
            seen.add(f"{a} {b}")
            entries.append(f"{a} {b}")
    if len(entries) < 500_000:
        raise SystemExit(f"only {len(entries)} entries could be built")
    return entries


def bare_pyahocorasick(entries: list[str]) -> Callable[[list[str]], None]:
    """Baseline: a pyahocorasick automaton (from the peers' environment) and a bare loop
    that iterates every hit of every text."""
    import ahocorasick

    automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
    for i, entry in enumerate(entries):
        automaton.add_word(f" {entry} ", i)
    automaton.make_automaton()

    def loop(padded: list[str]) -> None:
        for text in padded:
            for _ in automaton.iter(text):
                pass
    return loop


def raw_rs_scan(entries: list[str]) -> Callable[[list[str]], None]:
    """Second baseline: ahocorasick-rs's own scan of each text, overlapping matches."""
    import ahocorasick_rs

    automaton = ahocorasick_rs.AhoCorasick(
        [f" {e} " for e in entries],
        implementation=ahocorasick_rs.Implementation.ContiguousNFA)

    def loop(padded: list[str]) -> None:
        for text in padded:
            automaton.find_matches_as_indexes(text, overlapping=True)
    return loop


def bench_match(repeats: int) -> dict[str, float]:
    import pyarrow.parquet as pq

    from wit_builder.curate.matching import match_df, normalize_text
    from wit_builder.spark import get_spark

    texts = [t for t in pq.read_table(ALT_TEXTS).column("TEXT").to_pylist() if t] * repeats
    entries = five_hundred_k_entries()
    padded = [f" {t} " for t in texts]
    normalized = [normalize_text(t) for t in texts]  # the rule's text, prepared untimed
    loop, rs_loop = bare_pyahocorasick(entries), raw_rs_scan(entries)
    cores = os.cpu_count() or 1
    spark = get_spark(f"local[{cores}]", "wit-bench-match",
                      {"spark.sql.shuffle.partitions": str(cores)})
    df = spark.createDataFrame(pa.table({"text": texts}).to_pandas()) \
        .repartition(cores).cache()
    df.count()
    run = lambda: match_df(df, entries).write.format("noop").mode("overwrite").save()  # noqa: E731
    run()  # warm-up: each Python worker builds its automaton once
    timed = interleaved(5, {"bare": functools.partial(loop, padded),
                            "rule": functools.partial(loop, normalized),
                            "rs": functools.partial(rs_loop, normalized), "spark": run})
    bare, rule, rs, inside = (timed[k] for k in ("bare", "rule", "rs", "spark"))
    del loop, rs_loop
    spark.stop()
    n = len(texts)
    Path(tempfile.gettempdir(), "wit-bench-entries.txt").write_text("\n".join(entries))
    load = ("from pathlib import Path\nimport tempfile\n"
            "from wit_builder.curate.matching import build_automaton\n"
            "entries = Path(tempfile.gettempdir(), 'wit-bench-entries.txt')"
            ".read_text().split('\\n')\n")
    rss_before = peak_rss_mib(load)  # a worker with the list loaded, no automaton yet
    rss = peak_rss_mib(load + "automaton = build_automaton(entries)")
    spark_core = inside["median"] * cores
    return {"texts": n, "entries": len(entries), "cores": cores,
            "bare_texts_s_core": round(n / bare["median"]),
            "bare_cpu_texts_s": round(n / bare["cpu_median"]),
            "bare_normalized_texts_s_core": round(n / rule["median"]),
            "rs_scan_texts_s_core": round(n / rs["median"]),
            "spark_texts_s_core": round(n / spark_core),
            "spark_vs_bare": round(bare["median"] / spark_core, 3),
            "spark_vs_bare_best": round(bare["best"] / (inside["best"] * cores), 3),
            "spark_vs_bare_normalized": round(rule["median"] / spark_core, 3),
            "spark_vs_rs_scan": round(rs["median"] / spark_core, 3),
            "automaton_peak_rss_mib": rss, "before_automaton_rss_mib": rss_before}


def page_files(target_mb: float, folder: Path) -> tuple[Path, Path]:
    """(WARC, WAT) of the same pages: copies of the fixture WARC records (the CC-MAIN
    excerpt and the EUC-JP pages) with every alt/title and image URL tagged by its copy
    number, so texts are distinct as in a real crawl and no cache hides the per-text
    cost; the WAT is built from those pages in Common Crawl's layout. One gzip member per
    record; about `target_mb` MB of WARC."""
    from tests import warcs

    records = warcs.raw_records(warcs.CC_EXCERPT) + warcs.raw_records(warcs.CLUEWEB)
    warc, wat = folder / "pages.warc.gz", folder / "pages.warc.wat.gz"
    tagged = tagged_copies(records, target_mb)
    warc.write_bytes(warcs.per_record_gzip(tagged))
    wat.write_bytes(warcs.per_record_gzip(warcs.wat_records(b"".join(tagged))))
    return warc, wat


def tagged_copies(records: list[bytes], target_mb: float) -> list[bytes]:
    """Copies of `records` (about `target_mb` MB gzipped), texts and URLs made distinct."""
    from tests import warcs

    copies = max(1, round(target_mb * 1e6 / len(warcs.per_record_gzip(records))))
    return [warcs.with_distinct_alts(r, f"c{k}r{i}")
            for k in range(copies) for i, r in enumerate(records)]


def utf8_page_file(target_mb: float, folder: Path) -> Path:
    """A WARC of the fixture's UTF-8 HTML pages only, tagged as in `page_files`: the
    fixture mix is 85% pages in other charsets (EUC-JP, GB18030...), which ours decode and
    the bare loop reads as UTF-8; Common Crawl's pages are mostly UTF-8."""
    from fastwarc import ArchiveIterator, WarcRecordType

    from tests import warcs
    from wit_builder.curate.html import sniff_charset

    def is_utf8_html(raw: bytes) -> bool:
        for r in ArchiveIterator(io.BytesIO(raw), record_types=WarcRecordType.response,
                                 parse_http=True, quirks_mode=True):
            return ("html" in (r.http_content_type or "")
                    and sniff_charset(r.reader.read(), r.http_charset) == "utf-8")
        return False

    records = [r for r in warcs.raw_records(warcs.CC_EXCERPT) if is_utf8_html(r)]
    path = folder / "utf8.warc.gz"
    path.write_bytes(warcs.per_record_gzip(tagged_copies(records, target_mb)))
    return path


def bare_warc_pairs(path: Path) -> list[tuple[str, str]]:
    """Baseline: the shortest loop that gives cc2dataset's pairs from a WARC — fastwarc,
    selectolax on HTML responses, non-empty alt, urljoin against the page URL."""
    from urllib.parse import urljoin

    from fastwarc import ArchiveIterator, WarcRecordType
    from selectolax.lexbor import LexborHTMLParser

    pairs = []
    for record in ArchiveIterator(str(path), record_types=WarcRecordType.response,
                                  parse_http=True, quirks_mode=True):
        if "html" not in (record.http_content_type or ""):
            continue
        page = record.headers.get("WARC-Target-URI")
        for img in LexborHTMLParser(record.reader.read()).css("img[src]"):
            alt = img.attributes.get("alt")
            if alt:
                pairs.append((urljoin(page, img.attributes["src"]), alt))
    return pairs


def cc2dataset_pairs(path: Path) -> list[tuple[str, str]]:
    """Peer: cc2dataset's own per-file function on the WAT (uid, url, alt, file, page)."""
    import logging

    from cc2dataset.main import process_wat
    from loguru import logger

    logger.remove()  # it logs every file at INFO
    logging.disable(logging.INFO)
    return [(url, alt) for _, url, alt, _, _ in process_wat(str(path), "image")]


def our_pairs(path: Path, params: object) -> list[tuple[str, str]]:
    """(url, text) of `file_batches` (what one Spark task runs) on one file."""
    from wit_builder.curate.extract import file_batches, new_counts

    batches = list(file_batches(str(path), params, new_counts()))
    return [(u, t) for b in batches for u, t in zip(
        b.column("url").to_pylist(), b.column("text").to_pylist(), strict=True)]


def lid_only(texts: list[str]) -> None:
    """The language-ID floor: one fastText prediction per text, nothing else."""
    from wit_builder.curate.lid import load_model, resolve_model_path

    predict = load_model(resolve_model_path(None)).f.predict  # the binding, as ours calls it
    for text in texts:
        predict(text + "\n", 1, 0.0, "strict")


def json_only(path: Path) -> None:
    """Floor of any WAT extractor: every metadata record's JSON parsed, nothing else."""
    import orjson
    from fastwarc import ArchiveIterator, WarcRecordType

    for record in ArchiveIterator(str(path), record_types=WarcRecordType.metadata):
        orjson.loads(record.reader.read())


def html_only(path: Path) -> None:
    """Floor of any WARC extractor: every HTML page parsed and its images queried."""
    from fastwarc import ArchiveIterator, WarcRecordType
    from selectolax.lexbor import LexborHTMLParser

    for record in ArchiveIterator(str(path), record_types=WarcRecordType.response,
                                  parse_http=True, quirks_mode=True):
        if "html" in (record.http_content_type or ""):
            LexborHTMLParser(record.reader.read()).css("img[src]")


CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def bench_extract(target_mb: float) -> dict[str, float]:
    from wit_builder.curate.extract import ExtractParams

    with_lid = ExtractParams(attrs=("alt",))  # English, score ≥ 0.5: LID on every text
    all_langs = ExtractParams(lang=None, min_lang_score=0.0, attrs=("alt",))
    no_lid = ExtractParams(lang=None, min_lang_score=0.0, attrs=("alt",), lid=False)
    with tempfile.TemporaryDirectory() as tmp:
        warc, wat = page_files(target_mb, Path(tmp))
        utf8 = utf8_page_file(target_mb / 3, Path(tmp))
        pairs_utf8 = len(bare_warc_pairs(utf8))
        assert len(our_pairs(utf8, all_langs)) == pairs_utf8
        theirs = cc2dataset_pairs(wat)
        bare = bare_warc_pairs(warc)
        ours_all = our_pairs(wat, all_langs)
        ours_en = our_pairs(wat, with_lid)
        texts = [t for _, t in ours_all]
        times = {name: t["median"] for name, t in interleaved(5, {
            "cc": lambda: cc2dataset_pairs(wat), "wat": lambda: our_pairs(wat, with_lid),
            "wat_no_lid": lambda: our_pairs(wat, no_lid), "lid": lambda: lid_only(texts),
            "bare": lambda: bare_warc_pairs(warc), "warc": lambda: our_pairs(warc, with_lid),
            "warc_no_lid": lambda: our_pairs(warc, no_lid), "json": lambda: json_only(wat),
            "html": lambda: html_only(warc), "bare_utf8": lambda: bare_warc_pairs(utf8),
            "warc_utf8": lambda: our_pairs(utf8, with_lid),
            "warc_utf8_no_lid": lambda: our_pairs(utf8, no_lid)}).items()}
        t_cc, t_bare, t_lid = times["cc"], times["bare"], times["lid"]
        t_wat, t_wat_no_lid = times["wat"], times["wat_no_lid"]
        t_warc, t_warc_no_lid = times["warc"], times["warc_no_lid"]
        rss = peak_rss_mib("from wit_builder.curate.extract import ExtractParams, "
                           "file_batches, new_counts\nparams = ExtractParams(attrs=('alt',))\n"
                           f"for _ in file_batches({str(warc)!r}, params, new_counts()): pass")
        sizes = {"warc_mb": round(warc.stat().st_size / 1e6, 1),
                 "wat_mb": round(wat.stat().st_size / 1e6, 1)}
    # ours turn control characters into spaces and collapse whitespace; theirs keep the
    # raw attribute: compare after doing the same to theirs
    theirs_set = {(u, " ".join(CONTROLS.sub(" ", a).split())) for u, a in theirs}
    return {**sizes, "pairs_cc2dataset": len(theirs), "pairs_bare_warc": len(bare),
            "pairs_ours_all_langs": len(ours_all), "pairs_ours_en": len(ours_en),
            "distinct_texts": len({t for _, t in ours_all}),
            "distinct_pairs_cc2dataset": len(theirs_set),
            "distinct_pairs_ours": len(set(ours_all)),
            "distinct_pairs_in_both": len(theirs_set & set(ours_all)),
            "cc2dataset_pairs_s_core": round(len(theirs) / t_cc),
            "bare_warc_pairs_s_core": round(len(bare) / t_bare),
            "lid_only_texts_s_core": round(len(ours_all) / t_lid),
            "wat_pairs_s_core": round(len(theirs) / t_wat),
            "warc_pairs_s_core": round(len(bare) / t_warc),
            "warc_mb_s_core": round(sizes["warc_mb"] / t_warc, 2),
            "wat_vs_cc2dataset": round(t_cc / t_wat, 3),
            "wat_no_lid_vs_cc2dataset": round(t_cc / t_wat_no_lid, 3),
            "lid_alone_vs_cc2dataset": round(t_cc / t_lid, 3),
            "wat_vs_cc2dataset_plus_lid": round((t_cc + t_lid) / t_wat, 3),
            "wat_floor_vs_cc2dataset": round(t_cc / (times["json"] + t_lid), 3),
            "warc_vs_bare": round(t_bare / t_warc, 3),
            "warc_no_lid_vs_bare": round(t_bare / t_warc_no_lid, 3),
            "warc_vs_bare_plus_lid": round((t_bare + t_lid) / t_warc, 3),
            "warc_floor_vs_bare": round(t_bare / (times["html"] + t_lid), 3),
            "pairs_utf8_pages": pairs_utf8,
            "warc_utf8_vs_bare": round(times["bare_utf8"] / times["warc_utf8"], 3),
            "warc_utf8_no_lid_vs_bare": round(times["bare_utf8"] / times["warc_utf8_no_lid"],
                                              3),
            "extract_peak_rss_mib": rss}


# name -> function of the parsed arguments; each returns its figures, baseline included.
BENCHMARKS: dict[str, Callable[[argparse.Namespace], dict[str, float]]] = {
    "querylist": lambda args: bench_querylist(args.copies, args.job_copies),
    "match": lambda args: bench_match(args.match_repeats),
    "extract": lambda args: bench_extract(args.extract_mb),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), default=None)
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--job-copies", type=int, default=64)
    parser.add_argument("--match-repeats", type=int, default=300)
    parser.add_argument("--extract-mb", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    names = [args.only] if args.only else list(BENCHMARKS)
    results = {name: BENCHMARKS[name](args) for name in names}
    for name, figures in results.items():
        print(f"== {name}")
        for key, value in figures.items():
            print(f"  {key:>18}: {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
