"""The demo's Wikipedia dump: a real excerpt that ships inside the gensim 4.3.3 wheel.

`ensure_excerpt(root)` downloads that wheel from the package index (pinned version and
platform, with pip: the one registry a fresh machine reaches), takes the excerpt out of it
and checks its sha256, so `make demo` needs nothing beside the repository. A file already
in place with the right checksum is kept. ``python -m wit_builder.demo.excerpt DIR``
does the same from the command line (the Makefile's setup step).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from wit_builder.errors import InputError
from wit_builder.outputs import atomic_write

WHEEL = "gensim==4.3.3"
PLATFORM = "manylinux2014_x86_64"  # any platform's wheel holds the same test data
MEMBER = ("gensim/test/test_data/"
          "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
SHA256 = "a53f4648dec40467ebdcbc7a1307eddb51fe6e28e9309f6ebde81ba0d04bea2d"
SUBDIR = "wikipedia"


def excerpt_path(root: Path) -> Path:
    """Where the excerpt lies under `root`."""
    return root / SUBDIR / Path(MEMBER).name


def sha256(path: Path) -> str:
    """The file's sha256 in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def download_wheel(folder: Path) -> Path:
    """The pinned gensim wheel, downloaded into `folder` by pip (no dependencies)."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
           "--only-binary=:all:", "--platform", PLATFORM, "--python-version", "3.11",
           "--dest", str(folder), WHEEL]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(folder.glob("gensim-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise InputError(f"could not download {WHEEL} for the demo's Wikipedia excerpt: "
                         f"{last}")
    return wheels[0]


def read_member(wheel: Path) -> bytes:
    """The excerpt's bytes out of the wheel (a zip file)."""
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(MEMBER)


def ensure_excerpt(root: Path) -> Path:
    """The excerpt under `root`, fetched and checked if it is not there yet."""
    target = excerpt_path(root)
    if target.is_file() and sha256(target) == SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        data = read_member(download_wheel(Path(folder)))
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise InputError(f"{MEMBER} in {WHEEL} does not have the expected sha256")
    atomic_write(target, lambda tmp: tmp.write_bytes(data))
    return target


if __name__ == "__main__":
    print(ensure_excerpt(Path(sys.argv[1] if len(sys.argv) > 1 else ".fixtures")))
