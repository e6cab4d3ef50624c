"""`wit overlap report`: the CLIP §5 overlap table (see `report`) and its galleries.

Reads a `wit overlap` output (its marker names the eval sets, split, method, thresholds
and pool shards). With ``--checkpoint`` the zero-shot accuracy of every eval image of a
labelled set is computed and split into Clean and Overlap. Outputs ``report.json``,
``report.md``, a self-contained ``report.html`` (`report_page`: the table; `gallery`:
the strongest matches and the borderline pairs just above and below the threshold; the
calibration plot of ``--calibration``) and `stats.json`; rows are eval images (in = out).
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from wit_builder.errors import InputError
from wit_builder.inputs import fingerprint
from wit_builder.outputs import MARKER, StageResult, run_stage
from wit_builder.overlap import calibration, gallery, matches, report, report_page
from wit_builder.overlap.configs import ReportConfig
from wit_builder.overlap.evalimages import sets_fingerprint
from wit_builder.stats import StageStats

STAGE = "report"
OUTPUT_VERSION = 1
CONFIG = ReportConfig


def calibration_plot(directory: Path | None) -> str:
    """The PR plot of a `wit overlap calibrate` output as a data URI ('' without one)."""
    if directory is None:
        return ""
    with Image.open(calibration.plot_file(directory)) as image:
        return report_page.data_uri(image, size=None)


def build(tmp: Path, cfg: ReportConfig) -> StageStats:
    """Write the report files into `tmp`."""
    run = matches.overlap_run(cfg.overlap)
    method = matches.recorded_method(run)
    rows = report.overlap_table(run, matches.hit_eval_images(cfg.overlap), cfg.checkpoint,
                                cfg.out)
    data = {"method": run["method"], "checkpoint": str(cfg.checkpoint or ""),
            "sets": [r.to_dict() for r in rows]}
    (tmp / report.JSON_FILE).write_text(json.dumps(data, indent=2) + "\n")
    (tmp / report.MARKDOWN_FILE).write_text(report.markdown(rows, run["method"]))
    shown = gallery.galleries(run, method, cfg.overlap, cfg.gallery)
    page = report_page.page(method, data["sets"], cfg.checkpoint, shown,
                            calibration_plot(cfg.calibration))
    (tmp / report.HTML_FILE).write_text(page, encoding="utf-8")
    n = sum(r.n_all for r in rows)
    return StageStats(STAGE, rows_in=n, rows_out=n, extra={"sets": len(rows)})


def same_eval_sets(run: dict) -> str:
    """The eval sets' fingerprint; `InputError` if they changed since the overlap run (its
    eval indices would name other images)."""
    now, then = sets_fingerprint(run["eval"]), run["stats"].get("eval_fingerprint")
    if then is not None and now != then:
        raise InputError(f"the eval sets {', '.join(run['eval'])} changed since the overlap "
                         "run (files added, removed or replaced): rerun `wit overlap`")
    return now


def run(cfg: ReportConfig) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    run = matches.overlap_run(cfg.overlap)
    inputs = [fingerprint(matches.input_files(cfg.overlap)), same_eval_sets(run)]
    if cfg.checkpoint is not None:
        if not cfg.checkpoint.is_file():
            raise InputError(f"checkpoint not found: {cfg.checkpoint}")
        inputs.append(fingerprint([str(cfg.checkpoint)]))
    if cfg.calibration is not None:
        calibration.plot_file(cfg.calibration)  # checked before any work
        inputs.append(fingerprint([str(cfg.calibration / MARKER)]))
    return run_stage(STAGE, OUTPUT_VERSION, cfg, inputs, lambda tmp: build(tmp, cfg))
