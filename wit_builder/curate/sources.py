"""Which WARC/WAT files a curation run reads: globs, or a manifest of paths and URIs.

Common Crawl publishes ``warc.paths.gz``/``wat.paths.gz`` manifests of relative keys; a
`prefix` (``https://data.commoncrawl.org/``) makes them URIs. Remote files are
fingerprinted by name only: they are immutable and too many to stat.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wit_builder.errors import InputError
from wit_builder.inputs import expand_inputs, fingerprint, is_uri


def read_manifest(manifest: str, prefix: str) -> list[str]:
    """Paths listed in `manifest` (local or URI, ``.gz`` ok); blank and ``#`` lines skipped.

    Relative local entries without a prefix are taken relative to the manifest's folder.
    """
    import fsspec

    try:
        with fsspec.open(manifest, "rt", compression="infer") as fh:
            lines = [line.strip() for line in fh]
    except FileNotFoundError:
        raise InputError(f"manifest not found: {manifest}") from None
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise InputError(f"manifest {manifest} is not a text list of files ({e})") from None
    entries = [prefix + line for line in lines if line and not line.startswith("#")]
    if not entries:
        raise InputError(f"manifest {manifest} lists no file")
    here = Path(manifest).parent if not is_uri(manifest) else None
    return [e if is_uri(e) or Path(e).is_absolute() or here is None else str(here / e)
            for e in entries]


def resolve_inputs(warc: list[str] | None, manifest: str | None, prefix: str = ""
                   ) -> tuple[list[str], list[Any]]:
    """(input files, their fingerprints) from globs or a manifest; `InputError` for
    missing local files."""
    if warc is not None:
        paths = expand_inputs(warc, "warc")
        return paths, fingerprint(paths)
    paths = read_manifest(manifest or "", prefix)
    local = [p for p in paths if not is_uri(p)]
    missing = [p for p in local if not Path(p).is_file()]
    if missing:
        raise InputError(f"manifest lists {len(missing)} missing file(s), e.g. {missing[0]}")
    return paths, [*fingerprint(local), *sorted(p for p in paths if is_uri(p))]
