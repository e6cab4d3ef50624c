"""Benchmark runner: every figure is printed as a ratio against a named baseline that is
measured in the same run, on the same input and machine.

    python benchmarks/run.py [--only querylist] [--copies 6] [--json out.json]

querylist
    Input: the fixture Wikipedia excerpt repeated `--copies` times as a multistream bz2
    (the layout of real ``pages-articles-multistream`` dumps). Figures are MB/s/core of
    *compressed* input. Baseline: ``bzcat FILE > /dev/null`` (one core). Measured: (a) the
    per-task scan (`scan_batches`, what one Spark task runs: XML, wikitext, tokens,
    counts) on one core, and (b) the whole `wit querylist` Spark job in local mode
    (start-up, scan, aggregation, selection, writing) divided by its cores.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("WIT_FIXTURES", REPO.parent / "shared" / "fixtures"))
WIKI = (FIXTURES / "wikipedia"
        / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """Fastest wall time of `repeats` calls (least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_multistream(copies: int, target: Path) -> Path:
    """`copies` concatenated bz2 streams of the fixture dump."""
    data = WIKI.read_bytes()
    target.write_bytes(data * copies)
    return target


def scan_one_core(path: Path) -> None:
    """Run the Spark task body over the whole file in this process (one core)."""
    from wit_builder.querylist.scan import scan_batches

    with bz2.open(path, "rt", encoding="utf-8") as f:
        records = f.read().split("</page>")
    batch = pa.RecordBatch.from_pydict({"value": records, "file": [str(path)] * len(records)})
    for _ in scan_batches(iter([batch]), max_keys=500_000):
        pass


def spark_job(path: Path, cores: int) -> None:
    out = Path(tempfile.mkdtemp(prefix="wit-bench-")) / "ql"
    cmd = [sys.executable, "-m", "wit_builder.cli", "querylist", "--wiki-dump", str(path),
           "--out", str(out), "--wordnet", "none", "--master", f"local[{cores}]",
           "--min-count", "20", "--min-pmi", "12"]
    subprocess.run(cmd, check=True, capture_output=True)
    shutil.rmtree(out.parent)


def bench_querylist(copies: int) -> dict[str, float]:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        path = make_multistream(copies, Path(tmp) / "dump.xml.bz2")
        mb = path.stat().st_size / 1e6
        t_bzcat = best_of(3, lambda: subprocess.run(
            f"bzcat {path} > /dev/null", shell=True, check=True))
        t_scan = best_of(1, lambda: scan_one_core(path))
        t_job = best_of(1, lambda: spark_job(path, cores))
    base = mb / t_bzcat
    scan = mb / t_scan
    job = mb / t_job / cores
    return {"input_mb": round(mb, 2), "cores": cores,
            "bzcat_mb_s_core": round(base, 3),
            "scan_mb_s_core": round(scan, 3), "scan_vs_bzcat": round(scan / base, 3),
            "job_mb_s_core": round(job, 3), "job_vs_bzcat": round(job / base, 3)}


# name -> function of the parsed arguments; each returns its figures, baseline included.
BENCHMARKS: dict[str, Callable[[argparse.Namespace], dict[str, float]]] = {
    "querylist": lambda args: bench_querylist(args.copies),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), default=None)
    parser.add_argument("--copies", type=int, default=6)
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
