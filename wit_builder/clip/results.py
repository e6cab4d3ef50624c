"""The `wit eval` output: ``eval.json`` (per set zero-shot/linear-probe metrics and image
counts, retrieval R@k) and its row accounting. Readers (`show`, the demo) use
`read_results`; reading it imports no torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wit_builder.stats import StageStats

STAGE = "eval"
RESULTS_FILE = "eval.json"


def stats_of(results: dict[str, Any]) -> StageStats:
    """Rows are eval images: in = images read, out = evaluated, drops = unreadable."""
    stats = StageStats(STAGE)
    for r in results["datasets"].values():
        evaluated = r["test_images"] + r.get("train_images", 0)
        stats.rows_in += evaluated + r["unreadable_images"]
        stats.rows_out += evaluated
        stats.drop("unreadable_image", r["unreadable_images"])
    return stats


def write_results(directory: Path, results: dict[str, Any]) -> None:
    """``eval.json`` into `directory`."""
    (directory / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")


def read_results(out_dir: Path) -> dict[str, Any]:
    """The ``eval.json`` of a finished eval output."""
    return json.loads((Path(out_dir) / RESULTS_FILE).read_text())
