"""The `wit shards` scan of downloaded shards, and the copy of their bytes into final ones.

`scan_tar` reads one shard: for each sample (``KEY.jpg`` + ``KEY.json`` + ``KEY.txt``) it
hashes the image bytes (sha256), computes its 64-bit pHash, and records where each member
lies in the tar (offset, size), so the final shards are later written by copying byte
ranges (`read_member`) instead of decoding the tars again. A sample whose image does not
decode, or that lacks its JSON or uid, is counted under a drop reason instead.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from wit_builder import tarshards
from wit_builder.errors import InputError
from wit_builder.images.phash import phash64
from wit_builder.spark import spark_schema
from wit_builder.stats import StageStats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SCAN_SCHEMA = pa.schema([
    ("uid", pa.string()), ("src", pa.string()), ("key", pa.string()),
    ("sha256", pa.string()), ("phash", pa.int64()), ("width", pa.int32()),
    ("height", pa.int32()), ("text", pa.string()), ("url", pa.string()),
    ("jpg_at", pa.int64()), ("jpg_len", pa.int64()), ("txt_at", pa.int64()),
    ("txt_len", pa.int64()), ("json_at", pa.int64()), ("json_len", pa.int64()),
    ("reason", pa.string()),
])
EXTENSIONS = ("jpg", "txt", "json")


def scan_sample(path: str, key: str, members: dict[str, tarfile.TarInfo],
                tar: tarfile.TarFile) -> dict[str, Any]:
    """One `SCAN_SCHEMA` row; ``reason`` set (and hashes empty) if the sample is unusable."""
    row: dict[str, Any] = {name: None for name in SCAN_SCHEMA.names}
    row.update(src=path, key=key)
    if "jpg" not in members or "json" not in members:
        return {**row, "reason": "missing_member"}
    meta = tarshards.sample_json(tar, members)
    if not meta.get("uid"):
        return {**row, "reason": "missing_uid"}
    data = tarshards.read(tar, members["jpg"])
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
        rows = [scan_sample(path, key, members, tar)
                for key, members, tar in tarshards.samples(path)]
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


def shard_members(rows: list[dict[str, Any]]) -> Iterator[tuple[str, bytes]]:
    """The final shard's members of `rows` (``UID.jpg``, ``UID.txt``, ``UID.json``, in
    the given order), their bytes copied from the downloaded tars."""
    handles: dict[str, Any] = {}
    try:
        for row in rows:
            for ext in EXTENSIONS:
                if row.get(f"{ext}_at") is not None:
                    yield f"{row['uid']}.{ext}", read_member(
                        handles, row["src"], row[f"{ext}_at"], row[f"{ext}_len"])
    finally:
        for handle in handles.values():
            handle.close()


def write_shard(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the final shard `path` (keys = uids, rows in the given order) atomically."""
    tarshards.write_tar(path, shard_members(rows))


def downloaded_tars(images: Path) -> list[str]:
    """The shards of a download output; `InputError` if there are none."""
    found = sorted(str(p) for p in images.glob("*.tar")) if images.is_dir() else []
    if not found:
        raise InputError(f"{images} holds no .tar shard: expected a `wit download` output")
    return found


def scan(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Every sample of every tar (`SCAN_SCHEMA`), one task per tar, persisted."""
    from pyspark import StorageLevel

    files = spark.createDataFrame([(p,) for p in paths], "path string")
    files = files.repartition(len(paths))
    scanned = files.mapInArrow(scan_partition, spark_schema(SCAN_SCHEMA))
    return scanned.persist(StorageLevel.MEMORY_AND_DISK)


def count_unusable(scanned: DataFrame, stats: StageStats) -> DataFrame:
    """Count the scanned rows with a drop reason into `stats`; the usable samples."""
    from pyspark.sql import functions as F

    for row in scanned.filter(F.col("reason").isNotNull()).groupBy("reason").count().collect():
        stats.drop(row["reason"], row["count"])
    return scanned.filter(F.col("reason").isNull()).drop("reason")
