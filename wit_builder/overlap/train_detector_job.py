"""`wit overlap train-detector`: train the copy detector (`detector`, `training`) on pool
images.

Outputs ``model.pt2`` (a `torch.export` program), ``detector.json`` (input size, normalization,
dimension, suggested threshold, the similarity check it came from), ``train_log.jsonl``
(loss per logged step) and `stats.json`. Rows are images drawn for training (with
repetition: the pool is cycled); unreadable ones are dropped and counted.

The run is resumable: every ``checkpoint_every`` steps the model, optimizer and step are
saved in the work directory, and a rerun with the same config continues from there
(the data stream is reseeded from the step, so a resumed run is not bit-identical).
"""

from __future__ import annotations

import json
from pathlib import Path

from wit_builder import tarshards
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult, run_stage
from wit_builder.overlap import detector, training
from wit_builder.overlap.configs import TrainDetectorConfig
from wit_builder.overlap.methods import DETECTOR_FILE, DETECTOR_MODEL, resolve_device
from wit_builder.stats import StageStats

STAGE = "train-detector"
OUTPUT_VERSION = 1
CONFIG = TrainDetectorConfig


def build(work: Path, cfg: TrainDetectorConfig) -> StageStats:
    """Train, check and export into `work`."""
    device = resolve_device(cfg.device)
    model, counts = training.train(cfg, work, device)
    checked = training.check(cfg, model, device)
    detector.save(detector.export(model, cfg.image_size), work / DETECTOR_MODEL)
    info = detector.describe(cfg.arch, cfg.dim, cfg.image_size, checked["threshold"],
                             steps=cfg.steps, check=checked["check"])
    (work / DETECTOR_FILE).write_text(json.dumps(info, indent=2) + "\n")
    (work / training.STATE_FILE).unlink()
    stats = StageStats(STAGE, rows_in=counts["drawn"],
                       rows_out=counts["drawn"] - counts["unreadable"])
    stats.drop("unreadable", counts["unreadable"])
    stats.extra.update(device=device, suggested_threshold=checked["threshold"],
                       **checked["check"])
    return stats


def run(cfg: TrainDetectorConfig) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    paths = tarshards.expand(cfg.shards)
    return run_stage(STAGE, OUTPUT_VERSION, cfg, [fingerprint(paths)],
                     lambda work: build(work, cfg), resumable=True)
