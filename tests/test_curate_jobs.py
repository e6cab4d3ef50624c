"""The Spark curation jobs on real data: extract, match, balance, curate, resume."""

from __future__ import annotations

import functools
import http.server
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests import warcs
from tests.builders import (
    FIXTURES,
    REPO,
    GatedServer,
    LocalServer,
    digest,
    repo_env,
    wait_for_event,
)
from wit_builder.curate import match_job, matching
from wit_builder.curate.balance_job import run as run_balance
from wit_builder.curate.configs import BalanceConfig, CurateConfig, ExtractConfig, MatchConfig
from wit_builder.curate.curate_job import run as run_curate
from wit_builder.curate.extract_job import run as run_extract
from wit_builder.curate.hygiene import pair_uid
from wit_builder.curate.matching import match_df, normalize_text
from wit_builder.curate.pairs import PAIRS_FILE
from wit_builder.errors import InputError
from wit_builder.outputs import read_stats

ALT_TEXTS = FIXTURES / "alt_text" / "laion-alt-text-1000.parquet"
QUERY_LIST = REPO / "query_lists" / "enwiki-fixture" / "entries.parquet"
WARC_GLOB = str(warcs.WARC_DIR / "*")
PAIR_TYPES = {"uid": pa.string(), "url": pa.string(), "text": pa.string(),
              "attr": pa.string(), "page_url": pa.string(), "lang": pa.string(),
              "lang_score": pa.float32(), "source_file": pa.string()}


def read_sorted(path: Path) -> pa.Table:
    return pq.read_table(path).sort_by("uid")


def accounted(stats: dict) -> bool:
    return stats["rows_in"] - sum(stats["drops"].values()) == stats["rows_out"]


@pytest.fixture(scope="module")
def entries_txt(tmp_path_factory) -> Path:
    """20k entries of the fixture query list: all non-WordNet ones (common words, as in
    the real list) and the first WordNet names; small enough for the naive check."""
    table = pq.read_table(QUERY_LIST).to_pylist()
    common = [r["entry"] for r in table if r["source"] != "wordnet"]
    wordnet = [r["entry"] for r in table if r["source"] == "wordnet"]
    entries = common + wordnet[:20_000 - len(common)]
    path = tmp_path_factory.mktemp("entries") / "entries.txt"
    path.write_text("".join(f"{e}\n" for e in entries))
    return path


@pytest.fixture(scope="module")
def alt_pairs(tmp_path_factory) -> Path:
    """The 1000 real alt-texts as an extract-stage output (pairs.parquet)."""
    src = pq.read_table(ALT_TEXTS).to_pylist()
    rows = [r for r in src if r["TEXT"] and r["URL"]]
    table = pa.table({
        "uid": [pair_uid(r["URL"], r["TEXT"]) for r in rows],
        "url": [r["URL"] for r in rows], "text": [r["TEXT"] for r in rows],
        "attr": ["alt"] * len(rows), "page_url": [None] * len(rows),
        "lang": ["en"] * len(rows), "lang_score": pa.array([1.0] * len(rows), pa.float32()),
        "source_file": [str(ALT_TEXTS)] * len(rows)})
    out = tmp_path_factory.mktemp("alt") / "extract"
    (out / PAIRS_FILE).mkdir(parents=True)
    pq.write_table(table, out / PAIRS_FILE / "part-0.parquet")
    return out


@pytest.fixture(scope="module")
def extracted(spark, tmp_path_factory):
    cfg = ExtractConfig(warc=[WARC_GLOB], out=tmp_path_factory.mktemp("ex") / "extract")
    return run_extract(cfg, spark), cfg


def test_extract_job_output_contract(extracted):
    result, _ = extracted
    table = pq.read_table(result.out_dir / PAIRS_FILE)
    assert {f.name: f.type for f in table.schema} == PAIR_TYPES
    rows = table.to_pylist()
    assert rows and len({r["uid"] for r in rows}) == len(rows)
    assert all(r["uid"] == pair_uid(r["url"], r["text"]) for r in rows)
    assert all(r["lang"] == "en" and r["lang_score"] >= 0.5 for r in rows)
    stats = result.marker["stats"]
    assert accounted(stats) and stats["rows_out"] == len(rows)
    assert stats["drops"]["lang_not_en"] > 0 and stats["records"]["html_pages"] == 47
    files = pq.read_table(result.out_dir / "file_counts.parquet").to_pylist()
    assert {f["source_file"] for f in files} == {str(p) for p in warcs.WARC_DIR.iterdir()}


def test_extract_rerun_skips_and_is_deterministic(spark, extracted, tmp_path):
    result, cfg = extracted
    assert run_extract(cfg, spark).status == "skipped"
    again = run_extract(cfg.model_copy(update={"out": tmp_path / "again"}), spark)
    assert read_sorted(again.out_dir / PAIRS_FILE).equals(
        read_sorted(result.out_dir / PAIRS_FILE))


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving the WARC fixtures."""
    server = LocalServer(functools.partial(http.server.SimpleHTTPRequestHandler,
                                           directory=str(warcs.WARC_DIR)))
    yield server.url
    server.close()


def test_manifest_with_local_and_http_entries(spark, http_server, tmp_path):
    local = tmp_path / "local.warc.gz"
    local.write_bytes(warcs.CLIPPED.read_bytes())
    manifest = tmp_path / "files.txt"
    manifest.write_text(f"# two files\n{http_server}/{warcs.CC_EXCERPT.name}\n\nlocal.warc.gz\n")
    cfg = ExtractConfig(manifest=str(manifest), out=tmp_path / "m", lang=None,
                        min_lang_score=0.0)
    by_manifest = pq.read_table(run_extract(cfg, spark).out_dir / PAIRS_FILE)
    cfg = ExtractConfig(warc=[str(warcs.CC_EXCERPT), str(warcs.CLIPPED)], out=tmp_path / "g",
                        lang=None, min_lang_score=0.0)
    by_glob = pq.read_table(run_extract(cfg, spark).out_dir / PAIRS_FILE)
    assert by_manifest.num_rows == by_glob.num_rows > 30
    assert sorted(by_manifest.column("uid").to_pylist()) == \
        sorted(by_glob.column("uid").to_pylist())
    assert any(f.startswith(http_server) for f in by_manifest.column("source_file").to_pylist())


def test_missing_inputs_are_clear_errors(tmp_path):
    manifest = tmp_path / "m.txt"
    manifest.write_text("nope.warc.gz\n")
    with pytest.raises(InputError, match="missing file"):
        run_extract(ExtractConfig(manifest=str(manifest), out=tmp_path / "o"))
    with pytest.raises(InputError, match="no file matches"):
        run_extract(ExtractConfig(warc=[str(tmp_path / "*.warc.gz")], out=tmp_path / "o"))


def naive_ids(entries: list[str], text: str) -> list[int]:
    """Reference matcher: the rule's substring test, entry by entry."""
    padded = normalize_text(text)
    return [i for i, e in enumerate(entries) if e and f" {e} " in padded]


@pytest.fixture(scope="module")
def matched(spark, alt_pairs, entries_txt, tmp_path_factory):
    cfg = MatchConfig(pairs=alt_pairs, entries=entries_txt,
                      out=tmp_path_factory.mktemp("match") / "match")
    return match_job.run(cfg, spark)


def test_match_job_equals_naive_reference(matched, alt_pairs, entries_txt):
    entries = entries_txt.read_text().splitlines()
    source = pq.read_table(alt_pairs / PAIRS_FILE).to_pylist()
    expected = {r["uid"]: naive_ids(entries, r["text"]) for r in source}
    expected = {uid: ids for uid, ids in expected.items() if ids}
    got = {r["uid"]: r["entry_ids"] for r in
           pq.read_table(matched.out_dir / PAIRS_FILE).to_pylist()}
    assert got == expected and len(got) > 500
    stats = matched.marker["stats"]
    assert accounted(stats) and stats["drops"]["no_match"] == len(source) - len(got)


def worker_automata(df) -> dict[int, tuple[str, int]]:
    """{SQL Python worker pid: (cached list keys, build times)}: the probe runs where
    ``mapInArrow`` tasks run (Spark keeps those workers apart from RDD workers)."""

    def cache_rows(batches):  # nested: pickled by value, the workers lack tests/
        for _ in batches:
            cache = matching.cached_automata()
            yield pa.RecordBatch.from_pydict({"pid": [os.getpid()], "key": [",".join(cache)],
                                              "obj": [sum(cache.values())]})

    rows = df.mapInArrow(cache_rows, "pid long, key string, obj long").collect()
    return {r.pid: (r.key, r.obj) for r in rows}


def test_automaton_built_once_per_worker_and_reused_across_jobs(spark):
    texts = spark.createDataFrame([(f"a red car {i}",) for i in range(64)], "text string")
    texts = texts.repartition(8)
    entries = ["car", "red"]
    first = match_df(texts, entries).collect()
    key = matching.list_key(entries)
    before = {pid: c for pid, c in worker_automata(texts).items() if c[0] == key}
    second = match_df(texts, entries).collect()
    after = {pid: c for pid, c in worker_automata(texts).items() if c[0] == key}
    assert before, "no worker holds the automaton after a match job"
    assert set(before) & set(after), "no worker ran both jobs"
    assert {pid: after[pid] for pid in before if pid in after} == \
        {pid: before[pid] for pid in before if pid in after}  # same build time: not rebuilt
    assert sorted(r.entry_ids for r in first) == sorted(r.entry_ids for r in second)
    assert all(r.entry_ids == [0, 1] for r in first)


@pytest.fixture(scope="module")
def balanced(spark, matched, entries_txt, tmp_path_factory):
    cfg = BalanceConfig(pairs=matched.out_dir, entries=entries_txt, t=5,
                        out=tmp_path_factory.mktemp("bal") / "balance")
    return run_balance(cfg, spark), cfg


def test_balance_job_counts_and_bounds(balanced, matched):
    result, cfg = balanced
    counts = pq.read_table(result.out_dir / "entry_counts.parquet").to_pylist()
    matches = {c["entry_id"]: c["matches"] for c in counts}
    kept = {c["entry_id"]: c["kept"] for c in counts}
    # expectation computed here from the rule, row by row: q = 1 − Π(1 − min(1, t/count))
    rows = pq.read_table(matched.out_dir / PAIRS_FILE).column("entry_ids").to_pylist()
    q = [1 - math.prod(1 - min(1.0, cfg.t / matches[e]) for e in ids) for ids in rows]
    for e in matches:
        mine = [qr for qr, ids in zip(q, rows, strict=True) if e in ids]
        mean, var = sum(mine), sum(x * (1 - x) for x in mine)
        assert abs(kept[e] - mean) <= 5 * math.sqrt(var) + 1, e
        if matches[e] <= cfg.t:
            assert kept[e] == matches[e]  # tail entries are kept whole
    head = [e for e in matches if matches[e] > cfg.t]
    assert len(head) > 20 and sum(kept[e] for e in head) < sum(matches[e] for e in head)
    stats = result.marker["stats"]
    assert accounted(stats) and stats["balance"]["t"] == cfg.t
    assert stats["rows_out"] == pq.read_table(result.out_dir / PAIRS_FILE).num_rows
    assert {p.name for p in (result.out_dir / "plots").iterdir()} == {
        "entry_counts_rank.png", "entry_counts_hist.png"}


def test_balance_reruns_identical_and_seed_changes(spark, balanced, tmp_path):
    result, cfg = balanced
    same = run_balance(cfg.model_copy(update={"out": tmp_path / "same"}), spark)
    other = run_balance(cfg.model_copy(update={"out": tmp_path / "other", "seed": 1}), spark)
    first = read_sorted(result.out_dir / PAIRS_FILE)
    assert read_sorted(same.out_dir / PAIRS_FILE).equals(first)
    assert read_sorted(other.out_dir / PAIRS_FILE).column("uid") != first.column("uid")


def test_tail_fraction_chooses_t(spark, matched, entries_txt, tmp_path):
    cfg = BalanceConfig(pairs=matched.out_dir, entries=entries_txt, tail_fraction=0.2,
                        out=tmp_path / "tail")
    stats = run_balance(cfg, spark).marker["stats"]
    counts = pq.read_table(tmp_path / "tail" / "entry_counts.parquet").column("matches")
    t = stats["balance"]["t"]
    values = counts.to_numpy()
    assert values[values <= t].sum() >= 0.2 * values.sum()
    assert values[values < t].sum() < 0.2 * values.sum()


CURATE_ARGS = dict(lang=None, min_lang_score=0.0, t=3, seed=5)


def test_curate_equals_the_three_stages(spark, entries_txt, tmp_path):
    """`wit curate` equals extract, match and balance run as `wit pipeline` sections
    (each wired to the previous one's output); a file with both is refused."""
    import yaml

    from wit_builder import pipeline
    from wit_builder.errors import ConfigError

    cur = run_curate(CurateConfig(warc=[WARC_GLOB], entries=entries_txt,
                                  out=tmp_path / "curate", **CURATE_ARGS), spark)
    sections = {"extract": {"warc": [WARC_GLOB], "lang": "none", "min_lang_score": 0.0},
                "match": {"entries": str(entries_txt)},
                "balance": {"entries": str(entries_txt), "t": 3, "seed": 5}}
    line = tmp_path / "line.yaml"
    line.write_text(yaml.safe_dump({"out": str(tmp_path / "line"), **sections}))
    done = pipeline.run(line)
    assert list(done.outs) == ["extract", "match", "balance"]
    ba = done.results["balance"]
    assert ba.marker["config"]["pairs"] == str(tmp_path / "line" / "match")
    line.write_text(yaml.safe_dump({**sections, "curate": {"entries": str(entries_txt)}}))
    with pytest.raises(ConfigError, match="either curate or extract, match, balance"):
        pipeline.run(line)
    assert read_sorted(cur.out_dir / PAIRS_FILE).equals(
        read_sorted(ba.out_dir / PAIRS_FILE))
    assert pq.read_table(cur.out_dir / "entry_counts.parquet").equals(
        pq.read_table(ba.out_dir / "entry_counts.parquet"))
    stats = cur.marker["stats"]
    assert accounted(stats) and {"duplicate", "no_match"} <= set(stats["drops"])


def wit(*args: str) -> list[str]:
    return [sys.executable, "-m", "wit_builder.cli", *args]


def gated_manifest(tmp_path: Path, server: GatedServer) -> Path:
    """A manifest of the WARC fixtures: the Common Crawl excerpt over the gated HTTP
    server, the others local."""
    lines = [f"{server.url}/{warcs.CC_EXCERPT.name}"]
    lines += [str(p) for p in sorted(warcs.WARC_DIR.iterdir()) if p != warcs.CC_EXCERPT]
    manifest = tmp_path / "warcs.txt"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_killed_curate_reruns_to_identical_output(spark, entries_txt, tmp_path):
    """SIGKILL while extraction is running (held at the request for one WARC file, so at
    a known point, once every other file is staged), then the same command again: the
    staged files are not read again, and the output equals an unbroken run's."""
    server = GatedServer(warcs.WARC_DIR, gated=warcs.CC_EXCERPT.name)
    manifest = gated_manifest(tmp_path, server)
    out = tmp_path / "killed"
    args = wit("curate", "--manifest", str(manifest), "--entries", str(entries_txt),
               "--out", str(out), "--lang", "none", "--min-lang-score", "0", "--t", "3",
               "--seed", "5", "--master", "local[2]")
    proc = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=repo_env())
    wait_for_event(server.arrived, proc)
    work = next(tmp_path.glob(".killed.work-*"))  # killed mid-stage
    others = len(manifest.read_text().split()) - 1
    staged = work / "staging" / "counts"
    deadline = time.monotonic() + 180
    while len(list(staged.glob("*.parquet"))) < others and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(list(staged.glob("*.parquet"))) == others
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing half-written where readers look
    server.release()
    subprocess.run(args, check=True, capture_output=True, env=repo_env())
    assert not list(tmp_path.glob(".killed.work-*"))  # the work dir became the output
    assert not (out / "staging").exists()
    assert read_stats(out)["files_resumed"] == others
    reference = run_curate(CurateConfig(manifest=str(manifest), entries=entries_txt,
                                        out=tmp_path / "ref", **CURATE_ARGS), spark)
    server.close()
    assert read_sorted(out / PAIRS_FILE).equals(read_sorted(reference.out_dir / PAIRS_FILE))
    assert read_sorted(out / PAIRS_FILE).num_rows > 0


# Pinned outputs (see `builders.digest`) on the fixture WARCs and the 1000 real alt-texts.
PINNED_PAIRS = {"en": ("b0cb85fbb811ef91", 7), "all": ("c36c52bf4862c984", 55)}
PINNED_MATCHES = ("e10d2b958e4d9c3b", 683)


def pinned_pairs(result) -> tuple[str, int]:
    table = pq.read_table(result.out_dir / PAIRS_FILE)
    rows = [(r["uid"], r["url"], r["text"], r["attr"], r["page_url"], r["lang"],
             round(r["lang_score"], 4), Path(r["source_file"]).name)
            for r in table.to_pylist()]
    drops = sorted(result.marker["stats"]["drops"].items())
    return digest([*rows, *drops]), len(rows)


def test_extracted_pairs_and_drops_are_pinned(spark, extracted, tmp_path):
    """English pairs (the default), and every pair with no language filter."""
    assert pinned_pairs(extracted[0]) == PINNED_PAIRS["en"]
    every = run_extract(ExtractConfig(warc=[WARC_GLOB], out=tmp_path / "all", lang=None,
                                      min_lang_score=0.0), spark)
    assert pinned_pairs(every) == PINNED_PAIRS["all"]


def test_match_sets_are_pinned(matched):
    table = pq.read_table(matched.out_dir / PAIRS_FILE, columns=["uid", "entry_ids"])
    rows = [(r["uid"], sorted(r["entry_ids"])) for r in table.to_pylist()]
    assert (digest(rows), len(rows)) == PINNED_MATCHES
