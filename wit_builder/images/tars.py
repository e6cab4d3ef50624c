"""The `wit shards` scan of downloaded shards, and the copy of their bytes into final ones.

`scan_tar` reads one shard: for each sample (``KEY.jpg`` + ``KEY.json`` + ``KEY.txt``) it
hashes the image bytes (sha256), computes its 64-bit pHash, and records where each member
lies in the tar (offset, size), so the final shards are later written by copying byte
ranges (`read_member`) instead of decoding the tars again. A sample whose image does not
decode, or that lacks its JSON or uid, is counted under a drop reason instead.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from wit_builder import tarshards
from wit_builder.errors import InputError
from wit_builder.images.phash import phash64
from wit_builder.outputs import finished, read_stats
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
    ("reason", pa.string()), ("skipped", pa.int64()),
])
EXTENSIONS = ("jpg", "txt", "json")


def scan_sample(path: str, key: str, members: dict[str, tarfile.TarInfo],
                tar: tarfile.TarFile) -> dict[str, Any]:
    """One `SCAN_SCHEMA` row; ``reason`` set (and hashes empty) if the sample is unusable."""
    row: dict[str, Any] = {name: None for name in SCAN_SCHEMA.names}
    row.update(src=path, key=key)
    if any(ext not in members for ext in EXTENSIONS):
        return {**row, "reason": "missing_member"}
    meta = tarshards.sample_json(tar, members)
    if not meta.get("uid"):
        return {**row, "reason": "missing_uid"}
    if not tarshards.is_valid_uid(meta["uid"]):
        return {**row, "reason": "bad_uid"}
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
    """The `SCAN_SCHEMA` rows of one tar: every complete sample before a cut, one
    ``unreadable_tar`` row for the cut (or for a tar that does not open), and one
    ``unreadable_member`` row carrying the bytes skipped over damaged headers."""
    rows: list[dict[str, Any]] = []
    damage = tarshards.Damage()
    try:
        for key, members, tar in tarshards.samples(path, damage):
            rows.append(scan_sample(path, key, members, tar))
    except (tarfile.TarError, OSError, ValueError, EOFError) as e:
        rows.append(drop_row(path, str(e)[:200], "unreadable_tar"))
    if damage.skipped_bytes:
        rows.append({**drop_row(path, "damaged headers", "unreadable_member"),
                     "skipped": damage.skipped_bytes})
    return pa.RecordBatch.from_pylist(rows, schema=SCAN_SCHEMA)


def drop_row(path: str, key: str, reason: str) -> dict[str, Any]:
    """A scan row that is only a counted drop."""
    return {**{n: None for n in SCAN_SCHEMA.names}, "src": path, "key": key,
            "reason": reason}


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
                    data = read_member(handles, row["src"], row[f"{ext}_at"],
                                       row[f"{ext}_len"])
                    yield f"{row['uid']}.{ext}", rekeyed(data, row["uid"]) \
                        if ext == "json" else data
    finally:
        for handle in handles.values():
            handle.close()


def rekeyed(data: bytes, key: str) -> bytes:
    """A sample's JSON with ``key`` set to its key in the final shard (img2dataset's rule:
    ``key`` names the sample's files)."""
    return json.dumps({**json.loads(data), "key": key}).encode()


def write_shard(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the final shard `path` (keys = uids, rows in the given order) atomically."""
    tarshards.write_tar(path, shard_members(rows))


def downloaded_tars(images: Path) -> list[str]:
    """The shards of a download output; `InputError` if there are none."""
    found = sorted(str(p) for p in images.glob("*.tar")) if images.is_dir() else []
    if not found:
        raise InputError(f"{images} holds no .tar shard: expected a `wit download` output")
    finished(images, "download")  # not the work dir of a killed run, nor any tar folder
    return found


def scan(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Every sample of every tar (`SCAN_SCHEMA`), one task per tar, persisted."""
    from pyspark import StorageLevel

    files = spark.createDataFrame([(p,) for p in paths], "path string")
    files = files.repartition(len(paths))
    scanned = files.mapInArrow(scan_partition, spark_schema(SCAN_SCHEMA))
    return scanned.persist(StorageLevel.MEMORY_AND_DISK)


def count_unusable(scanned: DataFrame, stats: StageStats) -> DataFrame:
    """Count the scanned rows with a drop reason into `stats` (with a notice for damaged
    tars); the usable samples."""
    from pyspark.sql import functions as F

    dropped = scanned.filter(F.col("reason").isNotNull()).groupBy("reason").agg(
        F.count("*").alias("n"), F.sum("skipped").alias("skipped"),
        F.countDistinct("src").alias("tars")).collect()
    for row in dropped:
        stats.drop(row["reason"], row["n"])
        if row["reason"] in ("unreadable_tar", "unreadable_member"):
            skipped = f" ({row['skipped']:,} bytes skipped)" if row["skipped"] else ""
            stats.notice(f"{row['tars']} downloaded shard(s) damaged: {row['n']} "
                         f"{row['reason']}{skipped}; the samples there are lost and counted")
    return scanned.filter(F.col("reason").isNull()).drop("reason", "skipped")


def unique_uids(samples: DataFrame, stats: StageStats) -> DataFrame:
    """One sample per uid (the first in tar order: the same pair downloaded twice is an
    exact duplicate); the others counted as ``duplicate_uid``."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    first = Window.partitionBy("uid").orderBy("src", "jpg_at")
    ranked = samples.withColumn("_n", F.row_number().over(first))
    stats.drop("duplicate_uid", ranked.filter(F.col("_n") > 1).count())
    return ranked.filter(F.col("_n") == 1).drop("_n")


def reconcile(seen: int, images: Path, stats: StageStats) -> None:
    """Compare the samples read with what the download output says it wrote: a notice
    and ``extra.input_mismatch`` when they differ."""
    written = read_stats(images).get("rows_out")
    if written is not None and written != seen:
        stats.extra["input_mismatch"] = seen - written
        stats.notice(f"read {seen:,} samples from {images}, whose stats say it wrote "
                     f"{written:,}: the shards were changed after `wit download`")
