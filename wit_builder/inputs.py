"""Resolving input paths and fingerprinting them for the config hash."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from wit_builder.errors import InputError


def expand_inputs(spec: str | list[str], what: str) -> list[str]:
    """Expand one path/glob or a list of them into sorted existing local file paths.

    Raises `InputError` naming the pattern when it matches nothing, so a typo never turns
    into an empty (and silently partial) run.
    """
    patterns = [spec] if isinstance(spec, str) else list(spec)
    files: list[str] = []
    for pattern in patterns:
        matched = sorted(glob.glob(os.path.expanduser(pattern)))
        matched = [m for m in matched if os.path.isfile(m)]
        if not matched:
            raise InputError(f"{what}: no file matches {pattern!r}")
        files.extend(os.path.abspath(m) for m in matched)
    return sorted(set(files))


def fingerprint(paths: list[str]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) per file: cheap, and changes whenever a file is replaced."""
    out = []
    for p in paths:
        st = Path(p).stat()
        out.append((p, st.st_size, st.st_mtime_ns))
    return out
