"""`wit demo`: the whole line offline — a small web on 127.0.0.1, then `wit pipeline`.

Builds the demo web (`web`), serves its images (`server`) for the length of the run,
writes its WARC files once (they name the server's port, so a rerun reuses them and
every stage skips on its marker), runs the pipeline of the config file with the WARCs
as curation input and 127.0.0.1 allowed for downloads, and prints a summary: pairs per
stage, copies planted vs found by `wit overlap`, zero-shot accuracy, and where the
report is.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from wit_builder import pipeline
from wit_builder.clip.results import read_results
from wit_builder.config import excerpt
from wit_builder.curate.balance import PLOTS_DIR
from wit_builder.demo.excerpt import ensure_excerpt
from wit_builder.demo.server import ImageServer
from wit_builder.demo.web import WebImage, web_images, write_warcs
from wit_builder.errors import ConfigError
from wit_builder.images.manifest import read_manifest
from wit_builder.outputs import read_stats
from wit_builder.overlap.matches import read_matches
from wit_builder.overlap.report import HTML_FILE

DEFAULT_PORT = 8765
LOOPBACK = ["127.0.0.1/32"]
EXCERPTS = ".fixtures"  # where configs/demo.yaml expects the Wikipedia excerpt


def demo_port(config: Path, data: dict[str, Any]) -> int:
    """The image server's port from the ``demo`` section of the pipeline file `data`
    (read from `config`); `ConfigError` if it is not one."""
    port = (data.get("demo") or {}).get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{config}: demo.port must be a port number, got {excerpt(port)}")
    return port


def ensure_warcs(directory: Path, base: str, images: list[WebImage]) -> list[Path]:
    """The web's WARC files for server `base`, written unless already there for it."""
    stamp = directory / "BASE_URL"
    if stamp.is_file() and stamp.read_text() == base:
        return sorted(directory.glob("*.warc.gz"))
    for old in directory.glob("*.warc.gz"):
        old.unlink()
    paths = write_warcs(directory, base, images)
    stamp.write_text(base)
    return paths


def planted_found(out: Path) -> tuple[int, int]:
    """(matches that are a planted copy of the very eval image, all matched pool images)."""
    matches = read_matches(out / "overlap", ["uid", "eval_index"]).to_pylist()
    urls = dict(zip(*read_manifest(out / "shards", ["uid", "url"]).to_pydict().values(),
                    strict=True))
    exact = {m["uid"] for m in matches
             if urls.get(m["uid"], "").endswith(f"/digits/test-{m['eval_index']}.png")}
    return len(exact), len({m["uid"] for m in matches})


def summary(out: Path, images: list[WebImage], done: pipeline.Done) -> list[str]:
    """Lines of the closing summary."""
    kinds = Counter(im.kind for im in images)
    what = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    lines = [f"web: {len(images)} <img> tags ({what})"]
    for stage in ("curate", "download", "shards", "overlap"):
        if stage in done.outs:
            stats = read_stats(done.outs[stage])
            drops = ", ".join(f"{k} {v}" for k, v in stats["drops"].items() if v)
            lines.append(f"{stage}: {stats['rows_in']} in → {stats['rows_out']} out"
                         + (f" (dropped: {drops})" if drops else ""))
    if "overlap" in done.outs and "shards" in done.outs:
        exact, found = planted_found(out)
        lines.append(f"overlap: {kinds['planted']} digits test images planted; "
                     f"{exact} found as copies of themselves, {found} pool images matched")
    if "eval" in done.outs:
        data = read_results(done.outs["eval"])
        top1 = data["datasets"]["digits"]["zero_shot"]["top1"]
        lines.append(f"zero-shot top-1 on digits: {top1:.3f} (chance 0.100)")
    if "report" in done.outs:
        lines.append(f"report: {done.outs['report'] / HTML_FILE}")
    if "curate" in done.outs:
        lines.append(f"plots: {done.outs['curate'] / PLOTS_DIR}")
    return lines


def demo_overrides(sections: dict[str, Any], warcs: list[Path], given: dict[str, dict]
                   ) -> dict[str, dict]:
    """`given` plus the demo web's WARCs for curation and the loopback allowance for
    downloads (for the stages the pipeline file's `sections` have)."""
    added = {"curate": {"warc": [str(p) for p in warcs]},
             "download": {"allow_network": LOOPBACK}}
    return {**given, **{stage: {**keys, **given.get(stage, {})}
                        for stage, keys in added.items() if stage in sections}}


def run(config: Path, out: Path, overrides: dict[str, dict] | None = None,
        announce: Any = None) -> tuple[pipeline.Done, list[str]]:
    """Build and serve the web, run the pipeline (with `overrides` per stage); (what
    ran, summary lines)."""
    data = pipeline.read_pipeline(config)  # checked once, sections and all
    port = demo_port(config, data)
    if "querylist" in data:  # its default dump is the fetched excerpt
        ensure_excerpt(Path(EXCERPTS))
    images = web_images()
    with ImageServer(images, port) as server:
        warcs = ensure_warcs(out / "web", server.url, images)
        done = pipeline.run(config, out, demo_overrides(data, warcs, overrides or {}),
                            announce)
    return done, summary(out, images, done)
