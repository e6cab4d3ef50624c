"""The container images install exactly the lock's packages (one documented swap for the
CUDA image); checked on the Dockerfiles, since no container runtime is needed to read
them."""

from __future__ import annotations

import re

from tests.builders import REPO

DOCKERFILES = {"Dockerfile": {}, "Dockerfile.cuda": {"faiss-cpu": "faiss-gpu-cu12"}}
PIN = re.compile(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)")


def lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / "lock.txt").read_text().splitlines():
        match = PIN.fullmatch(line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def run_lines(text: str) -> list[str]:
    """The RUN instructions, continuation lines joined."""
    joined = text.replace("\\\n", " ")
    return [line[4:] for line in joined.splitlines() if line.startswith("RUN ")]


def test_images_install_the_lock_and_nothing_else():
    pins = lock()
    assert len(pins) > 100
    for name, swaps in DOCKERFILES.items():
        runs = " && ".join(run_lines((REPO / "docker" / name).read_text()))
        installs = [c for c in runs.split("&&") if "pip install" in c]
        assert any("requirements/lock.txt" in c or "/tmp/lock-" in c for c in installs), name
        removed = set(re.findall(r"grep -v '\^([A-Za-z0-9_.\-]+)==", runs))
        assert removed == set(swaps), (name, removed)
        for command in installs:
            for package, _ in PIN.findall(command):
                assert package.lower() in swaps.values(), (name, package)
        for old in swaps:
            assert old in pins, (name, old)  # the swapped package is in the lock


def test_the_gpu_extra_pins_the_cuda_image_faiss():
    pyproject = (REPO / "pyproject.toml").read_text()
    cuda = (REPO / "docker" / "Dockerfile.cuda").read_text()
    pinned = re.search(r'gpu = \["(faiss-gpu-cu12==[^"]+)"\]', pyproject).group(1)
    assert pinned in cuda
