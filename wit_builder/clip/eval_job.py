"""`wit eval`: evaluation (`evaluate.evaluate_all`) as a stage.

Writes ``eval.json`` (`results`), ``stats.json`` and ``_SUCCESS`` atomically into `--out`,
like every stage: the output directory is created (so checked writable) before any model
is loaded, a rerun with the same checkpoint and config skips, and another stage's output
is never written into.
"""

from __future__ import annotations

from pathlib import Path

from wit_builder.clip import results
from wit_builder.clip.configs import EvalConfig
from wit_builder.errors import InputError
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult, run_stage
from wit_builder.stats import StageStats

STAGE = results.STAGE
OUTPUT_VERSION = 1
CONFIG = EvalConfig


def build(tmp: Path, cfg: EvalConfig) -> StageStats:
    """Evaluate and write ``eval.json`` into `tmp`."""
    from wit_builder.clip.evaluate import evaluate_all

    found = evaluate_all(cfg)
    results.write_results(tmp, found)
    return results.stats_of(found)


def run(cfg: EvalConfig) -> StageResult:
    """Evaluate into `cfg.out` (skips when it is complete for this config)."""
    for what, path in (("checkpoint", cfg.checkpoint), ("templates file", cfg.templates)):
        if path is not None and not path.is_file():
            raise InputError(f"{what} not found: {path}")
    inputs = [fingerprint([str(p) for p in (cfg.checkpoint, cfg.templates) if p])]
    return run_stage(STAGE, OUTPUT_VERSION, cfg, inputs, lambda tmp: build(tmp, cfg))
