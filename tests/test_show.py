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


# `wit show DIR --rows 3` in this process, then its own peak RSS (KiB) on stderr
PEAK_OF_SHOW = """
import resource, runpy, sys
sys.argv = ["wit", "show", sys.argv[1], "--rows", "3"]
try:
    runpy.run_module("wit_builder.cli", run_name="__main__")
except SystemExit as e:
    if e.code:
        raise
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""
