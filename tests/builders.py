"""Builders shared by the tests: paths of real fixtures, Wikipedia dumps, webdataset
shards, a reference model, and the environment of subprocesses that import this checkout.

Test modules import from here (and from `warcs`), never from one another.
"""

from __future__ import annotations

import bz2
import io
import os
import tarfile
import warnings
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from wit_builder.demo.excerpt import excerpt_path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(os.environ.get("WIT_FIXTURES", REPO.parent / "shared" / "fixtures"))
# The Wikipedia excerpt comes from the gensim wheel (`make setup` fetches it, checked).
EXCERPTS = REPO / ".fixtures"
WIKI_DUMP = excerpt_path(EXCERPTS)
WORDNET = Path("/usr/share/wordnet")

HEADER = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10">
  <siteinfo><sitename>Wikipedia</sitename><dbname>enwiki</dbname></siteinfo>
"""
FOOTER = "</mediawiki>\n"


def page_xml(title: str, text: str, ns: int = 0, redirect: str | None = None) -> str:
    """One <page> element in the export-0.10 layout."""
    red = f'    <redirect title="{escape(redirect)}" />\n' if redirect else ""
    return (f"  <page>\n    <title>{escape(title)}</title>\n    <ns>{ns}</ns>\n    <id>1</id>\n"
            f"{red}    <revision>\n      <id>2</id>\n      <model>wikitext</model>\n"
            f'      <text xml:space="preserve">{escape(text)}</text>\n    </revision>\n'
            "  </page>\n")


def write_dump(path: Path, pages: list[str], compress: bool = True) -> Path:
    """Write a dump holding `pages` (from `page_xml`), bz2-compressed or plain."""
    data = (HEADER + "".join(pages) + FOOTER).encode()
    path.write_bytes(bz2.compress(data) if compress else data)
    return path


def read_bz2_text(path: Path) -> str:
    """Whole decompressed text of a bz2 file (multistream included)."""
    with bz2.open(path, "rt", encoding="utf-8") as f:
        return f.read()


def repo_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess that imports this checkout (kept PYTHONPATH)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


ALT_TEXTS = FIXTURES / "alt_text" / "laion-alt-text-1000.parquet"
CAPTIONS = [t for t in pq.read_table(ALT_TEXTS).column("TEXT").to_pylist() if t]
# Pages of a hand-made dump with one of each case the query-list scan handles.
HAND_PAGES = [
    page_xml("Red fox", "red fox jumps. red fox runs."),
    page_xml("Blue whale", "blue whale swims {{Infobox|ignored words here}}"),
    page_xml("Café", "[[Category:Food]]"),                       # no prose: empty_text
    page_xml("C++", "{{Lowercase title}}"),                      # no prose: empty_text
    page_xml("Vulpes", "", redirect="Red fox"),                  # redirect
    page_xml("Wikipedia:About", "project page words", ns=4),     # other namespace
    "  <page><title>Bad</title><ns>0</ns><text>a &bogus; b</text></page>\n",  # malformed
]


def png(array: np.ndarray) -> bytes:
    """A grey-level array as a 48×48 PNG."""
    out = io.BytesIO()
    Image.fromarray(array).resize((48, 48)).save(out, format="PNG")
    return out.getvalue()


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A tar shard written with the standard library (not the library under test)."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def digit_shards(root: Path, shards: int, per_shard: int) -> list[Path]:
    """`shards` tars (``00000.tar``…) of `per_shard` real digit images (scikit-learn's,
    as PNG), sample k captioned with the real alt-text ``CAPTIONS[k]``."""
    from sklearn.datasets import load_digits

    digits = (load_digits().images * 255 / 16).astype(np.uint8)
    files = []
    for s in range(shards):
        members = []
        for k in range(s * per_shard, (s + 1) * per_shard):
            members += [(f"{k:06d}.png", png(digits[k])), (f"{k:06d}.txt", CAPTIONS[k].encode())]
        files.append(write_shard(root / f"{s:05d}.tar", members))
    return files


def tiny_reference():
    """open_clip's CLIP class built with our ``tiny`` sizes."""
    import open_clip

    from wit_builder.clip.configs import get_config

    cfg = get_config("tiny")
    v, t = cfg.vision, cfg.text
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_clip.model.CLIP(
            cfg.embed_dim,
            vision_cfg={"image_size": v.image_size, "patch_size": v.patch_size,
                        "width": v.width, "layers": v.layers, "head_width": v.head_width},
            text_cfg={"context_length": t.context_length, "vocab_size": t.vocab_size,
                      "width": t.width, "heads": t.heads, "layers": t.layers}).eval()


class LocalServer:
    """A real HTTP server on 127.0.0.1 (a free port) answering with `handler` on daemon
    threads; `url` is its base URL."""

    def __init__(self, handler) -> None:
        import http.server
        import threading

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()


class GatedServer(LocalServer):
    """A real HTTP server on 127.0.0.1 serving `directory`, whose GETs of one file can be
    held: the test learns that the run asked for it (`arrived`, set by the run's own
    request) and decides when, if ever, it is answered (`release`). A kill test can then
    kill a run at a known point without polling or racing it."""

    def __init__(self, directory: Path, gated: str) -> None:
        import functools
        import http.server
        import threading

        self.arrived, self.released = threading.Event(), threading.Event()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.lstrip("/") == gated and not server.released.is_set():
                    server.arrived.set()
                    server.released.wait()
                super().do_GET()

            def log_message(self, *args) -> None:
                pass

        super().__init__(functools.partial(Handler, directory=str(directory)))

    def release(self) -> None:
        """Answer the held request and every later one at once."""
        self.released.set()

    def close(self) -> None:
        self.release()
        super().close()


# A shard opener for webdataset's ``pipe:`` URLs: `python GATE_SCRIPT SHARD STATE N` copies
# SHARD to stdout, except that from its N-th opening on (0-based, counted in STATE) it
# first writes STATE/arrived and then reads STATE/release, two FIFOs: the test learns the
# run got there by reading `arrived`, and the run waits until the test writes `release`.
# Once STATE/free exists, the gate lets every opening through.
GATE_SCRIPT = """
import os, sys
shard, state, after = sys.argv[1], sys.argv[2], int(sys.argv[3])
n = 0
while True:
    try:
        os.close(os.open(os.path.join(state, f"open-{n}"), os.O_CREAT | os.O_EXCL))
        break
    except FileExistsError:
        n += 1
with open(os.path.join(state, "opened"), "a") as f:
    f.write(shard + "\\n")
held = os.path.join(state, "held")
held = n >= after or (os.path.exists(held) and shard in open(held).read().split("\\n"))
if held and not os.path.exists(os.path.join(state, "free")):
    with open(os.path.join(state, "arrived"), "w") as f:
        f.write("waiting\\n")
    open(os.path.join(state, "release")).read()
with open(shard, "rb") as f:
    sys.stdout.buffer.write(f.read())
"""


def gated_shards(shards: list[Path], state: Path, after: int,
                 held: list[Path] = ()) -> str:
    """A ``::`` list of ``pipe:`` URLs reading `shards` through the gate (see
    `GATE_SCRIPT`): openings from the `after`-th on, and those of the `held` shards,
    wait for the test; every opening is logged to ``state/opened``."""
    import sys

    state.mkdir(parents=True, exist_ok=True)
    script = state / "gate.py"
    script.write_text(GATE_SCRIPT)
    (state / "held").write_text("".join(f"{s}\n" for s in held))
    for fifo in ("arrived", "release"):
        os.mkfifo(state / fifo)
    return "::".join(f"pipe:{sys.executable} {script} {s} {state} {after}" for s in shards)


def wait_for_fifo(path: Path, proc, timeout: float = 180) -> str:
    """Read the FIFO `path` once its writer (the run, through the gate) opens it; fail if
    `proc` exits or `timeout` passes first."""
    import threading
    import time

    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(path.read_text()), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while reader.is_alive():
        reader.join(1.0)  # a liveness check of the run, not a poll for the event
        if reader.is_alive() and (proc.poll() is not None or time.monotonic() > deadline):
            raise AssertionError(f"the run never reached the gate (exit {proc.poll()})")
    return got[0]


def wait_until(condition, proc, timeout: float = 180) -> None:
    """Wait until `condition()` holds (checked every 0.2 s: for a state the run reaches
    and then keeps, e.g. a file it wrote before blocking); fail if `proc` exits or
    `timeout` passes first."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the run never got there (exit {proc.poll()})")
        time.sleep(0.2)


def wait_for_event(event, proc, timeout: float = 180) -> None:
    """Wait until the run sets `event`; fail if `proc` exits or `timeout` passes first."""
    import time

    deadline = time.monotonic() + timeout
    while not event.wait(1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the run never reached the gate (exit {proc.poll()})")


def digest(rows: list[tuple]) -> str:
    """A short sha256 of rows (sorted, JSON-encoded): pins a stage's output on the fixtures
    so that speed work can prove it changed nothing. An intended change of output updates
    the pin in the same commit, with the reason."""
    import hashlib
    import json

    data = "\n".join(sorted(json.dumps(r, ensure_ascii=False) for r in rows))
    return hashlib.sha256(data.encode()).hexdigest()[:16]
