"""`wit overlap`: which pool images are copies of evaluation images.

Scoring and deciding are apart. The eval sets are embedded once on the driver into one
faiss index (`index`); one Spark task per pool shard embeds its images and saves their k
nearest eval images with scores (`scan`); one task per shard then applies the threshold
rule and writes the shard without its matches (`decide`). The run is resumable (scored
shards are kept in the work directory), and a run that changes only the decision
(`OverlapConfig.DECISION_FIELDS`) takes the scores of the output it replaces
(`matches.take_scores`). Outputs and readers: `matches`. Rows are pool samples: in =
scanned, drops = ``eval_overlap`` (matched), out = kept in ``filtered/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from wit_builder.config import config_hash
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult
from wit_builder.overlap import decide, index, matches, scan
from wit_builder.overlap.configs import OverlapConfig
from wit_builder.overlap.evalimages import check_specs, sets_fingerprint
from wit_builder.overlap.methods import Embedder, Method, method_files, parse_method
from wit_builder.spark import run_spark_stage
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

STAGE = "overlap"
OUTPUT_VERSION = 2
CONFIG = OverlapConfig


def method_of(cfg: OverlapConfig) -> Method:
    """The config's method with its thresholds and input settings."""
    return parse_method(cfg.method, cfg.threshold, input_size=cfg.input_size, mean=cfg.mean,
                        std=cfg.std, thresholds=cfg.thresholds, near=cfg.near)


def eval_index(work: Path, cfg: OverlapConfig, embedder: Embedder, paths: list[str]) -> tuple:
    """(index bytes, meta, per-set counts, recall): saved in `work`, else built and saved."""
    saved = index.load_eval_index(work / matches.EVAL_INDEX_DIR)
    if saved is not None:
        return saved
    evals = index.eval_vectors(cfg.eval, cfg.split, embedder, cfg.batch_size)
    built = index.build_index(evals.vectors, embedder.method.binary, cfg.index)
    recall_k = index.pool_recall(cfg.index, embedder, built, evals.vectors, paths, cfg.k)
    blob = index.serialize(built, embedder.method.binary)
    index.save_eval_index(work / matches.EVAL_INDEX_DIR, blob, evals, recall_k)
    return blob, evals.meta, evals.sets, recall_k


def build(work: Path, cfg: OverlapConfig, paths: list[str], method: Method,
          hashes: tuple[str, str], spark: SparkSession) -> StageStats:
    """Score (scores finished in `work`, or taken from the output replaced, are kept),
    decide and write the outputs. `hashes`: (scoring config hash, eval sets' fingerprint)."""
    scoring, eval_print = hashes
    taken = matches.take_scores(cfg.out.absolute(), work, scoring)
    device = method.embedding.device_for(cfg.device)
    blob, meta, sets, recall_k = eval_index(work, cfg, Embedder(method.embedding, device), paths)
    matches.check_thresholds(cfg.thresholds, sets)
    for sub in (matches.FILTERED_DIR, matches.NEIGHBOURS_DIR):
        (work / sub).mkdir(exist_ok=True)
    threads = cfg.decode_threads or (8 if device == "cuda" else 1)
    scan.run_scoring(spark, paths, scan.Task(
        blob, meta, method.embedding, cfg.k, cfg.batch_size, str(work), device,
        scan.manifest_folders(paths, method.embedding), threads))
    rows = decide.run_decide(spark, paths, decide.Task(method.rule, str(work)))
    matches.write_neighbours(work, rows)
    counts = matches.shard_counts(rows)
    stats = matches.write_summary(work, method, counts, matches.per_set(rows, sets))
    rows.unpersist()
    stats.extra.update(scoring_hash=scoring, scores_taken_over=taken, eval_fingerprint=eval_print)
    matches.reconcile(paths, stats.rows_in, stats)
    if recall_k is not None:
        stats.extra.update(index=cfg.index, index_recall_at_k=round(recall_k, 4))
    return stats


def run(cfg: OverlapConfig, spark: SparkSession | None = None) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    paths = scan.pool_shards(cfg.shards)
    check_specs(cfg.eval)  # before Spark starts: a wrong folder is a one-line error at once
    method = method_of(cfg)
    eval_print = sets_fingerprint(cfg.eval)  # a report checks it before using eval indices
    inputs: list[Any] = [fingerprint(paths), eval_print]
    if method.path:
        inputs.append(fingerprint(method_files(method)))
    scoring = config_hash(STAGE, OUTPUT_VERSION, cfg, inputs, cfg.DECISION_FIELDS)
    return run_spark_stage(STAGE, OUTPUT_VERSION, cfg, inputs, lambda work, session: build(
        work, cfg, paths, method, (scoring, eval_print), session), spark, resumable=True)
