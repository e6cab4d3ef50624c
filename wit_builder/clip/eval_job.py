"""`wit eval`: evaluation (`evaluate.evaluate_all`) as a stage.

Writes ``eval.json`` (the results), ``stats.json`` and ``_SUCCESS`` atomically into
`--out`, like every stage: the output directory is created (so checked writable) before
any model is loaded, a rerun with the same checkpoint and config skips, and another
stage's output is never written into. Rows are eval images: in = images read, out =
images evaluated, drops = unreadable images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wit_builder.clip.configs import EvalConfig
from wit_builder.errors import InputError
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult, run_stage
from wit_builder.stats import StageStats

STAGE = "eval"
OUTPUT_VERSION = 1
CONFIG = EvalConfig
RESULTS_FILE = "eval.json"


def stats_of(results: dict[str, Any]) -> StageStats:
    """Image counts of the results (see module docstring)."""
    stats = StageStats(STAGE)
    for r in results["datasets"].values():
        evaluated = r["test_images"] + r.get("train_images", 0)
        stats.rows_in += evaluated + r["unreadable_images"]
        stats.rows_out += evaluated
        stats.drop("unreadable_image", r["unreadable_images"])
    return stats


def run(cfg: EvalConfig) -> StageResult:
    """Evaluate into `cfg.out` (skips when it is complete for this config)."""
    for what, path in (("checkpoint", cfg.checkpoint), ("templates file", cfg.templates)):
        if path is not None and not path.is_file():
            raise InputError(f"{what} not found: {path}")
    inputs = [fingerprint([str(p) for p in (cfg.checkpoint, cfg.templates) if p])]

    def body(tmp: Path) -> StageStats:
        from wit_builder.clip.evaluate import evaluate_all

        results = evaluate_all(cfg)
        (tmp / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
        return stats_of(results)

    return run_stage(STAGE, OUTPUT_VERSION, cfg, inputs, body)


def read_results(out_dir: Path) -> dict[str, Any]:
    """The ``eval.json`` of a finished eval output."""
    return json.loads((out_dir / RESULTS_FILE).read_text())
