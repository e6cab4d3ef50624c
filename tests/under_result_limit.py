"""The image stages' Spark work under ``spark.driver.maxResultSize=1m``: run as
``python -m tests.under_result_limit DIR`` (its own JVM: the limit is fixed when a Spark
context starts), it prints the counts as JSON for `test_images_scale`.

The inputs are sized so that any step bringing rows to the driver exceeds the limit:
30,000 duplicate pairs of 40-character hex uids (~2.4 MB, over 1 MB compressed, as the
old collect of (kept, removed) pairs) and 12,000 pairs of ~200 bytes to download
(~2.4 MB). Broadcast joins are held under the limit too (they carry at most the
broadcast threshold, whatever the rows).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SAMPLES = 60_000  # in 30,000 pairs: odd pairs are exact copies, even pairs 1 bit apart
PAIRS = 12_000


def samples_frame(spark):
    """(uid, sha256, phash): sample 2g+m is member m of group g (see SAMPLES)."""
    from pyspark.sql import functions as F

    group, member = F.floor(F.col("id") / 2), F.col("id") % 2
    near = group % 2 == 0
    return spark.range(SAMPLES).select(
        F.substring(F.sha2(F.col("id").cast("string"), 256), 1, 40).alias("uid"),
        F.when(near, F.concat_ws("-", group, member)).otherwise(group.cast("string"))
        .alias("sha256"),
        F.when(near, F.xxhash64(group).bitwiseXOR(member)).otherwise(F.xxhash64(group))
        .alias("phash"))


def duplicates(spark, out: Path) -> dict:
    """Group the samples' duplicates and write ``duplicates.parquet`` (as `wit shards`)."""
    from wit_builder.images import dedup
    from wit_builder.stats import StageStats

    stats = StageStats("shards")
    rows = dedup.duplicate_rows(samples_frame(spark), 4, 1000, stats)
    dedup.write_duplicates(out, rows, stats)
    return {"drops": dict(stats.drops), "largest": stats.extra["largest_duplicate_group"],
            "collect_refused": collect_refused(rows.select("uid", "kept_uid"))}


def collect_refused(frame) -> bool:
    """Whether collecting `frame` to the driver (what the old grouping did with these
    pairs) is refused by the limit: the inputs are big enough to matter."""
    try:
        frame.collect()
    except Exception as e:
        return "maxResultSize" in str(e)
    return False


def download(spark, tmp: Path) -> dict:
    """`wit download` of PAIRS URLs the network guard refuses (no image work at all)."""
    from tests.imageserver import write_pairs
    from wit_builder.images import download_job
    from wit_builder.images.configs import DownloadConfig

    urls = [f"http://127.0.0.1:9/{'x' * 150}/{i}.jpg" for i in range(PAIRS)]
    cfg = DownloadConfig(pairs=write_pairs(tmp / "pairs", urls), out=tmp / "download",
                         samples_per_shard=3000, threads=32)
    return download_job.run(cfg, spark).marker["stats"]


def main(tmp: Path) -> None:
    from wit_builder.spark import get_spark

    # A broadcast join also passes through the driver, but at most the broadcast
    # threshold (10 MB by default, whatever the rows): kept under the limit here.
    spark = get_spark("local[2]", "result-limit", {
        "spark.driver.maxResultSize": "1m", "spark.sql.autoBroadcastJoinThreshold": "256k"})
    assert spark.sparkContext.getConf().get("spark.driver.maxResultSize") == "1m"
    found = {"shards": duplicates(spark, tmp), "download": download(spark, tmp)}
    print(json.dumps(found))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
