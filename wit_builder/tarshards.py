"""The webdataset shard format, in one place: every stage that reads or writes tars uses
this module, never `tarfile` or its own idea of a key.

A shard is a tar of samples; a sample is the members sharing a key: ``KEY.jpg`` (or
another `IMAGE_EXTENSIONS` image), ``KEY.txt`` (the caption), ``KEY.json`` (metadata,
with ``uid``). The key is the member's name up to its first dot, the extension the rest
(webdataset's rule); extensions are compared lowercased, so ``KEY.JPG`` is an image
everywhere. Shards of one sample set are named `shard_name(i)` (``00000.tar``…) and listed
with `pattern`; ``sizes.json`` maps shard name → samples (open_clip's format).

Listing (`expand`) takes brace patterns (``{00000..00099}.tar``), ``::``-joined lists and
local globs; remote URLs and webdataset's ``pipe:`` shards are taken as given.
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import braceexpand

from wit_builder.errors import InputError
from wit_builder.outputs import atomic_write

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
SIZES_FILE = "sizes.json"
SHARD_DIGITS = 5
Members = dict[str, tarfile.TarInfo]


def shard_name(index: int) -> str:
    """The file name of shard `index` of a sample set: ``00042.tar``."""
    return f"{index:0{SHARD_DIGITS}d}.tar"


def pattern(directory: Path | str) -> str:
    """The pattern listing every shard of a directory of shards (for `expand`)."""
    return f"{directory}/*.tar"


def shard_ids(paths: Sequence[str]) -> list[str]:
    """A unique, stable name per shard path: its file name when those are unique, else
    its last path components joined by ``_`` (``a/00000.tar`` and ``b/00000.tar`` →
    ``a_00000.tar``, ``b_00000.tar``), as few as make every name unique."""
    parts = [Path(p).parts for p in paths]
    for depth in range(1, max((len(p) for p in parts), default=1) + 1):
        names = ["_".join(p[-depth:]).lstrip("_/") for p in parts]
        if len(set(names)) == len(names):
            return names
    raise InputError(f"the same shard is listed twice: {sorted(paths)[0]}")


def split_key(name: str) -> tuple[str, str] | None:
    """(key, extension) of a member name, or None if it has no extension."""
    key, dot, ext = name.partition(".")
    return (key, ext) if dot and key else None


# A uid names files (``UID.jpg``): letters, digits, ``_`` and ``-`` only, so it can be
# neither a path (``../``) nor split into key and extension at a dot.
UID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,128}")


def is_valid_uid(uid: Any) -> bool:
    """True if `uid` may be used as a sample key (`UID_PATTERN`)."""
    return isinstance(uid, str) and UID_PATTERN.fullmatch(uid) is not None


def is_image(ext: str) -> bool:
    """True for an image member's extension (any case)."""
    return ext.lower() in IMAGE_EXTENSIONS


def image_of(members: dict[str, Any]) -> Any | None:
    """The image entry of one sample's members (by extension), or None."""
    return next((members[e] for e in members if is_image(e)), None)


def is_url(item: str) -> bool:
    """True for remote shards and ``pipe:`` commands, which are not local paths."""
    return "://" in item or item.startswith("pipe:")


def expand(spec: str | Sequence[str]) -> list[str]:
    """Shard URLs/paths of `spec` (see module docstring), order kept; `InputError` if
    none, or if a listed local shard is missing."""
    patterns = spec.split("::") if isinstance(spec, str) else list(spec)
    urls: list[str] = []
    for item_pattern in patterns:
        for item in braceexpand.braceexpand(item_pattern):
            if is_url(item) or not glob.has_magic(item):
                urls.append(item)
            else:
                urls.extend(sorted(glob.glob(item)))
    missing = [u for u in urls if not is_url(u) and not os.path.exists(u)]
    if not urls or missing:
        raise InputError(f"no shards for {spec!r}" if not urls
                         else f"{len(missing)} shard(s) missing, e.g. {missing[0]}")
    return urls


@dataclass
class Damage:
    """What reading a tar had to skip: bytes of unreadable headers (the members they
    announced are lost; their samples come out incomplete) and repeated keys (the same
    key twice in a row: two samples, never one silently replacing the other)."""

    skipped_bytes: int = 0
    repeated_keys: int = 0


def _padded(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def samples(path: str, damage: Damage | None = None
            ) -> Iterator[tuple[str, Members, tarfile.TarFile]]:
    """(key, {extension: member}, open tar) per sample of a tar, in tar order.

    A damaged header mid-tar does not end the iteration (tarfile's default): the blocks
    are skipped to the next readable header and counted in `damage`. A truncated tar
    raises `tarfile.ReadError` after the samples before the cut.
    """
    damage = damage if damage is not None else Damage()
    with tarfile.open(path, ignore_zeros=True) as tar:
        current, members, expected = None, {}, 0
        for member in tar:
            damage.skipped_bytes += max(0, member.offset - expected)
            expected = member.offset_data + _padded(member.size)
            parts = split_key(member.name) if member.isfile() else None
            if parts is None:
                continue
            key, ext = parts
            if current is not None and (key != current or ext in members):
                damage.repeated_keys += key == current
                yield current, members, tar
                members = {}
            current = key
            members[ext] = member
        if current is not None:
            yield current, members, tar


def read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """The bytes of one member."""
    handle = tar.extractfile(member)
    assert handle is not None  # members from `samples` are regular files
    return handle.read()


def sample_json(tar: tarfile.TarFile, members: Members) -> dict[str, Any]:
    """The sample's ``.json`` metadata ({} without one)."""
    return json.loads(read(tar, members["json"])) if "json" in members else {}


def images(path: str) -> Iterator[tuple[str, str, bytes | None]]:
    """(key, uid, image bytes or None) per sample of a shard; the uid is the JSON's, else
    the key."""
    for key, members, tar in samples(path):
        image = image_of(members)
        uid = sample_json(tar, members).get("uid") or key
        yield key, uid, read(tar, image) if image is not None else None


def read_sample(path: str, key: str) -> tuple[bytes | None, dict[str, Any]]:
    """(image bytes or None, JSON metadata) of the sample `key` of the shard `path`."""
    for found, members, tar in samples(path):
        if found == key:
            image = image_of(members)
            return (read(tar, image) if image is not None else None,
                    sample_json(tar, members))
    return None, {}


def write_tar(path: Path, members: Iterable[tuple[str, bytes]]) -> int:
    """Write the tar `path` atomically from (member name, bytes); members written.
    `ValueError` for a member name given twice (readers would see one sample replace
    another): callers deduplicate first."""
    count = 0
    names: set[str] = set()

    def write(tmp: Path) -> None:
        nonlocal count
        with tarfile.open(tmp, "w") as tar:
            for name, data in members:
                if name in names:
                    raise ValueError(f"{path}: member {name!r} written twice")
                names.add(name)
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
                count += 1

    atomic_write(path, write)
    return count


def copy_without(src: str, dst: Path, keys: set[str]) -> None:
    """Copy the tar `src` to `dst` (atomically) without the samples whose key is in
    `keys`; the other members' bytes are copied as they are."""
    def write(tmp: Path) -> None:
        with tarfile.open(src) as source, tarfile.open(tmp, "w") as target:
            for member in source:
                parts = split_key(member.name)
                if member.isfile() and (parts is None or parts[0] not in keys):
                    target.addfile(member, source.extractfile(member))

    atomic_write(dst, write)


def write_sizes(directory: Path, sizes: dict[str, int]) -> None:
    """``sizes.json`` of a directory of shards: {shard name: samples}."""
    text = json.dumps(sizes, indent=2) + "\n"
    atomic_write(directory / SIZES_FILE, lambda tmp: tmp.write_text(text))


def read_sizes(directory: Path) -> dict[str, int]:
    """The ``sizes.json`` of a directory of shards ({} without one)."""
    path = directory / SIZES_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
