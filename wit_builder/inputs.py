"""Resolving input paths and fingerprinting them for the config hash.

Local paths and globs are expanded here, so a typo fails before Spark starts. URIs with a
scheme (``file://``, ``s3a://``, ``hdfs://``, ``gs://``...) are passed to Spark unchanged,
which expands their globs with the cluster's Hadoop filesystems; they are fingerprinted
through fsspec where it knows the scheme, else by the URI alone (a logged warning says so).
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from wit_builder.errors import InputError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
log = logging.getLogger(__name__)


def is_uri(path: str) -> bool:
    """True for ``scheme://...`` paths, which Spark resolves itself."""
    return bool(_SCHEME.match(path))


def expand_inputs(spec: str | list[str], what: str) -> list[str]:
    """Expand paths/globs into sorted existing local files; keep URIs as given.

    Raises `InputError` naming the pattern when a local pattern matches nothing, so a typo
    never turns into an empty (and silently partial) run.
    """
    patterns = [spec] if isinstance(spec, str) else list(spec)
    files: list[str] = []
    for pattern in patterns:
        if is_uri(pattern):
            files.append(pattern)
            continue
        matched = [m for m in sorted(glob.glob(os.path.expanduser(pattern)))
                   if os.path.isfile(m)]
        if not matched:
            raise InputError(f"{what}: no file matches {pattern!r}")
        files.extend(os.path.abspath(m) for m in matched)
    return sorted(set(files))


def _fsspec_listing(uri: str) -> tuple[Any, list[str]]:
    """(fsspec filesystem, sorted names the URI's glob matches); ImportError or ValueError
    when fsspec has no driver for the scheme."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    return fs, sorted(fs.glob(path))


def _uri_fingerprint(uri: str) -> list[tuple[str, Any, Any]]:
    try:
        fs, listed = _fsspec_listing(uri)
    except (ImportError, ValueError) as e:
        log.warning("cannot list %s (%s): identified by its URI only", uri, e)
        return [(uri, None, None)]
    if not listed:
        raise InputError(f"no file matches {uri!r}")
    out = []
    for name in listed:
        info = fs.info(name)
        version = info.get("mtime") or info.get("LastModified") or info.get("ETag")
        out.append((name, info.get("size"), str(version)))
    return out


def fingerprint(paths: list[str]) -> list[tuple[str, Any, Any]]:
    """(path, size, version) per file: cheap, and changes whenever a file is replaced."""
    out: list[tuple[str, Any, Any]] = []
    for p in paths:
        if is_uri(p):
            out.extend(_uri_fingerprint(p))
        else:
            st = Path(p).stat()
            out.append((p, st.st_size, st.st_mtime_ns))
    return out


def openable_files(paths: list[str]) -> tuple[list[tuple[str, int]], list[str]]:
    """((path or URI, size) of every file Python can open itself — local files, and the
    files of URIs that fsspec can list — , the URIs left to Spark's Hadoop filesystems)."""
    files: list[tuple[str, int]] = []
    others: list[str] = []
    for p in paths:
        if not is_uri(p):
            files.append((p, Path(p).stat().st_size))
            continue
        try:
            fs, listed = _fsspec_listing(p)
            files.extend((fs.unstrip_protocol(n), int(fs.info(n)["size"])) for n in listed)
        except (ImportError, ValueError, KeyError, TypeError):
            others.append(p)
    return files, others


@contextmanager
def open_input(path: str) -> Iterator[BinaryIO]:
    """Open a local path, or a URI through fsspec (``s3://``, ``https://``...)."""
    if is_uri(path):
        import fsspec

        with fsspec.open(path, "rb") as fh:
            yield fh
    else:
        with open(path, "rb") as fh:
            yield fh
