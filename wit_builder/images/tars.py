"""Reading downloaded webdataset shards and writing the final ones.

`scan_tar` reads one shard: for each sample (``KEY.jpg`` + ``KEY.json`` + ``KEY.txt``) it
hashes the image bytes (sha256), computes its 64-bit pHash, and records where each member
lies in the tar (offset, size), so the final shards are later written by copying byte
ranges (`read_member`) instead of decoding the tars again. A sample whose image does not
decode, or that lacks its JSON or uid, is counted under a drop reason instead.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from wit_builder.images.phash import phash64

SCAN_SCHEMA = pa.schema([
    ("uid", pa.string()), ("src", pa.string()), ("key", pa.string()),
    ("sha256", pa.string()), ("phash", pa.int64()), ("width", pa.int32()),
    ("height", pa.int32()), ("text", pa.string()), ("url", pa.string()),
    ("jpg_at", pa.int64()), ("jpg_len", pa.int64()), ("txt_at", pa.int64()),
    ("txt_len", pa.int64()), ("json_at", pa.int64()), ("json_len", pa.int64()),
    ("reason", pa.string()),
])
EXTENSIONS = ("jpg", "txt", "json")


def tar_samples(path: str) -> Iterator[tuple[str, dict[str, tarfile.TarInfo], tarfile.TarFile]]:
    """(key, {extension: member}) per sample of a tar, in tar order."""
    with tarfile.open(path) as tar:
        current, members = None, {}
        for member in tar:
            if not member.isfile() or "." not in member.name:
                continue
            key, ext = member.name.split(".", 1)
            if key != current and current is not None:
                yield current, members, tar
                members = {}
            current = key
            members[ext] = member
        if current is not None:
            yield current, members, tar


def scan_sample(path: str, key: str, members: dict[str, tarfile.TarInfo],
                tar: tarfile.TarFile) -> dict[str, Any]:
    """One `SCAN_SCHEMA` row; ``reason`` set (and hashes empty) if the sample is unusable."""
    row: dict[str, Any] = {name: None for name in SCAN_SCHEMA.names}
    row.update(src=path, key=key)
    if "jpg" not in members or "json" not in members:
        return {**row, "reason": "missing_member"}
    meta = json.loads(tar.extractfile(members["json"]).read())
    if not meta.get("uid"):
        return {**row, "reason": "missing_uid"}
    data = tar.extractfile(members["jpg"]).read()
    row.update(uid=meta["uid"], url=meta.get("url"), text=meta.get("caption"))
    hashed = phash64(data)
    if hashed is None:
        return {**row, "reason": "unreadable_image"}
    row.update(sha256=hashlib.sha256(data).hexdigest(), phash=hashed[0], width=hashed[1],
               height=hashed[2])
    for ext in EXTENSIONS:
        if ext in members:
            row[f"{ext}_at"], row[f"{ext}_len"] = members[ext].offset_data, members[ext].size
    return row


def scan_tar(path: str) -> pa.RecordBatch:
    """The `SCAN_SCHEMA` rows of one tar (an unreadable tar is one ``unreadable_tar``
    row)."""
    rows = []
    try:
        rows = [scan_sample(path, key, members, tar) for key, members, tar in tar_samples(path)]
    except (tarfile.TarError, OSError, ValueError) as e:
        rows.append({**{n: None for n in SCAN_SCHEMA.names}, "src": path,
                     "key": str(e)[:200], "reason": "unreadable_tar"})
    return pa.RecordBatch.from_pylist(rows, schema=SCAN_SCHEMA)


def scan_partition(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: a ``path`` column of tars in, their samples out."""
    for batch in batches:
        for path in batch.column("path").to_pylist():
            yield scan_tar(path)


def read_member(handles: dict[str, Any], path: str, at: int, size: int) -> bytes:
    """`size` bytes at offset `at` of file `path` (files kept open in `handles`)."""
    if path not in handles:
        handles[path] = open(path, "rb")  # noqa: SIM115 (closed by the caller)
    handle = handles[path]
    handle.seek(at)
    return handle.read(size)


def write_shard(path: Path, rows: list[dict[str, Any]]) -> Counter[str]:
    """Write the final shard `path` (``KEY.jpg``, ``KEY.txt``, ``KEY.json``, keys =
    uids, in the given order) atomically; returns member counts."""
    handles: dict[str, Any] = {}
    tmp = path.with_name(f".{path.name}.tmp")
    written: Counter[str] = Counter()
    try:
        with tarfile.open(tmp, "w") as tar:
            for row in rows:
                for ext in EXTENSIONS:
                    if row.get(f"{ext}_at") is None:
                        continue
                    data = read_member(handles, row["src"], row[f"{ext}_at"], row[f"{ext}_len"])
                    info = tarfile.TarInfo(f"{row['uid']}.{ext}")
                    info.size, info.mtime, info.mode = len(data), 0, 0o644
                    tar.addfile(info, io.BytesIO(data))
                    written[ext] += 1
    finally:
        for handle in handles.values():
            handle.close()
    os.replace(tmp, path)
    return written
