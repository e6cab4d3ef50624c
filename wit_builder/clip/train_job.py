"""`wit train`: CLIP training (`train.train`) in a checked run directory (`rundir`).

Unlike the other stages a run directory is written in place, not renamed: training
resumes from its checkpoints. `run` returns a `StageResult` like every stage, whose
marker names the last checkpoint (`rundir.last_checkpoint`).
"""

from __future__ import annotations

from wit_builder.clip import rundir
from wit_builder.clip.configs import TrainConfig
from wit_builder.config import config_hash
from wit_builder.outputs import StageResult, make_marker, write_marker
from wit_builder.stats import StageStats

STAGE = rundir.STAGE
OUTPUT_VERSION = 1
CONFIG = TrainConfig


def run(cfg: TrainConfig) -> StageResult:
    """Train into a checked run directory; the run's marker holds the last checkpoint."""
    from wit_builder.clip.train import train

    chash = config_hash(STAGE, OUTPUT_VERSION, cfg, [])
    rundir.prepare(cfg, chash)
    last = train(cfg)
    stats = StageStats(STAGE, extra={"steps": cfg.steps, "checkpoint": str(last)})
    stats.rows_in = stats.rows_out = cfg.steps * cfg.batch_size * cfg.accum_steps
    if rundir.is_main_process():
        return StageResult("ran", cfg.out, write_marker(cfg.out, STAGE, chash, cfg, stats))
    return StageResult("ran", cfg.out, make_marker(STAGE, chash, cfg, stats))
