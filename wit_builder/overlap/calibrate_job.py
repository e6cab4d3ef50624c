"""`wit overlap calibrate`: precision and recall of a method per transformation and
threshold, and the threshold that reaches a target precision (see `calibrate`).

Outputs ``calibration.json`` (every curve, the suggested threshold and each
transformation's precision and recall there), ``calibration.md`` (that table),
``pr_curve.png`` (precision–recall per transformation) and `stats.json`. Rows are the
searched images (copies + pool sample); unreadable pool images are dropped and counted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from wit_builder.clip.data import expand_shards
from wit_builder.errors import InputError
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult, run_stage
from wit_builder.overlap import calibrate
from wit_builder.overlap.calibrate import POOL, Query
from wit_builder.overlap.configs import CalibrateConfig
from wit_builder.overlap.detect import pool_samples
from wit_builder.overlap.evalimages import eval_images
from wit_builder.overlap.index import build_index
from wit_builder.overlap.methods import (
    Embedder,
    Method,
    method_files,
    parse_method,
    resolve_device,
)
from wit_builder.stats import StageStats

STAGE = "calibrate"
OUTPUT_VERSION = 1
CONFIG = CalibrateConfig
PLOT_FILE = "pr_curve.png"


def method_of(cfg: CalibrateConfig) -> Method:
    return parse_method(cfg.method, None, input_size=cfg.input_size, mean=cfg.mean,
                        std=cfg.std)


def pool_sample(cfg: CalibrateConfig) -> tuple[list[bytes], int]:
    """(encoded images, unreadable count) of up to `pool_sample` pool samples, read from
    the shards in a seeded order."""
    blobs, unreadable = [], 0
    shards = expand_shards(cfg.shards)
    for path in calibrate.hashed_sample(shards, len(shards), cfg.seed):
        for _, _, blob in pool_samples(path):
            if blob is None:
                unreadable += 1
                continue
            blobs.append(blob)
            if len(blobs) == cfg.pool_sample:
                return blobs, unreadable
    return blobs, unreadable


def search(embedder: Embedder, index: Any, blobs: list[bytes], batch: int
           ) -> tuple[list[int], list[tuple[int, float]]]:
    """(indices that decoded, their (nearest eval index, score)), in batches."""
    ok, found = [], []
    for start in range(0, len(blobs), batch):
        vectors, decoded = embedder.encoded(blobs[start:start + batch])
        if len(decoded):
            scores, ids = index.search(vectors, 1)
            found += [(int(i[0]), float(s[0])) for s, i in zip(scores, ids, strict=True)]
            ok += [start + d for d in decoded]
    return ok, found


def queries(cfg: CalibrateConfig, embedder: Embedder) -> tuple[list[Query], int, int]:
    """Every searched image with its result; also the eval set's size and the unreadable
    pool images."""
    evals = [im for im in eval_images(cfg.eval, "test") if im.image is not None]
    if len(evals) < 2:
        raise InputError(f"eval set {cfg.eval!r} has fewer than 2 readable test images")
    vectors = np.concatenate([embedder.images([im.image for im in evals[s:s + cfg.batch_size]])
                              for s in range(0, len(evals), cfg.batch_size)])
    index = build_index(vectors, embedder.method.binary)
    planted: list[tuple[str, int, bytes]] = []
    for position in calibrate.hashed_sample(list(range(len(evals))), cfg.eval_sample, cfg.seed):
        made = calibrate.copies(evals[position].image, cfg.seed + position)
        planted += [(name, position, blob) for name, blob in made.items()]
    pool, unreadable = pool_sample(cfg)
    if not pool:
        raise InputError("the pool shards hold no readable image")
    groups = [(name, source) for name, source, _ in planted] + [(POOL, -1)] * len(pool)
    ok, found = search(embedder, index, [b for _, _, b in planted] + pool, cfg.batch_size)
    result = [Query(groups[i][0], groups[i][1], f, s)
              for i, (f, s) in zip(ok, found, strict=True)]
    return result, len(evals), unreadable + len(groups) - len(ok)


def plot(table: dict[str, list[dict]], chosen: dict | None, path: Path, title: str) -> None:
    """Precision–recall curves, one per transformation, the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    for name, points in table.items():
        ax.plot([p["recall"] for p in points], [p["precision"] for p in points],
                label=name, linewidth=2.5 if name == calibrate.OVERALL else 1.2)
    if chosen is not None:
        ax.axhline(chosen["precision"], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=title)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(cfg: CalibrateConfig, rows: dict[str, dict], threshold: float | None,
             default: dict[str, dict], method_threshold: float) -> str:
    """The per-transformation table at the suggested and at the method's threshold."""
    head = (f"Method `{cfg.method}` on `{cfg.eval}`: suggested threshold "
            f"{threshold if threshold is not None else 'none (target not reached)'} "
            f"(target precision {cfg.target_precision}); the method's threshold "
            f"{method_threshold}.\n\n| transformation | precision (suggested) | "
            "recall (suggested) | precision (method) | recall (method) |\n"
            "|---|---|---|---|---|\n")

    def cells(point: dict | None) -> str:
        return "— | —" if point is None else f"{point['precision']:.3f} | {point['recall']:.3f}"

    return head + "".join(f"| {name} | {cells(rows.get(name))} | {cells(p)} |\n"
                          for name, p in default.items())


def build(tmp: Path, cfg: CalibrateConfig) -> StageStats:
    """Plant, search, and write the curves into `tmp`."""
    method = method_of(cfg)
    embedder = Embedder(method, resolve_device(cfg.device))
    found, eval_size, unreadable = queries(cfg, embedder)
    table = calibrate.curves(found, method.binary)
    chosen = calibrate.suggest(table[calibrate.OVERALL], cfg.target_precision, method.binary)
    threshold = chosen["threshold"] if chosen else None
    rows = calibrate.at_threshold(table, threshold) if chosen else {}
    default = calibrate.at_threshold(table, method.threshold)
    data = {"method": cfg.method, "eval": cfg.eval, "eval_images": eval_size,
            "target_precision": cfg.target_precision, "suggested_threshold": threshold,
            "at_suggested": rows, "method_threshold": method.threshold,
            "at_method_threshold": default, "curves": table}
    (tmp / "calibration.json").write_text(json.dumps(data, indent=2) + "\n")
    (tmp / "calibration.md").write_text(markdown(cfg, rows, threshold, default,
                                                 method.threshold))
    plot(table, chosen, tmp / PLOT_FILE, f"{cfg.method} on {cfg.eval}")
    stats = StageStats(STAGE, rows_in=len(found) + unreadable, rows_out=len(found))
    stats.drop("unreadable", unreadable)
    stats.extra.update(suggested_threshold=threshold, copies=sum(
        q.group != POOL for q in found), pool_images=sum(q.group == POOL for q in found))
    if chosen is None:
        stats.notice(f"no threshold reaches precision {cfg.target_precision}")
    return stats


def run(cfg: CalibrateConfig) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    paths = expand_shards(cfg.shards)
    method = method_of(cfg)
    inputs: list[Any] = [fingerprint(paths)]
    if method.path:
        inputs.append(fingerprint(method_files(method)))
    return run_stage(STAGE, OUTPUT_VERSION, cfg, inputs, lambda tmp: build(tmp, cfg))
