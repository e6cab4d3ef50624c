"""CLIP §5-style overlap analysis: how much of each eval set the pool copies, and whether
the copies inflate zero-shot accuracy.

Per eval set and split: N_all (eval images), N_overlap (eval images with at least one
match in the pool), overlap %; with a checkpoint, zero-shot top-1 on All, Clean (no
match) and Overlap, All − Clean, the 99.5% Clopper–Pearson interval of the Overlap
accuracy, and the one-sided binomial p-value that Overlap scores above Clean
(H0: each overlap image is right with the Clean accuracy), Bonferroni-adjusted over the
sets tested. Unreadable eval images count in N_all but in no accuracy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

CONFIDENCE = 0.995
JSON_FILE, MARKDOWN_FILE, HTML_FILE = "report.json", "report.md", "report.html"


@dataclass
class SetOverlap:
    """One eval split's row of the report."""

    eval_set: str
    split: str
    n_all: int
    n_overlap: int
    overlap_pct: float
    acc_all: float | None = None
    acc_clean: float | None = None
    acc_overlap: float | None = None
    all_minus_clean: float | None = None
    overlap_ci_low: float | None = None
    overlap_ci_high: float | None = None
    p_value: float | None = None
    p_bonferroni: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def set_overlap(eval_set: str, split: str, n_all: int, overlapping: set[int],
                correct: np.ndarray | None) -> SetOverlap:
    """The row of one split; `correct` per eval index: 1, 0, or -1 (unreadable)."""
    row = SetOverlap(eval_set, split, n_all, len(overlapping),
                     100.0 * len(overlapping) / n_all if n_all else 0.0)
    if correct is None:
        return row
    readable = correct >= 0
    in_overlap = np.zeros(len(correct), dtype=bool)
    in_overlap[sorted(i for i in overlapping if i < len(correct))] = True
    row.acc_all = _mean(correct[readable])
    row.acc_clean = _mean(correct[readable & ~in_overlap])
    row.acc_overlap = _mean(correct[readable & in_overlap])
    if row.acc_all is not None and row.acc_clean is not None:
        row.all_minus_clean = row.acc_all - row.acc_clean
    add_test(row, correct[readable & in_overlap])
    return row


def add_test(row: SetOverlap, overlap_correct: np.ndarray) -> None:
    """Clopper–Pearson interval and one-sided binomial p-value of the Overlap accuracy."""
    n, k = len(overlap_correct), int(overlap_correct.sum())
    if n == 0 or row.acc_clean is None:
        return
    test = binomtest(k, n, p=min(max(row.acc_clean, 0.0), 1.0), alternative="greater")
    interval = binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    row.overlap_ci_low, row.overlap_ci_high = interval.low, interval.high
    row.p_value = float(test.pvalue)


def bonferroni(rows: list[SetOverlap]) -> None:
    """Adjust the p-values for the number of sets tested."""
    tested = [r for r in rows if r.p_value is not None]
    for r in tested:
        r.p_bonferroni = min(1.0, r.p_value * len(tested))


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def markdown(rows: list[SetOverlap], method: str) -> str:
    """The report table as Markdown."""
    head = ("| eval set | split | N all | N overlap | overlap % | acc all | acc clean | "
            "acc overlap | all − clean | 99.5% CI (overlap) | p (Bonferroni) |")
    lines = [f"# Eval-set overlap ({method})", "", head, "|" + " --- |" * 11]
    for r in rows:
        ci = (f"[{r.overlap_ci_low:.3f}, {r.overlap_ci_high:.3f}]"
              if r.overlap_ci_low is not None else "—")
        lines.append(f"| {r.eval_set} | {r.split} | {r.n_all} | {r.n_overlap} | "
                     f"{r.overlap_pct:.2f} | {_fmt(r.acc_all)} | {_fmt(r.acc_clean)} | "
                     f"{_fmt(r.acc_overlap)} | {_fmt(r.all_minus_clean)} | {ci} | "
                     f"{_fmt(r.p_value)} ({_fmt(r.p_bonferroni)}) |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def checkpoint_model(checkpoint: Path | None) -> Any:
    """The checkpoint's CLIP on the CPU, loaded once per report (None without one)."""
    if checkpoint is None:
        return None
    import torch

    from wit_builder.clip.evaluate import UNNAMED_HINT, load_model

    return load_model(checkpoint, None, torch.device("cpu"), UNNAMED_HINT)[0]


def overlap_table(run: dict[str, Any], hits: dict[tuple[str, str], set[int]],
                  checkpoint: Path | None, out: Path) -> list[SetOverlap]:
    """One row per eval set and split of an overlap `run` (`hits`: the eval indices
    matched per set and split); the zero-shot correctness of every eval image when a
    `checkpoint` is given."""
    from wit_builder.overlap.evalimages import load_set, set_name, splits_of

    model, rows = checkpoint_model(checkpoint), []
    for spec in run["eval"]:
        evalset, name = load_set(spec), set_name(spec)
        for split, images in splits_of(spec, run["split"], evalset):
            hit = hits.get((name, split), set())
            correct = None
            if model is not None and evalset.classnames:
                correct = zero_shot(model, evalset, images, checkpoint, out)
            rows.append(set_overlap(name, split, len(images), hit, correct))
    bonferroni(rows)
    return rows


def zero_shot(model: Any, evalset: Any, images: Any, checkpoint: Path | None,
              out: Path) -> np.ndarray:
    """Whether each eval image is classified right (zero-shot, `wit eval`'s settings)."""
    from wit_builder.clip.configs import EvalConfig
    from wit_builder.clip.evaluate import zero_shot_correct

    return zero_shot_correct(model, evalset, images, EvalConfig(checkpoint=checkpoint,
                                                                out=out))


def read_report(directory: Path) -> dict[str, Any]:
    """``report.json`` of a finished report output."""
    import json

    return json.loads((Path(directory) / JSON_FILE).read_text())
