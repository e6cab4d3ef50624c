"""`wit overlap calibrate`: precision and recall of a method per transformation and
threshold, and the threshold that reaches a target precision (see `calibrate`).

Outputs (`calibration`): ``calibration.json``, ``calibration.md``, ``pr_curve.png`` and
`stats.json`. Rows are the searched images (copies + pool sample); unreadable pool images
are dropped and counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wit_builder import tarshards
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult, run_stage
from wit_builder.overlap import calibrate, calibration
from wit_builder.overlap.configs import CalibrateConfig
from wit_builder.overlap.methods import Embedder, Method, method_files, parse_method
from wit_builder.stats import StageStats

STAGE = "calibrate"
OUTPUT_VERSION = 1
CONFIG = CalibrateConfig


def method_of(cfg: CalibrateConfig) -> Method:
    """The method to calibrate (its own default threshold)."""
    return parse_method(cfg.method, None, input_size=cfg.input_size, mean=cfg.mean,
                        std=cfg.std)


def build(tmp: Path, cfg: CalibrateConfig) -> StageStats:
    """Plant, search, and write the curves into `tmp`."""
    method = method_of(cfg)
    embedder = Embedder(method, method.device_for(cfg.device))
    found, eval_size, unreadable = calibrate.queries(cfg, embedder)
    table = calibrate.curves(found, method.binary)
    chosen = calibrate.suggest(table[calibrate.OVERALL], cfg.target_precision, method.binary)
    threshold = chosen["threshold"] if chosen else None
    data = {"method": cfg.method, "eval": cfg.eval, "eval_images": eval_size,
            "target_precision": cfg.target_precision, "suggested_threshold": threshold,
            "at_suggested": calibrate.at_threshold(table, threshold) if chosen else {},
            "method_threshold": method.threshold,
            "at_method_threshold": calibrate.at_threshold(table, method.threshold),
            "curves": table}
    calibration.write(tmp, data, chosen)
    stats = StageStats(STAGE, rows_in=len(found) + unreadable, rows_out=len(found))
    stats.drop("unreadable", unreadable)
    stats.extra.update(suggested_threshold=threshold, copies=sum(
        q.group != calibrate.POOL for q in found),
        pool_images=sum(q.group == calibrate.POOL for q in found))
    if chosen is None:
        stats.notice(f"no threshold reaches precision {cfg.target_precision}")
    return stats


def run(cfg: CalibrateConfig) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    paths = tarshards.expand(cfg.shards)
    method = method_of(cfg)
    inputs: list[Any] = [fingerprint(paths)]
    if method.path:
        inputs.append(fingerprint(method_files(method)))
    return run_stage(STAGE, OUTPUT_VERSION, cfg, inputs, lambda tmp: build(tmp, cfg))
