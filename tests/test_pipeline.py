"""`wit pipeline` (stages wired in order, a rerun skips them) and the demo web (`wit demo`'s
WARC files hold every image with its alt-text)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.imageserver import LOOPBACK, PHOTOS, ROUTES, ImageServer, photo, write_pairs
from wit_builder import pipeline
from wit_builder.cli import app
from wit_builder.curate import extract_job
from wit_builder.curate.configs import ExtractConfig
from wit_builder.demo import web
from wit_builder.errors import ConfigError


def test_demo_web_warcs_hold_every_image_with_its_alt_text(spark, tmp_path):
    """warcio's records, read back by `wit extract` (no language filter): one pair per
    <img> of the web, with its URL and alt-text (the HTML escaping undone)."""
    images = web.web_images()
    base = "http://127.0.0.1:9"
    warcs = web.write_warcs(tmp_path / "web", base, images)
    assert len(warcs) == -(-len(images) // (web.IMAGES_PER_PAGE * web.PAGES_PER_WARC))
    result = extract_job.run(ExtractConfig(warc=[str(p) for p in warcs], out=tmp_path / "e",
                                           lang=None, min_lang_score=0.0), spark)
    pairs = pq.read_table(result.out_dir / "pairs.parquet", columns=["url", "text"])
    got = sorted(zip(*pairs.to_pydict().values(), strict=True))
    assert got == sorted((base + im.path, im.alt) for im in images)
    kinds = {im.kind for im in images}
    assert kinds == {"digit", "planted", "photo", "duplicate", "broken", "missing",
                     "other_language"}
    assert web.web_images() == images  # deterministic


def write_config(path: Path, pairs: Path, evalset: Path) -> Path:
    path.write_text(f"""
out: {path.parent / 'run'}
download:
  pairs: {pairs}
  samples_per_shard: 4
  allow_network: ["{LOOPBACK[0]}"]
  master: local[2]
shards:
  master: local[2]
overlap:
  eval: ["imagefolder:{evalset}"]
  master: local[2]
""")
    return path


def test_pipeline_wires_the_stages_and_a_rerun_skips_them(tmp_path):
    """download → shards → overlap from one file: each stage reads the previous one's
    output; the eval set's photo is found and removed; a second run skips all three."""
    server = ImageServer()
    try:
        urls = [server.url + path for path in ROUTES if path.startswith("/photo/")][:5]
        pairs = write_pairs(tmp_path / "balance", urls)
        (tmp_path / "evalset" / "cat").mkdir(parents=True)
        photo(PHOTOS[2]).convert("RGB").save(tmp_path / "evalset" / "cat" / "0.png")
        config = write_config(tmp_path / "line.yaml", pairs, tmp_path / "evalset")
        seen: list[tuple[str, str]] = []
        for _ in range(2):
            done = pipeline.run(config, announce=lambda s, r: seen.append((s, r.status)))
    finally:
        server.close()
    assert seen == [("download", "ran"), ("shards", "ran"), ("overlap", "ran"),
                    ("download", "skipped"), ("shards", "skipped"), ("overlap", "skipped")]
    run = tmp_path / "run"
    assert done.outs == {s: run / s for s in ("download", "shards", "overlap")}
    assert done.results["overlap"].marker["config"]["shards"] == f"{run / 'shards'}/*.tar"
    matches = pq.read_table(run / "overlap" / "overlap.parquet").to_pylist()
    assert [m["eval_id"] for m in matches] == ["cat/0.png"]
    assert done.results["overlap"].marker["stats"]["rows_out"] == 4  # 5 photos − 1 copy


@pytest.mark.parametrize(("text", "error"), [
    ("download: {}\nnonsense: {}\n", "unknown section(s) ['nonsense']"),
    ("out: x\n", "has no stage section"),
    ("shards:\n  max_distance: 99\n", "section shards: invalid configuration: images: "
     "Field required"),
])
def test_bad_pipeline_files_are_one_line_errors(tmp_path, text, error):
    path = tmp_path / "line.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        pipeline.run(path)
    assert error in str(raised.value)
    result = CliRunner().invoke(app, ["pipeline", "--config", str(path)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
