"""The `wit overlap calibrate` output: ``calibration.json`` (every curve, the suggested
threshold and each transformation's precision and recall there), ``calibration.md``
(that table), ``pr_curve.png`` (precision–recall per transformation); and its reader
for the report (`plot_file`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wit_builder.errors import InputError
from wit_builder.overlap.calibrate import OVERALL

CALIBRATION_FILE = "calibration.json"
TABLE_FILE = "calibration.md"
PLOT_FILE = "pr_curve.png"


def plot_file(directory: Path) -> Path:
    """The PR plot of a `wit overlap calibrate` output; `InputError` if there is none."""
    plot = directory / PLOT_FILE
    if not plot.is_file():
        raise InputError(f"{directory} is not a `wit overlap calibrate` output "
                         f"(no {PLOT_FILE})")
    return plot


def plot(table: dict[str, list[dict]], chosen: dict | None, path: Path, title: str) -> None:
    """Precision–recall curves, one per transformation, the suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    for name, points in table.items():
        ax.plot([p["recall"] for p in points], [p["precision"] for p in points],
                label=name, linewidth=2.5 if name == OVERALL else 1.2)
    if chosen is not None:
        ax.axhline(chosen["precision"], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title=title)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(data: dict[str, Any]) -> str:
    """The per-transformation table at the suggested and at the method's threshold."""
    threshold, rows = data["suggested_threshold"], data["at_suggested"]
    head = (f"Method `{data['method']}` on `{data['eval']}`: suggested threshold "
            f"{threshold if threshold is not None else 'none (target not reached)'} "
            f"(target precision {data['target_precision']}); the method's threshold "
            f"{data['method_threshold']}.\n\n| transformation | precision (suggested) | "
            "recall (suggested) | precision (method) | recall (method) |\n"
            "|---|---|---|---|---|\n")

    def cells(point: dict | None) -> str:
        return "— | —" if point is None else f"{point['precision']:.3f} | {point['recall']:.3f}"

    return head + "".join(f"| {name} | {cells(rows.get(name))} | {cells(p)} |\n"
                          for name, p in data["at_method_threshold"].items())


def write(tmp: Path, data: dict[str, Any], chosen: dict | None) -> None:
    """The three files of a calibration `data` (the ``calibration.json`` content)."""
    (tmp / CALIBRATION_FILE).write_text(json.dumps(data, indent=2) + "\n")
    (tmp / TABLE_FILE).write_text(markdown(data))
    plot(data["curves"], chosen, tmp / PLOT_FILE, f"{data['method']} on {data['eval']}")
