"""`wit overlap report`: the CLIP §5 overlap table (see `report`) and its galleries.

Reads a `wit overlap` output (its marker names the eval sets, split, method and pool
shards). With ``--checkpoint`` the zero-shot accuracy of every eval image is computed
and split into Clean and Overlap. Outputs ``report.json``, ``report.md``, a self-contained
``report.html`` and `stats.json`; rows are eval images (in = out: nothing is dropped).
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
from wit_builder.clip.evalsets import load_eval_set
from wit_builder.errors import InputError
from wit_builder.inputs import fingerprint
from wit_builder.outputs import StageResult, read_marker, run_stage
from wit_builder.overlap import html, report
from wit_builder.overlap.configs import ReportConfig
from wit_builder.overlap.evalimages import set_name, splits_of
from wit_builder.overlap.methods import parse_method
from wit_builder.overlap.overlap_job import OVERLAP_FILE
from wit_builder.stats import StageStats

STAGE = "report"
OUTPUT_VERSION = 1
CONFIG = ReportConfig


def overlap_run(path: Path) -> dict[str, Any]:
    """The config of the `wit overlap` output at `path`; `InputError` if it is not one."""
    marker = read_marker(path)
    if marker is None or marker.get("stage") != "overlap":
        raise InputError(f"{path} is not a finished `wit overlap` output")
    return marker["config"]


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
        evalset, name = load_eval_set(spec), set_name(spec)
        for split, images in splits_of(spec, run["split"], evalset):
            hit = {m["eval_index"] for m in matches
                   if m["eval_set"] == name and m["eval_split"] == split}
            correct = None if model is None else zero_shot_correct(model, evalset, images,
                                                                   settings)
            rows.append(report.set_overlap(name, split, len(images), hit, correct))
    report.bonferroni(rows)
    return rows


def pool_sample(shards: dict[str, str], shard: str, key: str) -> tuple[Image.Image | None, dict]:
    """The pool image and its JSON (caption, url) from the pool shard named `shard`."""
    with tarfile.open(shards[shard]) as tar:
        names = {m.name: m for m in tar.getmembers() if m.name.startswith(f"{key}.")}
        meta = json.loads(tar.extractfile(names[f"{key}.json"]).read()) \
            if f"{key}.json" in names else {}
        image_name = next((n for n in names if n.rsplit(".", 1)[1] in ("jpg", "png", "webp")),
                          None)
        try:
            image = Image.open(io.BytesIO(tar.extractfile(names[image_name]).read())) \
                if image_name else None
        except OSError:
            image = None
    return image, meta


def gallery(run: dict[str, Any], matches: list[dict], count: int) -> list[dict]:
    """The `count` strongest matches with thumbnails, captions and URLs."""
    method = parse_method(run["method"], run.get("threshold"))
    best = sorted(matches, key=lambda m: m["score"], reverse=not method.binary)[:count]
    shards = {Path(p).name: p for p in expand_shards(run["shards"])}
    specs = {set_name(s): s for s in run["eval"]}
    splits: dict[tuple[str, str], Any] = {}  # each eval split loaded once
    out = []
    for m in best:
        where = (m["eval_set"], m["eval_split"])
        if where not in splits:
            splits[where] = dict(splits_of(specs[where[0]], where[1]))[where[1]]
        pool_image, meta = pool_sample(shards, m["shard"], m["key"])
        out.append({**m, "eval_img": html.data_uri(splits[where].load(m["eval_index"])),
                    "pool_img": html.data_uri(pool_image),
            "caption": meta.get("caption", ""), "url": meta.get("url", "")})
    return out


def write_html(tmp: Path, cfg: ReportConfig, run: dict, rows: list[report.SetOverlap],
               matches: list[dict]) -> None:
    """``report.html``: the table and the gallery of the strongest matches."""
    method = parse_method(run["method"], run.get("threshold"))
    headers = list(rows[0].to_dict()) if rows else []
    cells = [[_cell(v) for v in r.to_dict().values()] for r in rows]
    page = html.render({"method": method.name, "threshold": method.threshold,
                        "semantic": not method.binary, "checkpoint": cfg.checkpoint,
                        "headers": headers, "rows": cells, "galleries": [
                            {"title": "Strongest matches",
                             "matches": gallery(run, matches, cfg.gallery)}]})
    (tmp / "report.html").write_text(page, encoding="utf-8")


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "—" if value is None else str(value)


def build(tmp: Path, cfg: ReportConfig) -> StageStats:
    """Write the report files into `tmp`."""
    run = overlap_run(cfg.overlap)
    matches = pq.read_table(cfg.overlap / OVERLAP_FILE).to_pylist()
    rows = table(cfg, run, matches)
    data = {"method": run["method"], "checkpoint": str(cfg.checkpoint or ""),
            "sets": [r.to_dict() for r in rows]}
    (tmp / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    (tmp / "report.md").write_text(report.markdown(rows, run["method"]))
    write_html(tmp, cfg, run, rows, matches)
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
    return run_stage(STAGE, OUTPUT_VERSION, cfg, inputs, lambda tmp: build(tmp, cfg))
