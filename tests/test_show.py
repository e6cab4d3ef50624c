"""`wit show` reads only what it shows: counts from Parquet metadata, the preview from
the first row group, whatever the size of the output."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tests.builders import repo_env
from wit_builder.config import StageConfig
from wit_builder.curate.pairs import PAIR_SCHEMA, PAIRS_FILE
from wit_builder.outputs import run_stage
from wit_builder.stats import StageStats

ROWS = 5_000_000
PER_FILE = 500_000


def pairs_part(start: int, stop: int) -> pa.Table:
    """Pairs `start`..`stop` (uid, url, caption, page, language; other columns null)."""
    ids = pa.array(np.arange(start, stop)).cast(pa.string())
    given = {"uid": pc.utf8_lpad(ids, 24, "0"),
             "url": pc.binary_join_element_wise("http://example.com/img/", ids, ".jpg", ""),
             "text": pc.binary_join_element_wise("a caption for picture number ", ids, ""),
             "page_url": pc.binary_join_element_wise("http://example.com/p/", ids, ""),
             "lang": pa.array(["en"] * (stop - start))}
    return pa.table({f.name: given.get(f.name, pa.nulls(stop - start, f.type))
                     for f in PAIR_SCHEMA}, schema=PAIR_SCHEMA)


def big_pairs_output(out):
    """A finished extraction output of ROWS pairs in files of PER_FILE rows."""
    def body(tmp):
        (tmp / PAIRS_FILE).mkdir()
        for start in range(0, ROWS, PER_FILE):
            pq.write_table(pairs_part(start, start + PER_FILE),
                           tmp / PAIRS_FILE / f"part-{start // PER_FILE:05d}.parquet",
                           row_group_size=100_000)
        return StageStats("extract", rows_in=ROWS, rows_out=ROWS)
    return run_stage("extract", 1, StageConfig(out=out), [], body)


def test_wit_show_on_five_million_pairs_reads_a_row_group(tmp_path):
    """5M pairs: the count is right, the preview is the first rows, and the process
    peaks under 300 MB (reading the columns whole took over 800 MB)."""
    big_pairs_output(tmp_path / "pairs")
    done = subprocess.run([sys.executable, "-c", PEAK_OF_SHOW, str(tmp_path / "pairs")],
                          env=repo_env(COLUMNS="200"), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "(5,000,000 pairs)" in done.stdout
    assert "a caption for picture number 2 " in done.stdout
    assert "picture number 3 " not in done.stdout
    peak_mb = int(done.stderr.strip().splitlines()[-1]) / 1024
    assert peak_mb < 300, peak_mb


# `wit show DIR --rows 3` in this process, then its own peak RSS (KiB) on stderr: the
# kernel's high-water mark of this process' memory (getrusage's maxrss would carry the
# parent's over the exec)
PEAK_OF_SHOW = """
import runpy, sys
sys.argv = ["wit", "show", sys.argv[1], "--rows", "3"]
try:
    runpy.run_module("wit_builder.cli", run_name="__main__")
except SystemExit as e:
    if e.code:
        raise
status = open("/proc/self/status").read().split("VmHWM:")[1]
print(status.split()[0], file=sys.stderr)
"""


def test_peek_reads_heads_counts_and_seeded_samples_of_a_dataset(tmp_path):
    """A Spark-style dataset (several files and row groups, a _SUCCESS and .crc files
    beside them): the head is the first rows in file order, the count is exact, a sample
    is the same rows for the same seed, distinct rows of the dataset, and another seed
    draws others."""
    from wit_builder import peek

    folder = tmp_path / "d"
    folder.mkdir()
    for n in range(3):
        part = pa.table({"i": pa.array(range(n * 1000, (n + 1) * 1000)),
                         "s": pa.array([f"row {k}" for k in range(n * 1000, (n + 1) * 1000)])})
        pq.write_table(part, folder / f"part-{n:05d}.parquet", row_group_size=128)
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-00000.parquet.crc").write_bytes(b"\0")
    first, total = peek.head(folder, ["s"], 4)
    assert total == 3000 and first.column("s").to_pylist() == [f"row {k}" for k in range(4)]
    one = peek.sample(folder, ["i", "s"], 50, seed=7)
    assert one.equals(peek.sample(folder, ["i", "s"], 50, seed=7))
    values = one.column("i").to_pylist()
    assert len(set(values)) == 50 and all(0 <= v < 3000 for v in values)
    assert one.column("s").to_pylist() == [f"row {v}" for v in values]
    assert values != peek.sample(folder, ["i"], 50, seed=8).column("i").to_pylist()
    assert peek.sample(folder, ["i"], 5000, seed=1).num_rows == 3000  # all, none twice
