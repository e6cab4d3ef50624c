"""`wit overlap report`: the CLIP §5 overlap table (see `report`) and its galleries.

Reads a `wit overlap` output (its marker names the eval sets, split, method, thresholds
and pool shards). With ``--checkpoint`` the zero-shot accuracy of every eval image of a
labelled set is computed and split into Clean and Overlap. Outputs ``report.json``,
``report.md``, a self-contained ``report.html`` (the table; galleries of the strongest
matches and of the borderline pairs just above and below the threshold; the calibration
plot of ``--calibration``) and `stats.json`; rows are eval images (in = out).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from PIL import Image

from wit_builder.clip.configs import EvalConfig
from wit_builder.clip.data import expand_shards
from wit_builder.errors import InputError
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult, read_marker, run_stage
from wit_builder.overlap import html, report
from wit_builder.overlap.configs import ReportConfig
from wit_builder.overlap.detect import IMAGE_EXTENSIONS
from wit_builder.overlap.evalimages import load_set, set_name, splits_of
from wit_builder.overlap.methods import Method
from wit_builder.overlap.overlap_job import NEAR_FILE, OVERLAP_FILE
from wit_builder.stats import StageStats

STAGE = "report"
OUTPUT_VERSION = 1
CONFIG = ReportConfig


def overlap_run(path: Path) -> dict[str, Any]:
    """The config of the `wit overlap` output at `path` plus its ``stats``; `InputError`
    if it is not one."""
    marker = read_marker(path)
    if marker is None or marker.get("stage") != "overlap":
        raise InputError(f"{path} is not a finished `wit overlap` output")
    return {**marker["config"], "stats": marker["stats"]}


def recorded_method(run: dict[str, Any]) -> Method:
    """The method and thresholds the overlap run used (from its stats; no model needed)."""
    kind = run["method"].partition(":")[0]
    stats = run["stats"]
    return Method(run["method"], kind, float(stats["threshold"]), binary=kind == "phash",
                  thresholds=stats.get("thresholds") or {})


def checkpoint_model(cfg: ReportConfig) -> Any:
    """The checkpoint's CLIP on the CPU, loaded once per report (None without one)."""
    if cfg.checkpoint is None:
        return None
    import torch

    from wit_builder.clip.evaluate import load_model

    return load_model(cfg.checkpoint, None, torch.device("cpu"))[0]


def table(cfg: ReportConfig, run: dict[str, Any], matches: list[dict]) -> list[report.SetOverlap]:
    """One row per eval set and split; the zero-shot correctness of every eval image
    when a checkpoint is given."""
    from wit_builder.clip.evaluate import zero_shot_correct

    model, rows = checkpoint_model(cfg), []
    settings = None if model is None else EvalConfig(checkpoint=cfg.checkpoint, out=cfg.out)
    for spec in run["eval"]:
        evalset, name = load_set(spec), set_name(spec)
        for split, images in splits_of(spec, run["split"], evalset):
            hit = {m["eval_index"] for m in matches
                   if m["eval_set"] == name and m["eval_split"] == split}
            labelled = model is not None and evalset.classnames
            correct = zero_shot_correct(model, evalset, images, settings) if labelled \
                else None
            rows.append(report.set_overlap(name, split, len(images), hit, correct))
    report.bonferroni(rows)
    return rows


def pool_sample(shards: dict[str, str], shard: str, key: str) -> tuple[Image.Image | None, dict]:
    """The pool image and its JSON (caption, url) from the pool shard named `shard`."""
    with tarfile.open(shards[shard]) as tar:
        names = {m.name: m for m in tar.getmembers() if m.name.startswith(f"{key}.")}
        meta = json.loads(tar.extractfile(names[f"{key}.json"]).read()) \
            if f"{key}.json" in names else {}
        image_name = next((f"{key}.{e}" for e in IMAGE_EXTENSIONS if f"{key}.{e}" in names),
                          None)
        try:
            image = Image.open(io.BytesIO(tar.extractfile(names[image_name]).read())) \
                if image_name else None
        except OSError:
            image = None
    return image, meta


def pair_images(run: dict[str, Any], pairs: list[dict]
                ) -> list[tuple[dict, Image.Image | None, Image.Image | None, dict]]:
    """(row, eval image, pool image, pool JSON) for overlap rows `pairs` of `run`."""
    shards = {Path(p).name: p for p in expand_shards(run["shards"])}
    specs = {set_name(s): s for s in run["eval"]}
    splits: dict[tuple[str, str], Any] = {}  # each eval split loaded once
    out = []
    for m in pairs:
        where = (m["eval_set"], m["eval_split"])
        if where not in splits:
            splits[where] = dict(splits_of(specs[where[0]], where[1]))[where[1]]
        pool_image, meta = pool_sample(shards, m["shard"], m["key"])
        out.append((m, splits[where].load(m["eval_index"]), pool_image, meta))
    return out


def with_images(run: dict[str, Any], pairs: list[dict]) -> list[dict]:
    """`pairs` (overlap rows) with both thumbnails, the pool caption and URL."""
    return [{**m, "eval_img": html.data_uri(eval_image), "pool_img": html.data_uri(pool),
             "caption": meta.get("caption", ""), "url": meta.get("url", "")}
            for m, eval_image, pool, meta in pair_images(run, pairs)]


def strongest(method: Method, matches: list[dict], count: int) -> list[dict]:
    """The `count` best-scoring matches (best first)."""
    return sorted(matches, key=lambda m: m["score"], reverse=not method.binary)[:count]


def borderline(method: Method, matches: list[dict], near: list[dict], count: int
               ) -> list[dict]:
    """The `count` weakest matches and the `count` strongest non-matches, ordered from
    best to worst score so the threshold falls between the two halves."""
    def margin(m: dict) -> float:
        return abs(m["score"] - method.threshold_for(m["eval_set"]))

    above = [{**m, "side": "match"} for m in sorted(matches, key=margin)[:count]]
    below = [{**m, "side": "no match"} for m in sorted(near, key=margin)[:count]]
    return strongest(method, above + below, 2 * count)


def write_html(tmp: Path, cfg: ReportConfig, run: dict, rows: list[report.SetOverlap],
               matches: list[dict], near: list[dict]) -> None:
    """``report.html``: the table, the galleries and the calibration plot."""
    method = recorded_method(run)
    headers = list(rows[0].to_dict()) if rows else []
    cells = [[_cell(v) for v in r.to_dict().values()] for r in rows]
    half = max(1, cfg.gallery // 2)
    galleries = [{"title": "Strongest matches",
                  "matches": with_images(run, strongest(method, matches, cfg.gallery))},
                 {"title": "Borderline: the weakest matches and the closest non-matches",
                  "matches": with_images(run, borderline(method, matches, near, half))}]
    page = html.render({"method": method.name, "threshold": method.threshold,
                        "thresholds": method.thresholds, "semantic": method.semantic,
                        "checkpoint": cfg.checkpoint, "headers": headers, "rows": cells,
                        "galleries": galleries if cfg.gallery else [],
                        "calibration": calibration_plot(cfg.calibration)})
    (tmp / "report.html").write_text(page, encoding="utf-8")


def calibration_file(directory: Path) -> Path:
    """The PR plot of a `wit overlap calibrate` output; `InputError` if there is none."""
    from wit_builder.overlap.calibrate_job import PLOT_FILE

    plot = directory / PLOT_FILE
    if not plot.is_file():
        raise InputError(f"{directory} is not a `wit overlap calibrate` output "
                         f"(no {PLOT_FILE})")
    return plot


def calibration_plot(directory: Path | None) -> str:
    """The PR plot of a `wit overlap calibrate` output as a data URI ('' without one)."""
    if directory is None:
        return ""
    with Image.open(calibration_file(directory)) as image:
        return html.data_uri(image, size=None)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "—" if value is None else str(value)


def build(tmp: Path, cfg: ReportConfig) -> StageStats:
    """Write the report files into `tmp`."""
    run = overlap_run(cfg.overlap)
    matches = pq.read_table(cfg.overlap / OVERLAP_FILE).to_pylist()
    near = pq.read_table(cfg.overlap / NEAR_FILE).to_pylist()
    rows = table(cfg, run, matches)
    data = {"method": run["method"], "checkpoint": str(cfg.checkpoint or ""),
            "sets": [r.to_dict() for r in rows]}
    (tmp / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    (tmp / "report.md").write_text(report.markdown(rows, run["method"]))
    write_html(tmp, cfg, run, rows, matches, near)
    n = sum(r.n_all for r in rows)
    return StageStats(STAGE, rows_in=n, rows_out=n, extra={"sets": len(rows)})


def run(cfg: ReportConfig) -> StageResult:
    """Run the stage (skips when `cfg.out` is complete for this config)."""
    overlap_run(cfg.overlap)
    inputs = [fingerprint([str(cfg.overlap / OVERLAP_FILE), str(cfg.overlap / "_SUCCESS")])]
    if cfg.checkpoint is not None:
        if not cfg.checkpoint.is_file():
            raise InputError(f"checkpoint not found: {cfg.checkpoint}")
        inputs.append(fingerprint([str(cfg.checkpoint)]))
    if cfg.calibration is not None:
        calibration_file(cfg.calibration)  # checked before any work
        inputs.append(fingerprint([str(cfg.calibration / "_SUCCESS")]))
    return run_stage(STAGE, OUTPUT_VERSION, cfg, inputs, lambda tmp: build(tmp, cfg))
