"""The `wit overlap` output: its files, how they are written and how they are read.

* ``overlap.parquet`` — a Parquet dataset (a folder written by the executors, in (uid,
  rank) order): uid, shard, key, eval_set, eval_split, eval_index, eval_id,
  score (Hamming bits for phash, cosine otherwise), rank, method: one row per (pool
  sample, eval image) past the threshold among the k nearest.
* ``near.parquet`` — a dataset of the same columns for neighbours just short of the threshold.
* ``filtered/`` — the pool shards without the matched samples, with ``sizes.json``.
* ``eval_sets.json`` — per set: eval images, unreadable, pool samples scanned, matches.
* ``neighbours/SHARD.parquet`` — the scores the decision was made from: every pool
  sample's k nearest eval images (``kind`` neighbour, `ROW_SCHEMA`) and the shard's
  counters; ``eval_index/`` — the eval sets' faiss index, its rows and counts. A run that
  differs from a finished output only in its decision (`DECISION_FIELDS`: thresholds,
  near) takes both over (`take_scores`) instead of embedding anything again.

Readers (`wit overlap report`, `explore`, the demo) go through `overlap_run`,
`read_matches`, `iter_rows`, `hit_eval_images`, `read_eval_sets` and
`filtered_pattern`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from wit_builder import tarshards
from wit_builder.errors import InputError
from wit_builder.outputs import MARKER, finished, marker_or_none
from wit_builder.overlap.methods import Method
from wit_builder.peek import parquet_files
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

STAGE = "overlap"
OVERLAP_FILE = "overlap.parquet"
NEAR_FILE = "near.parquet"
FILTERED_DIR = "filtered"
EVAL_SETS_FILE = "eval_sets.json"
NEIGHBOURS_DIR = "neighbours"
EVAL_INDEX_DIR = "eval_index"
ROW_SCHEMA = pa.schema([
    ("kind", pa.string()), ("uid", pa.string()), ("shard", pa.string()),
    ("key", pa.string()), ("eval_set", pa.string()), ("eval_split", pa.string()),
    ("eval_index", pa.int64()), ("eval_id", pa.string()), ("score", pa.float64()),
    ("rank", pa.int32()), ("method", pa.string()), ("n", pa.int64()),
])
MATCH_COLUMNS = ("uid", "shard", "key", "eval_set", "eval_split", "eval_index", "eval_id",
                 "score", "rank", "method")


def filtered_pattern(out: Path | str) -> str:
    """The shard pattern of an overlap output's filtered pool (what `train` reads)."""
    return tarshards.pattern(Path(out) / FILTERED_DIR)


def overlap_run(path: Path) -> dict[str, Any]:
    """The config of the `wit overlap` output at `path` plus its ``stats``; `InputError`
    if it is not one."""
    marker = finished(path, STAGE)
    return {**marker["config"], "stats": marker["stats"]}


def recorded_method(run: dict[str, Any]) -> Method:
    """The method and thresholds the overlap run used (from its stats; no model needed)."""
    kind = run["method"].partition(":")[0]
    stats = run["stats"]
    return Method(run["method"], kind, float(stats["threshold"]), binary=kind == "phash",
                  thresholds=stats.get("thresholds") or {})


def read_matches(path: Path, columns: list[str] | None = None) -> pa.Table:
    """``overlap.parquet`` of a finished overlap output."""
    return pq.read_table(Path(path) / OVERLAP_FILE, columns=columns)


def iter_rows(path: Path, which: str = OVERLAP_FILE, columns: list[str] | None = None,
              batch_rows: int = 65_536) -> Iterator[dict[str, Any]]:
    """The rows of ``overlap.parquet`` (or `which`: ``near.parquet``) of a finished output,
    one batch in memory at a time (a pool can copy eval images millions of times)."""
    for name in parquet_files(Path(path) / which):
        for batch in pq.ParquetFile(name).iter_batches(batch_size=batch_rows,
                                                       columns=columns):
            yield from batch.to_pylist()


def hit_eval_images(path: Path) -> dict[tuple[str, str], set[int]]:
    """{(eval set, split): eval indices with at least one match}: bounded by the eval
    sets' size, whatever the number of matches."""
    hits: dict[tuple[str, str], set[int]] = {}
    for m in iter_rows(path, columns=["eval_set", "eval_split", "eval_index"]):
        hits.setdefault((m["eval_set"], m["eval_split"]), set()).add(m["eval_index"])
    return hits


def read_eval_sets(path: Path) -> dict[str, dict]:
    """``eval_sets.json`` of a finished overlap output."""
    return json.loads((Path(path) / EVAL_SETS_FILE).read_text())


def input_files(path: Path) -> list[str]:
    """The files of an overlap output whose fingerprints identify it for a reader."""
    return [*map(str, parquet_files(Path(path) / OVERLAP_FILE)), str(Path(path) / MARKER)]


def write_neighbours(work: Path, rows: DataFrame) -> None:
    """``overlap.parquet`` (matches) and ``near.parquet`` (borderline non-matches):
    Parquet datasets in (uid, rank) order, written by the executors."""
    from pyspark.sql import functions as F

    for kind, name in (("match", OVERLAP_FILE), ("near", NEAR_FILE)):
        chosen = rows.filter(F.col("kind") == kind).select(*MATCH_COLUMNS)
        chosen.orderBy("uid", "rank").write.parquet(str(work / name))


def shard_counts(rows: DataFrame) -> list[dict[str, Any]]:
    """The per-shard counters (scanned, unreadable, matched): a few rows per shard."""
    return [r.asDict() for r in rows.filter("kind = 'count'").select("shard", "key", "n")
            .collect()]


def per_set(rows: DataFrame, sets: dict[str, dict]) -> dict[str, dict]:
    """Per eval set: its images, unreadable ones, and the pool samples it matched."""
    from pyspark.sql import functions as F

    matched = {r["eval_set"]: r["n"] for r in rows.filter(F.col("kind") == "match")
               .groupBy("eval_set").agg(F.countDistinct("uid").alias("n")).collect()}
    return {name: {**counts, "matches": matched.get(name, 0)}
            for name, counts in sets.items()}


def filtered_sizes(counts: list[dict]) -> dict[str, int]:
    """{shard: samples kept} from the per-shard ``count`` rows."""
    per_shard: dict[str, dict[str, int]] = {}
    for c in counts:
        per_shard.setdefault(c["shard"], {})[c["key"]] = c["n"]
    return {shard: n["scanned"] - n["matched"] for shard, n in sorted(per_shard.items())}


def write_summary(tmp: Path, method: Method, counts: list[dict],
                  sets: dict[str, dict]) -> StageStats:
    """sizes.json of the filtered pool, eval_sets.json and the stage's stats."""
    totals: Counter[str] = Counter()
    for c in counts:
        totals[c["key"]] += c["n"]
    tarshards.write_sizes(tmp / FILTERED_DIR, filtered_sizes(counts))
    for info in sets.values():
        info["pool_scanned"] = totals["scanned"]
    (tmp / EVAL_SETS_FILE).write_text(json.dumps(sets, indent=2) + "\n")
    if not totals["scanned"]:
        raise InputError("the pool shards hold no samples")
    stats = StageStats(STAGE, rows_in=totals["scanned"],
                       rows_out=totals["scanned"] - totals["matched"])
    stats.drop("eval_overlap", totals["matched"])
    stats.extra.update(method=method.name, threshold=method.threshold,
                       thresholds=method.thresholds,
                       unreadable_pool_images=totals["unreadable"], eval_sets=sets,
                       phash_from_manifest=totals["hashes_reused"])
    if totals["unreadable"]:
        stats.notice(f"{totals['unreadable']} pool image(s) could not be decoded (kept in "
                     "filtered/, not checked)")
    return stats


def check_thresholds(thresholds: dict[str, float], sets: dict[str, dict]) -> None:
    """`InputError` if a per-set threshold names a set that is not checked."""
    unknown = set(thresholds) - set(sets)
    if unknown:
        raise InputError(f"thresholds given for unknown eval set(s) {sorted(unknown)}; "
                         f"the sets are {sorted(sets)}")


def take_scores(previous: Path, work: Path, scoring_hash: str) -> int:
    """Hand the scores of the finished output `previous` to the run in `work` if they were
    made with the same scoring (`scoring_hash`): its ``neighbours/`` and ``eval_index/``
    files are linked (copied across filesystems). The number of shards taken."""
    marker = marker_or_none(previous)
    stats = (marker or {}).get("stats", {})
    if marker is None or marker.get("stage") != STAGE \
            or stats.get("scoring_hash") != scoring_hash:
        return 0
    taken = 0
    for sub in (NEIGHBOURS_DIR, EVAL_INDEX_DIR):
        (work / sub).mkdir(exist_ok=True)
        for path in sorted((previous / sub).glob("*")):
            if not (work / sub / path.name).exists():
                link_or_copy(path, work / sub / path.name)
                taken += sub == NEIGHBOURS_DIR
    return taken


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link `dst` to `src`, or a copy where links are not possible."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def reconcile(paths: list[str], scanned: int, stats: StageStats) -> None:
    """Compare the pool samples scanned with the ``sizes.json`` of the pool's folders
    (when each shard is listed in one, as `wit shards` and `wit overlap` write them): a
    notice and ``extra.input_mismatch`` when they differ."""
    expected = 0
    for path in map(Path, paths):
        listed = tarshards.read_sizes(path.parent).get(path.name)
        if listed is None:
            return
        expected += listed
    if expected != scanned:
        stats.extra["input_mismatch"] = scanned - expected
        stats.notice(f"scanned {scanned:,} pool samples; the pool's sizes.json say "
                     f"{expected:,}: its shards were changed after they were written")
